//! The verifier against good and tampered evidence, end to end through the public API with the
//! software TPM: each tampering is refused with a failure that names the check (and component).

use std::time::SystemTime;

use zone_attest::ear;
use zone_attest::eventlog::{self, Event, EventLog, EV_EVENT_TAG, EV_IPL};
use zone_attest::evidence::{sha256_uri, Evidence, ZoneManifest};
use zone_attest::measurements::{self, BootInputs, ZoneClaims, PCR_ZONE_CLAIMS};
use zone_attest::protocol::{attest, attest_key, enroll, respond, Enrollment};
use zone_attest::reference::{self, ReferenceValues};
use zone_attest::soft_tpm::SoftTpm;
use zone_attest::verify::{key_binding, verify, Check, Failure, Policy, Verified, Verifier};
use zone_attest::zone_ca::{FileCaSigner, ZoneCa};

const KERNEL: &[u8] = b"kernel image v1";
const CMDLINE: &[u8] = b"console=hvc0 quiet tpm_tis.force=1";
const INITRD: &[u8] = b"zone agent initrd";
const IMAGE: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const OCI: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
const NONCE: [u8; 32] = [7; 32];

struct Boot<'a> {
    zone: &'a str,
    kernel: &'a [u8],
    cmdline: &'a [u8],
    image: &'a str,
}

const GOOD: Boot<'static> = Boot {
    zone: "zone-1",
    kernel: KERNEL,
    cmdline: CMDLINE,
    image: IMAGE,
};

fn claims(b: &Boot<'_>) -> ZoneClaims {
    ZoneClaims {
        zone_id: b.zone.into(),
        image_manifest_digest: b.image.into(),
        oci_config_digest: OCI.into(),
    }
}

fn inputs<'a>(b: &'a Boot<'a>, claims: &'a ZoneClaims) -> BootInputs<'a> {
    BootInputs {
        vmm_version: "zone-vmm 0.1.0",
        zone_config: b"zones-platform-config/1 vcpus=1",
        kernel: b.kernel,
        cmdline: b.cmdline,
        initrd: Some(INITRD),
        claims,
    }
}

fn reference() -> ReferenceValues {
    let c = claims(&GOOD);
    ReferenceValues::from_boot_inputs(&inputs(&GOOD, &c))
}

fn manifest(b: &Boot<'_>, host: &str) -> ZoneManifest {
    let s = |d: &[u8]| sha256_uri(&eventlog::sha256(d));
    ZoneManifest {
        zone_id: b.zone.into(),
        host_id: host.into(),
        vmm_version: "zone-vmm 0.1.0".into(),
        kernel_digest: s(b.kernel),
        initrd_digest: Some(s(INITRD)),
        cmdline_digest: s(b.cmdline),
        image_manifest_digest: b.image.into(),
        oci_config_digest: OCI.into(),
    }
}

/// A software TPM measured with `b`'s boot.
fn booted(b: &Boot<'_>) -> SoftTpm {
    let c = claims(b);
    let mut tpm = SoftTpm::new();
    tpm.measure(&measurements::plan(&inputs(b, &c)));
    tpm
}

struct Zone {
    ca: ZoneCa,
    tpm: SoftTpm,
    enrollment: Enrollment,
}

fn zone(b: &Boot<'_>, enrolled_as: &str) -> Zone {
    let ca = ZoneCa::new_self_signed(FileCaSigner::ephemeral(), "host-a").expect("ca");
    let mut tpm = booted(b);
    let enrollment = enroll(&ca, &mut tpm, enrolled_as).expect("enroll");
    Zone {
        ca,
        tpm,
        enrollment,
    }
}

fn evidence(z: &mut Zone, b: &Boot<'_>) -> Evidence {
    respond(&mut z.tpm, &z.enrollment, &manifest(b, "host-a"), &NONCE).expect("respond")
}

fn check(e: &Evidence, ca: &ZoneCa) -> Result<Verified, Vec<Failure>> {
    verify(
        e,
        &Policy {
            trusted_cas: &[ca.cert_der().to_vec()],
            reference: &reference(),
            expected_nonce: &NONCE,
            now: SystemTime::now(),
        },
    )
}

