//! The verifier: one entry point, [`verify`], that walks the chain
//! trusted zone CA → EK certificate → AK certificate (issued after credential activation) →
//! quote over the verifier's nonce → PCR values → event log → reference values,
//! and returns either what it verified or every failure, each naming its [`Check`].
//!
//! Checks run in dependency order. When a check that later ones rely on fails (for example the
//! quote signature), the later ones are not run: their inputs are not trustworthy, and a report
//! that listed them would point at the wrong cause.
//!
//! [`Verifier`] adds freshness across calls: it hands out nonces and accepts each at most once,
//! so a replayed response (an old nonce, even with a valid quote) is refused.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use rand_core::{OsRng, RngCore};
use serde::Serialize;

use crate::chain::{self, CertifiedKey, Role};
use crate::eventlog::{sha256, EventLog, EV_EVENT_TAG, EV_NO_ACTION};
use crate::evidence::{sha256_uri, Evidence, ZoneManifest, FORMAT};
use crate::measurements::{
    CLAIM_KEYS, INITRD_EVENT_DATA, INITRD_EVENT_TAG, KERNEL_EVENT_DATA, PCR_INITRD, PCR_KERNEL,
    PCR_ZONE_CLAIMS,
};
use crate::quote::{self, ct_eq, PcrBank};
use crate::reference::{claim_of, component_of, ReferenceValues};
use crate::tpm_types::{QuoteAttest, TpmPublic, TpmSignature};

/// PCRs every quote must cover: every PCR the measurement plan extends (0-7 with their
/// separators, 8, 9) and the zone claims ([`PCR_ZONE_CLAIMS`], 15), so that every event of the
/// log is bound.
pub const REQUIRED_PCRS: [u32; 11] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, PCR_ZONE_CLAIMS];
/// How long a [`Verifier`] nonce stays redeemable.
pub const NONCE_TTL: Duration = Duration::from_secs(300);
/// Most nonces a [`Verifier`] keeps outstanding; the oldest is dropped beyond that.
pub const MAX_OUTSTANDING: usize = 4096;

/// The name of each check, as it appears in failures and attestation results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// The bundle's own structure: format tag, parsable AK public, quote and signature.
    Evidence,
    /// The bundle's zone CA certificate is one the verifier trusts.
    ZoneCaTrusted,
    /// The EK certificate is issued by a trusted zone CA, valid, with the EK profile.
    EkCertChain,
    /// The AK certificate is issued by a trusted zone CA, valid, with the AK (Privacy CA) profile.
    AkCertChain,
    /// EK and AK certificates (and the manifest) name the same zone and host, the CA's host.
    SameZone,
    /// The AK certificate was issued after activation against *this* EK.
    AkActivated,
    /// The AK in the bundle is the certified one (key and TPM name, so attributes too) and is a
    /// restricted signing key.
    AkCertified,
    /// The quote is signed by that AK.
    QuoteSignature,
    /// The quote's qualifying data is the nonce this verifier chose, and the nonce is fresh.
    Nonce,
    /// The claimed PCR values hash to the signed pcrDigest and cover [`REQUIRED_PCRS`].
    PcrDigest,
    /// The event log parses and its replay equals every quoted PCR.
    EventLog,
    /// Zone claims in PCR 15: exactly the plan's claim events (so nothing the guest appended),
    /// zone id = the certified zone.
    ZoneClaims,
    /// Measured components and PCRs equal the reference values.
    Reference,
    /// The host's manifest agrees with what was measured.
    Manifest,
}

/// One failed check and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub check: Check,
    /// The measured component concerned (`kernel`, `cmdline`, `image-manifest-digest`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    pub detail: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let check = serde_json::to_value(self.check)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        match &self.component {
            Some(c) => write!(f, "{check} ({c}): {}", self.detail),
            None => write!(f, "{check}: {}", self.detail),
        }
    }
}

/// What an affirming verification established.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    pub zone_id: String,
    pub host_id: String,
    /// Quoted (signed) SHA-256 PCR values, hex.
    pub pcrs: BTreeMap<u32, String>,
    /// Measured component digests by name (`sha256:<hex>`).
    pub components: BTreeMap<String, String>,
    /// PCR 15 claims by key.
    pub claims: BTreeMap<String, String>,
    pub manifest: ZoneManifest,
    /// The TPM's reset count at the quote (a verifier keeping history can check it only grows).
    pub reset_count: u32,
}