/// The failures, asserting there are some; printed so a test log shows the reasons.
fn failures(r: Result<Verified, Vec<Failure>>) -> Vec<Failure> {
    let f = r.expect_err("tampered evidence was affirmed");
    for x in &f {
        eprintln!("refused: {x}");
    }
    f
}

fn has(f: &[Failure], check: Check, component: Option<&str>) -> bool {
    f.iter()
        .any(|x| x.check == check && (component.is_none() || x.component.as_deref() == component))
}

#[test]
fn test_verify_good_bundle_is_affirmed() {
    let mut z = zone(&GOOD, "zone-1");
    let e = evidence(&mut z, &GOOD);
    let v = check(&e, &z.ca).expect("good evidence affirmed");
    assert_eq!(
        (v.zone_id.as_str(), v.host_id.as_str()),
        ("zone-1", "host-a")
    );
    assert_eq!(
        v.claims.get("image-manifest-digest").map(String::as_str),
        Some(IMAGE)
    );
    assert_eq!(v.pcrs.len(), 11);
    // The attestation result says so, signed.
    let key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let result = Ok(v);
    let jwt = ear::sign_jwt(
        &ear::appraise(&result, &NONCE, "zones/test", SystemTime::now()),
        &key,
    );
    let back = ear::verify_jwt(&jwt, key.verifying_key()).expect("EAR verifies");
    assert_eq!(back.submods["zone"].status, ear::Status::Affirming);
    assert!(ear::summary(&result).starts_with("AFFIRMING: zone zone-1 on host host-a"));
    // And it survives the JSON round trip.
    let back = Evidence::from_json(e.to_json().as_bytes()).expect("json");
    check(&back, &z.ca).expect("affirmed after JSON");
}

#[test]
fn test_verify_another_kernel_names_kernel() {
    let b = Boot {
        kernel: b"kernel image v2",
        ..GOOD
    };
    let mut z = zone(&b, "zone-1");
    let f = failures(check(&evidence(&mut z, &b), &z.ca));
    assert!(has(&f, Check::Reference, Some("kernel")));
    assert_eq!(f.len(), 1, "only the kernel differs: {f:?}");
}

#[test]
fn test_verify_edited_cmdline_names_cmdline() {
    let b = Boot {
        cmdline: b"console=hvc0 quiet tpm_tis.force=1 init=/bin/sh",
        ..GOOD
    };
    let mut z = zone(&b, "zone-1");
    let f = failures(check(&evidence(&mut z, &b), &z.ca));
    assert!(has(&f, Check::Reference, Some("cmdline")));
    assert_eq!(f.len(), 1, "{f:?}");
}

#[test]
fn test_verify_another_image_names_image_digest() {
    let b = Boot {
        image: "sha256:3333333333333333333333333333333333333333333333333333333333333333",
        ..GOOD
    };
    let mut z = zone(&b, "zone-1");
    let f = failures(check(&evidence(&mut z, &b), &z.ca));
    assert!(has(&f, Check::Reference, Some("image-manifest-digest")));
}

#[test]
fn test_verify_replayed_nonce_is_refused() {
    let mut z = zone(&GOOD, "zone-1");
    let mut verifier = Verifier::new(vec![z.ca.cert_der().to_vec()], reference());
    let m = manifest(&GOOD, "host-a");
    let (e, verdict) = attest(&mut z.tpm, &z.enrollment, &m, &mut verifier).expect("protocol");
    verdict.expect("first response affirmed");
    // The same (valid, signed) response again: its nonce is used up.
    let f = failures(verifier.verify_response(&e));
    assert!(has(&f, Check::Nonce, None));
    // A response over an old nonce sent in answer to a new challenge fails too.
    let fresh = verifier.challenge();
    let f = failures(verify(
        &e,
        &Policy {
            trusted_cas: &[z.ca.cert_der().to_vec()],
            reference: &reference(),
            expected_nonce: &fresh,
            now: SystemTime::now(),
        },
    ));
    assert!(has(&f, Check::Nonce, None));
}

#[test]
fn test_verify_edited_event_log_is_refused() {
    let mut z = zone(&GOOD, "zone-1");
    let good = evidence(&mut z, &GOOD);

    // Another digest for the command line event: the replay no longer matches the quote.
    let mut log = EventLog::parse(&good.event_log).expect("log");
    let i = log
        .events
        .iter()
        .position(|e| e.pcr == 8)
        .expect("cmdline event");
    log.events[i].digest = eventlog::sha256(b"console=hvc0");
    let mut e = good.clone();
    e.event_log = log.to_bytes();
    let f = failures(check(&e, &z.ca));
    assert!(has(&f, Check::EventLog, None));
    assert!(f[0].detail.contains("PCR 8"), "{f:?}");

    // Same digest, other text: the log would lie about what was measured.
    let mut log = EventLog::parse(&good.event_log).expect("log");
    log.events[i].data = b"console=hvc0".to_vec();
    let mut e = good.clone();
    e.event_log = log.to_bytes();
    let f = failures(check(&e, &z.ca));
    assert!(has(&f, Check::EventLog, None));

    // A dropped event.
    let mut log = EventLog::parse(&good.event_log).expect("log");
    log.events.remove(i);
    let mut e = good;
    e.event_log = log.to_bytes();
    assert!(has(&failures(check(&e, &z.ca)), Check::EventLog, None));
}

#[test]
fn test_verify_ek_cert_from_another_hosts_ca_is_refused() {
    let mut z = zone(&GOOD, "zone-1");
    let mut e = evidence(&mut z, &GOOD);
    let other = ZoneCa::new_self_signed(FileCaSigner::ephemeral(), "host-b").expect("ca");
    e.ek_cert = other
        .issue_ek_cert("zone-1", z.tpm.ek_public())
        .expect("ek cert");
    let f = failures(check(&e, &z.ca));
    assert!(has(&f, Check::EkCertChain, None));
}

#[test]
fn test_verify_self_signed_fake_ca_is_refused() {
    // A complete, internally consistent bundle from a fake CA that copies the real one's host id.
    let mut tpm = booted(&GOOD);
    let fake = ZoneCa::new_self_signed(FileCaSigner::ephemeral(), "host-a").expect("fake ca");
    let enrollment = enroll(&fake, &mut tpm, "zone-1").expect("enroll with fake");
    let e = respond(&mut tpm, &enrollment, &manifest(&GOOD, "host-a"), &NONCE).expect("respond");
    let real = ZoneCa::new_self_signed(FileCaSigner::ephemeral(), "host-a").expect("real ca");
    let f = failures(check(&e, &real));
    assert!(has(&f, Check::ZoneCaTrusted, None));
    assert!(has(&f, Check::EkCertChain, None));
    assert!(has(&f, Check::AkCertChain, None));
    // The same bundle is fine for a verifier that trusts the fake CA: the CA is the only difference.
    check(&e, &fake).expect("consistent bundle");
}

#[test]
fn test_verify_quote_by_never_activated_key_is_refused() {
    let mut z = zone(&GOOD, "zone-1");
    // The TPM gets a new AK that never went through activation; the old AK certificate stays.
    z.tpm.new_ak();
    let mut e = evidence(&mut z, &GOOD);
    e.ak_public = z.tpm.ak_public().to_tpm2b();
    let f = failures(check(&e, &z.ca));
    assert!(has(&f, Check::AkCertified, None));

    // No AK certificate at all.
    let mut e = evidence(&mut z, &GOOD);
    e.ak_cert = Vec::new();
    assert!(has(&failures(check(&e, &z.ca)), Check::AkCertChain, None));
}

#[test]
fn test_verify_ak_cert_for_another_key_is_refused() {
    let mut z = zone(&GOOD, "zone-1");
    // Another TPM enrolled for the same zone id with the same CA: its AK cert is genuine, but
    // for another AK, activated against another EK.
    let mut other = booted(&GOOD);
    let other_enrollment = enroll(&z.ca, &mut other, "zone-1").expect("enroll other");
    let mut e = evidence(&mut z, &GOOD);
    e.ak_cert = other_enrollment.ak_cert;
    let f = failures(check(&e, &z.ca));
    assert!(has(&f, Check::AkActivated, None));
    assert!(has(&f, Check::AkCertified, None));
}