/// What the verifier brings: trust anchors, reference values, the nonce it chose and the time.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// DER zone CA certificates this verifier trusts.
    pub trusted_cas: &'a [Vec<u8>],
    pub reference: &'a ReferenceValues,
    pub expected_nonce: &'a [u8],
    pub now: SystemTime,
}

#[derive(Debug, Default)]
struct Report {
    failures: Vec<Failure>,
}

impl Report {
    fn fail(&mut self, check: Check, detail: impl Into<String>) {
        self.failures.push(Failure {
            check,
            component: None,
            detail: detail.into(),
        });
    }

    fn fail_component(&mut self, check: Check, component: &str, detail: impl Into<String>) {
        self.failures.push(Failure {
            check,
            component: Some(component.to_string()),
            detail: detail.into(),
        });
    }

    fn stop(self) -> Result<Verified, Vec<Failure>> {
        Err(self.failures)
    }
}

/// Verifies `evidence` under `policy`: `Ok` only if every check passed.
pub fn verify(evidence: &Evidence, policy: &Policy<'_>) -> Result<Verified, Vec<Failure>> {
    let mut report = Report::default();

    // Structure.
    if evidence.format != FORMAT {
        report.fail(
            Check::Evidence,
            format!("format {:?} is not {FORMAT}", evidence.format),
        );
        return report.stop();
    }
    let ak_public = TpmPublic::from_tpm2b(&evidence.ak_public);
    let attest = QuoteAttest::parse(&evidence.quote.attest);
    let signature = TpmSignature::parse(&evidence.quote.signature);
    let (ak_public, attest, signature) = match (ak_public, attest, signature) {
        (Ok(a), Ok(q), Ok(s)) => (a, q, s),
        (a, q, s) => {
            for (what, e) in [
                ("ak_public", a.err()),
                ("quote.attest", q.err()),
                ("quote.signature", s.err()),
            ] {
                if let Some(e) = e {
                    report.fail(Check::Evidence, format!("{what}: {e}"));
                }
            }
            return report.stop();
        }
    };

    // Certificates.
    if !policy
        .trusted_cas
        .iter()
        .any(|ca| ca == &evidence.zone_ca_cert)
    {
        report.fail(
            Check::ZoneCaTrusted,
            "the bundle's zone CA certificate is not one this verifier trusts",
        );
    }
    // Each trusted CA's own certificate is checked once.
    let cas: Vec<(&[u8], Result<String, String>)> = policy
        .trusted_cas
        .iter()
        .map(|ca| {
            let host = chain::verify_ca(ca, policy.now).map_err(|e| e.to_string());
            (ca.as_slice(), host)
        })
        .collect();
    let ek = leaf_from_trusted(
        &mut report,
        Check::EkCertChain,
        &evidence.ek_cert,
        Role::Ek,
        &cas,
        policy.now,
    );
    let ak = leaf_from_trusted(
        &mut report,
        Check::AkCertChain,
        &evidence.ak_cert,
        Role::Ak,
        &cas,
        policy.now,
    );
    let (Some((ek, ca_host)), Some((ak, _))) = (ek, ak) else {
        return report.stop();
    };
    check_same_zone(&mut report, &ek, &ak, &ca_host, &evidence.manifest);
    if ak.ek_spki_sha256.as_deref() != Some(chain::spki_sha256(&ek.spki_der).as_str()) {
        report.fail(
            Check::AkActivated,
            "the AK certificate was issued for activation against another EK",
        );
    }
    match ak_public.to_spki_der() {
        Ok(spki) if spki == ak.spki_der && ak.ak_name == Some(hex::encode(ak_public.name())) => {}
        _ => report.fail(
            Check::AkCertified,
            "the bundle's AK public key is not the key in the AK certificate (an AK that was never activated)",
        ),
    }
    if let Err(e) = quote::check_ak_attributes(&ak_public) {
        report.fail(Check::AkCertified, e.to_string());
    }
    if !report.failures.is_empty() {
        return report.stop();
    }

    // Quote.
    if let Err(e) = quote::verify_signature(&ak_public, &evidence.quote.attest, &signature) {
        report.fail(Check::QuoteSignature, e.to_string());
        return report.stop();
    }
    if !ct_eq(&evidence.nonce, policy.expected_nonce) {
        report.fail(
            Check::Nonce,
            "the bundle's nonce is not the one this verifier chose",
        );
    }
    if let Err(e) = quote::check_nonce(&attest, policy.expected_nonce) {
        report.fail(Check::Nonce, e.to_string());
    }
    let claimed = match parse_pcrs(evidence) {
        Ok(p) => p,
        Err(e) => {
            report.fail(Check::Evidence, e);
            return report.stop();
        }
    };
    let signed = match quote::check_pcr_digest(&attest, &claimed) {
        Ok(s) => s,
        Err(e) => {
            report.fail(Check::PcrDigest, e.to_string());
            return report.stop();
        }
    };
    for pcr in REQUIRED_PCRS {
        if !signed.contains_key(&pcr) {
            report.fail(
                Check::PcrDigest,
                format!("the quote does not cover PCR {pcr}"),
            );
        }
    }
    if !report.failures.is_empty() {
        return report.stop();
    }

    // Event log against the quoted PCRs.
    let log = match EventLog::parse(&evidence.event_log) {
        Ok(l) => l,
        Err(e) => {
            report.fail(Check::EventLog, e.to_string());
            return report.stop();
        }
    };
    // The VMM writes one canonical form (SHA-256 bank only); requiring it binds the bytes the
    // parser does not interpret (Spec ID platformClass, version, uintnSize, other banks).
    if log.to_bytes() != evidence.event_log {
        report.fail(
            Check::EventLog,
            "the log is not in the canonical form the VMM writes (header fields or digest banks differ)",
        );
        return report.stop();
    }
    let replay = log.replay();
    for (pcr, value) in &signed {
        if &replay[*pcr as usize] != value {
            report.fail(
                Check::EventLog,
                format!("replaying the log gives another PCR {pcr} than the quote"),
            );
        }
    }
    check_event_data(&mut report, &log, &signed);
    if !report.failures.is_empty() {
        return report.stop();
    }

    // What was measured: claims, reference values, manifest.
    let (components, claims) = measured(&log, &signed);
    check_claims(&mut report, &log, &ek.zone_id);
    check_reference(&mut report, policy.reference, &signed, &components, &claims);
    check_manifest(&mut report, &evidence.manifest, &log, &components, &claims);
    if !report.failures.is_empty() {
        return report.stop();
    }
    Ok(Verified {
        zone_id: ek.zone_id,
        host_id: ek.host_id,
        pcrs: signed.iter().map(|(k, v)| (*k, hex::encode(v))).collect(),
        components,
        claims,
        manifest: evidence.manifest.clone(),
        reset_count: attest.clock.reset_count,
    })
}