#[test]
fn test_verify_certs_of_two_zones_are_refused() {
    let mut z = zone(&GOOD, "zone-1");
    let mut other = booted(&GOOD);
    let other_enrollment = enroll(&z.ca, &mut other, "zone-2").expect("enroll other");
    let mut e = evidence(&mut z, &GOOD);
    e.ak_cert = other_enrollment.ak_cert;
    assert!(has(&failures(check(&e, &z.ca)), Check::SameZone, None));
}

#[test]
fn test_verify_measured_zone_id_must_be_the_certified_zone() {
    // The VMM measured zone-2's claims into a TPM whose EK is certified for zone-1.
    let b = Boot {
        zone: "zone-2",
        ..GOOD
    };
    let mut z = zone(&b, "zone-1");
    let mut e = evidence(&mut z, &b);
    e.manifest.zone_id = "zone-1".into();
    let f = failures(check(&e, &z.ca));
    assert!(has(&f, Check::ZoneClaims, Some("zone-id")));
}

/// The guest runs at locality 0 and can extend the claims PCR after the VMM did: whatever it
/// appends, logged or not, is refused, so it can deny its own attestation but not forge claims.
#[test]
fn test_verify_guest_extend_of_claims_pcr_is_refused() {
    const OTHER: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";
    // The VMM measured image OTHER; the guest appends a claim for the reference image IMAGE,
    // logged and extended, so the log replays to the quote and a last-one-wins reading of the
    // claims would see IMAGE. The host's manifest is made to agree, so that only the claims
    // check stands in the way.
    let b = Boot {
        image: OTHER,
        ..GOOD
    };
    let mut z = zone(&b, "zone-1");
    z.tpm.measure(&[Event::of_data(
        PCR_ZONE_CLAIMS,
        EV_IPL,
        format!("image-manifest-digest={IMAGE}").into_bytes(),
    )]);
    let mut e = evidence(&mut z, &b);
    e.manifest.image_manifest_digest = IMAGE.into();
    let f = failures(check(&e, &z.ca));
    assert!(has(&f, Check::ZoneClaims, None), "{f:?}");
    assert!(
        f.iter().any(|x| x
            .detail
            .contains(&format!("PCR {PCR_ZONE_CLAIMS} holds 4 events"))),
        "{f:?}"
    );

    // Extended but not logged: the replay no longer gives the quoted PCR 15.
    let mut z = zone(&GOOD, "zone-1");
    z.tpm
        .extend(PCR_ZONE_CLAIMS, &eventlog::sha256(b"guest was here"));
    let f = failures(check(&evidence(&mut z, &GOOD), &z.ca));
    assert!(has(&f, Check::EventLog, None), "{f:?}");
    assert!(
        f.iter().any(|x| x
            .detail
            .contains(&format!("PCR {PCR_ZONE_CLAIMS} than the quote"))),
        "{f:?}"
    );

    // Logged and extended, but not a claim event (an unknown key, another event type).
    for extra in [
        Event::of_data(PCR_ZONE_CLAIMS, EV_IPL, b"machine-id=guest".to_vec()),
        Event::of_data(PCR_ZONE_CLAIMS, EV_EVENT_TAG, b"zone-id=zone-1".to_vec()),
    ] {
        let mut z = zone(&GOOD, "zone-1");
        z.tpm.measure(&[extra]);
        let f = failures(check(&evidence(&mut z, &GOOD), &z.ca));
        assert!(has(&f, Check::EventLog, None), "{f:?}");
    }
}

#[test]
fn test_verify_edited_pcr_value_and_signature_are_refused() {
    let mut z = zone(&GOOD, "zone-1");
    let good = evidence(&mut z, &GOOD);
    let mut e = good.clone();
    e.pcrs.sha256.insert(4, "00".repeat(32));
    assert!(has(&failures(check(&e, &z.ca)), Check::PcrDigest, None));

    let mut e = good.clone();
    let n = e.quote.signature.len();
    e.quote.signature[n - 1] ^= 1;
    assert!(has(
        &failures(check(&e, &z.ca)),
        Check::QuoteSignature,
        None
    ));

    let mut e = good;
    e.quote.attest[30] ^= 1;
    let f = failures(check(&e, &z.ca));
    assert!(has(&f, Check::QuoteSignature, None) || has(&f, Check::Evidence, None));
}