/// Verifies a leaf against each trusted CA; returns it and its CA's host id.
fn leaf_from_trusted(
    report: &mut Report,
    check: Check,
    leaf: &[u8],
    role: Role,
    cas: &[(&[u8], Result<String, String>)],
    now: SystemTime,
) -> Option<(CertifiedKey, String)> {
    let mut last = None;
    for (ca, host) in cas {
        let ca_host = match host {
            Ok(h) => h,
            Err(e) => {
                last = Some(format!("trusted CA unusable: {e}"));
                continue;
            }
        };
        match chain::verify_leaf(leaf, ca, role, now) {
            Ok(k) => return Some((k, ca_host.clone())),
            Err(e) => last = Some(e.to_string()),
        }
    }
    report.fail(
        check,
        match last {
            Some(e) => format!("not issued by a trusted zone CA: {e}"),
            None => "no trusted zone CA configured".to_string(),
        },
    );
    None
}

fn check_same_zone(
    report: &mut Report,
    ek: &CertifiedKey,
    ak: &CertifiedKey,
    ca_host: &str,
    manifest: &ZoneManifest,
) {
    if ek.zone_id != ak.zone_id {
        report.fail(
            Check::SameZone,
            format!(
                "EK certificate is for zone {}, AK certificate for zone {}",
                ek.zone_id, ak.zone_id
            ),
        );
    }
    if ek.host_id != ak.host_id || ek.host_id != ca_host {
        report.fail(
            Check::SameZone,
            format!(
                "host ids differ: EK {}, AK {}, zone CA {ca_host}",
                ek.host_id, ak.host_id
            ),
        );
    }
    if manifest.zone_id != ek.zone_id || manifest.host_id != ek.host_id {
        report.fail(
            Check::SameZone,
            format!(
                "the manifest names zone {} on host {}, the certificates zone {} on host {}",
                manifest.zone_id, manifest.host_id, ek.zone_id, ek.host_id
            ),
        );
    }
}

fn parse_pcrs(evidence: &Evidence) -> Result<PcrBank, String> {
    let mut out = PcrBank::new();
    for (pcr, v) in &evidence.pcrs.sha256 {
        let bytes = hex::decode(v).map_err(|_| format!("PCR {pcr}: not hex"))?;
        let value: [u8; 32] = bytes
            .try_into()
            .map_err(|_| format!("PCR {pcr}: not a SHA-256 value"))?;
        out.insert(*pcr, value);
    }
    Ok(out)
}

/// Events whose digest is the hash of their own data must say what they measured.
fn check_event_data(report: &mut Report, log: &EventLog, signed: &PcrBank) {
    for (i, e) in log.events.iter().enumerate() {
        if e.event_type == EV_NO_ACTION {
            continue;
        }
        if !signed.contains_key(&e.pcr) {
            report.fail(
                Check::EventLog,
                format!(
                    "event {} extends PCR {}, which the quote does not cover",
                    i + 1,
                    e.pcr
                ),
            );
            continue;
        }
        if component_of(e).is_none() {
            report.fail(
                Check::EventLog,
                format!(
                    "event {} (PCR {}, type {:#x}) is not an event the measurement plan produces",
                    i + 1,
                    e.pcr,
                    e.event_type
                ),
            );
            continue;
        }
        let digest_of_file = (e.pcr == PCR_KERNEL && component_of(e).as_deref() == Some("kernel"))
            || (e.pcr == PCR_INITRD && e.event_type == EV_EVENT_TAG);
        if !digest_of_file && sha256(&e.data) != e.digest {
            report.fail(
                Check::EventLog,
                format!(
                    "event {} (PCR {}): its data does not hash to its digest",
                    i + 1,
                    e.pcr
                ),
            );
        }
        // Events that measure a file carry a fixed label: nothing else may ride along unchecked.
        if digest_of_file && e.data != file_event_data(e.pcr) {
            report.fail(
                Check::EventLog,
                format!("event {} (PCR {}): unexpected event data", i + 1, e.pcr),
            );
        }
    }
}

/// The data the measurement plan gives the kernel (PCR 4) and initrd (PCR 9) events.
fn file_event_data(pcr: u32) -> Vec<u8> {
    if pcr == PCR_KERNEL {
        return KERNEL_EVENT_DATA.to_vec();
    }
    let mut data = INITRD_EVENT_TAG.to_le_bytes().to_vec();
    data.extend((INITRD_EVENT_DATA.len() as u32).to_le_bytes());
    data.extend(INITRD_EVENT_DATA);
    data
}

/// Component digests and claims from the events of signed PCRs.
fn measured(
    log: &EventLog,
    signed: &PcrBank,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut components = BTreeMap::new();
    let mut claims = BTreeMap::new();
    for e in log.events.iter().filter(|e| signed.contains_key(&e.pcr)) {
        if let Some((k, v)) = claim_of(e) {
            claims.insert(k, v);
        } else if let Some(name) = component_of(e) {
            if !name.starts_with("separator-") {
                components.insert(name, sha256_uri(&e.digest));
            }
        }
    }
    (components, claims)
}