#[test]
fn test_verify_manifest_that_lies_is_refused() {
    let mut z = zone(&GOOD, "zone-1");
    let mut e = evidence(&mut z, &GOOD);
    e.manifest.kernel_digest = sha256_uri(&eventlog::sha256(b"some other kernel"));
    assert!(has(
        &failures(check(&e, &z.ca)),
        Check::Manifest,
        Some("kernel")
    ));
}

/// Property test: random bit flips in any binary field of a good bundle never panic the
/// verifier and are always refused (every byte of those fields is bound by a check).
#[test]
fn test_verify_random_flips_are_refused_without_panic() {
    let mut z = zone(&GOOD, "zone-1");
    let good = evidence(&mut z, &GOOD);
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..600 {
        let mut e = good.clone();
        let (name, field) = match next() % 6 {
            0 => ("event_log", &mut e.event_log),
            1 => ("quote.attest", &mut e.quote.attest),
            2 => ("quote.signature", &mut e.quote.signature),
            3 => ("ak_public", &mut e.ak_public),
            4 => ("ek_cert", &mut e.ek_cert),
            _ => ("ak_cert", &mut e.ak_cert),
        };
        let i = next() as usize % field.len();
        field[i] ^= 1 << (next() % 8);
        assert!(
            check(&e, &z.ca).is_err(),
            "round {round}: a bit flipped in {name}[{i}] was affirmed"
        );
    }
}

#[test]
fn test_verify_key_bound_response_is_affirmed_once() {
    let mut z = zone(&GOOD, "zone-1");
    let mut verifier = Verifier::new(vec![z.ca.cert_der().to_vec()], reference());
    let m = manifest(&GOOD, "host-a");
    let key = b"the zone's SVID public key".as_slice();
    let (e, verdict) =
        attest_key(&mut z.tpm, &z.enrollment, &m, &mut verifier, key).expect("protocol");
    verdict.expect("key-bound response affirmed");
    // The quote's qualifying data is not the challenge itself but its binding to the key.
    assert_eq!(e.nonce.len(), 32);
    // Replayed: the challenge inside is used up, whatever challenge it is presented with.
    let challenge = verifier.challenge();
    let f = failures(verifier.verify_key_bound_response(&e, &challenge, key));
    assert!(has(&f, Check::Nonce, None), "{f:?}");
}

#[test]
fn test_verify_key_bound_response_for_another_key_is_refused() {
    let mut z = zone(&GOOD, "zone-1");
    let mut verifier = Verifier::new(vec![z.ca.cert_der().to_vec()], reference());
    let m = manifest(&GOOD, "host-a");
    let challenge = verifier.challenge();
    // The zone quoted over its own key; somebody on the way swaps in theirs.
    let e = respond(
        &mut z.tpm,
        &z.enrollment,
        &m,
        &key_binding(&challenge, b"zone key"),
    )
    .expect("respond");
    let f = failures(verifier.verify_key_bound_response(&e, &challenge, b"attacker key"));
    assert!(has(&f, Check::Nonce, None), "{f:?}");
    // A challenge this verifier never issued is refused before anything else.
    let f = failures(verifier.verify_key_bound_response(&e, &[9; 32], b"zone key"));
    assert!(has(&f, Check::Nonce, None), "{f:?}");
    assert_eq!(f.len(), 1);
}

#[test]
fn test_verify_reference_and_manifest_from_the_vmms_log_affirm_the_zone() {
    let c = claims(&GOOD);
    let log = measurements::event_log(&measurements::plan(&inputs(&GOOD, &c)));
    assert_eq!(ReferenceValues::from_event_log(&log), reference());
    let m = ZoneManifest::from_event_log("zone-1", "host-a", &log).expect("a full log");
    assert_eq!(m, manifest(&GOOD, "host-a"));
    // A log without the kernel's event is no manifest.
    let mut short = log.clone();
    short
        .events
        .retain(|e| reference::component_of(e).as_deref() != Some("kernel"));
    assert!(ZoneManifest::from_event_log("zone-1", "host-a", &short).is_none());
}