fn check_claims(report: &mut Report, log: &EventLog, zone_id: &str) {
    let events: Vec<_> = log
        .events
        .iter()
        .filter(|e| e.pcr == PCR_ZONE_CLAIMS)
        .collect();
    let keys: Vec<Option<String>> = events.iter().map(|e| claim_of(e).map(|c| c.0)).collect();
    let want: Vec<Option<String>> = CLAIM_KEYS.iter().map(|k| Some(k.to_string())).collect();
    if keys != want {
        report.fail(
            Check::ZoneClaims,
            format!(
                "PCR {PCR_ZONE_CLAIMS} holds {} events, not exactly the claims {CLAIM_KEYS:?}",
                events.len()
            ),
        );
        return;
    }
    let measured_zone = events
        .iter()
        .find_map(|e| claim_of(e).filter(|c| c.0 == "zone-id"));
    if measured_zone.as_ref().map(|c| c.1.as_str()) != Some(zone_id) {
        report.fail_component(
            Check::ZoneClaims,
            "zone-id",
            format!(
                "measured zone id {:?}, the certificates are for zone {zone_id}",
                measured_zone.map(|c| c.1).unwrap_or_default()
            ),
        );
    }
}

fn check_reference(
    report: &mut Report,
    reference: &ReferenceValues,
    signed: &PcrBank,
    components: &BTreeMap<String, String>,
    claims: &BTreeMap<String, String>,
) {
    let mut explained = std::collections::BTreeSet::new();
    for (name, want) in &reference.components {
        let got = components.get(name);
        if got != Some(want) {
            report.fail_component(
                Check::Reference,
                name,
                format!(
                    "measured {}, reference {want}",
                    got.map(String::as_str).unwrap_or("nothing")
                ),
            );
            explained.insert(pcr_of_component(name));
        }
    }
    for (key, want) in &reference.claims {
        let got = claims.get(key);
        if got != Some(want) {
            report.fail_component(
                Check::Reference,
                key,
                format!(
                    "measured {:?}, reference {want:?}",
                    got.map(String::as_str).unwrap_or("nothing")
                ),
            );
        }
    }
    for (pcr, want) in &reference.pcrs {
        let got = signed.get(pcr).map(hex::encode);
        if got.as_deref() != Some(want.as_str()) && !explained.contains(&Some(*pcr)) {
            report.fail(
                Check::Reference,
                format!(
                    "PCR {pcr} differs from the reference value (no named component explains it)"
                ),
            );
        }
    }
}

fn pcr_of_component(name: &str) -> Option<u32> {
    match name {
        "vmm-version" => Some(0),
        "zone-config" => Some(1),
        "kernel" => Some(4),
        "cmdline" => Some(8),
        "initrd" => Some(9),
        _ => None,
    }
}

fn check_manifest(
    report: &mut Report,
    manifest: &ZoneManifest,
    log: &EventLog,
    components: &BTreeMap<String, String>,
    claims: &BTreeMap<String, String>,
) {
    let vmm = log
        .events
        .iter()
        .find(|e| component_of(e).as_deref() == Some("vmm-version"))
        .map(|e| String::from_utf8_lossy(&e.data).into_owned());
    let pairs: [(&str, Option<&str>, Option<&str>); 6] = [
        (
            "vmm-version",
            Some(manifest.vmm_version.as_str()),
            vmm.as_deref(),
        ),
        (
            "kernel",
            Some(manifest.kernel_digest.as_str()),
            components.get("kernel").map(String::as_str),
        ),
        (
            "cmdline",
            Some(manifest.cmdline_digest.as_str()),
            components.get("cmdline").map(String::as_str),
        ),
        (
            "initrd",
            manifest.initrd_digest.as_deref(),
            components.get("initrd").map(String::as_str),
        ),
        (
            "image-manifest-digest",
            Some(manifest.image_manifest_digest.as_str()),
            claims.get("image-manifest-digest").map(String::as_str),
        ),
        (
            "oci-config-digest",
            Some(manifest.oci_config_digest.as_str()),
            claims.get("oci-config-digest").map(String::as_str),
        ),
    ];
    for (name, said, measured) in pairs {
        if said != measured {
            report.fail_component(
                Check::Manifest,
                name,
                format!("manifest says {said:?}, the log measured {measured:?}"),
            );
        }
    }
}

/// A verifier that issues nonces and redeems each once (replay protection across calls).
#[derive(Debug)]
pub struct Verifier {
    trusted_cas: Vec<Vec<u8>>,
    reference: ReferenceValues,
    outstanding: HashMap<[u8; 32], SystemTime>,
}

impl Verifier {
    pub fn new(trusted_cas: Vec<Vec<u8>>, reference: ReferenceValues) -> Self {
        Self {
            trusted_cas,
            reference,
            outstanding: HashMap::new(),
        }
    }

    /// A fresh 32-byte nonce to send to the attester.
    pub fn challenge(&mut self) -> [u8; 32] {
        let now = SystemTime::now();
        self.outstanding.retain(|_, t| {
            now.duration_since(*t)
                .map(|d| d < NONCE_TTL)
                .unwrap_or(true)
        });
        if self.outstanding.len() >= MAX_OUTSTANDING {
            let oldest = self
                .outstanding
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(n, _)| *n);
            if let Some(n) = oldest {
                self.outstanding.remove(&n);
            }
        }
        let mut nonce = [0u8; 32];
        OsRng.fill_bytes(&mut nonce);
        self.outstanding.insert(nonce, now);
        nonce
    }

    /// Verifies a response to one of this verifier's challenges. The nonce is used up whether
    /// or not the evidence verifies; an unknown, expired or reused nonce fails [`Check::Nonce`].
    pub fn verify_response(&mut self, evidence: &Evidence) -> Result<Verified, Vec<Failure>> {
        let now = SystemTime::now();
        let challenge = <[u8; 32]>::try_from(evidence.nonce.as_slice()).ok();
        self.redeem(challenge.as_ref(), now)?;
        self.verify_at(evidence, &evidence.nonce, now)
    }

    /// Verifies a response whose quote is over [`key_binding`]`(challenge, key)`: the
    /// attester answered `challenge` (one of this verifier's, used up here either way) and
    /// vouched for `key` in the same signed quote, so a certificate for `key` goes to the zone
    /// whose TPM quoted, and to no key swapped in on the way.
    pub fn verify_key_bound_response(
        &mut self,
        evidence: &Evidence,
        challenge: &[u8; 32],
        key: &[u8],
    ) -> Result<Verified, Vec<Failure>> {
        let now = SystemTime::now();
        self.redeem(Some(challenge), now)?;
        self.verify_at(evidence, &key_binding(challenge, key), now)
    }

    /// Uses up `challenge`: an error unless this verifier issued it and it is fresh.
    fn redeem(
        &mut self,
        challenge: Option<&[u8; 32]>,
        now: SystemTime,
    ) -> Result<(), Vec<Failure>> {
        let issued = challenge.and_then(|n| self.outstanding.remove(n));
        let fresh = issued
            .map(|t| now.duration_since(t).map(|d| d < NONCE_TTL).unwrap_or(true))
            .unwrap_or(false);
        if fresh {
            return Ok(());
        }
        Err(vec![Failure {
            check: Check::Nonce,
            component: None,
            detail: "the nonce was not issued by this verifier, has expired or was already used (replay)"
                .to_string(),
        }])
    }

    fn verify_at(
        &self,
        evidence: &Evidence,
        expected_nonce: &[u8],
        now: SystemTime,
    ) -> Result<Verified, Vec<Failure>> {
        verify(
            evidence,
            &Policy {
                trusted_cas: &self.trusted_cas,
                reference: &self.reference,
                expected_nonce,
                now,
            },
        )
    }
}

/// The qualifying data that binds `key` (a public key, DER) to a quote over `challenge`:
/// SHA-256 of a domain tag, the challenge and the key.
pub fn key_binding(challenge: &[u8; 32], key: &[u8]) -> [u8; 32] {
    let mut input = Vec::with_capacity(KEY_BINDING_TAG.len() + challenge.len() + key.len());
    input.extend_from_slice(KEY_BINDING_TAG);
    input.extend_from_slice(challenge);
    input.extend_from_slice(key);
    sha256(&input)
}

/// Keeps key-binding digests apart from any other use of SHA-256 over a challenge.
const KEY_BINDING_TAG: &[u8] = b"zones-key-binding/v1\0";
