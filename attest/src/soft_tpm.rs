//! A software stand-in for a zone's vTPM: an ECC P-256 EK (the TCG default EK template's
//! attributes and AES-128-CFB parameters), a restricted ECDSA P-256 AK, a SHA-256 PCR bank,
//! `TPM2_ActivateCredential` and `TPM2_Quote` producing the same bytes a TPM would.
//!
//! It exists so the protocol and every verification failure can be tested without a TPM, and it
//! is the reference the swtpm interop tests compare against. It proves nothing: its keys are in
//! process memory, so evidence from it is only as good as the process that made it.

use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use rand_core::OsRng;

use crate::activation::{activate_credential_p256, ActivationError, CredentialChallenge};
use crate::eventlog::{extend, initial_pcrs, Event, EventLog, PcrBank as FullBank, Sha256Digest};
use crate::quote::{pcr_digest, PcrBank};
use crate::tpm_types::{
    ClockInfo, PcrSelection, PublicKey, QuoteAttest, SymDef, TpmPublic, TpmSignature, TPM_ALG_AES,
    TPM_ALG_CFB, TPM_ALG_ECDSA, TPM_ALG_SHA256,
};

/// `TPMA_OBJECT` of the TCG default EK template (fixedTPM, fixedParent, sensitiveDataOrigin,
/// adminWithPolicy, restricted, decrypt).
pub const EK_ATTRIBUTES: u32 = 0x0003_00b2;
/// `TPMA_OBJECT` tpm2_createak gives an AK (fixedTPM, fixedParent, sensitiveDataOrigin,
/// userWithAuth, restricted, sign).
pub const AK_ATTRIBUTES: u32 = 0x0005_0072;
/// The EK template's policy: `PolicySecret(TPM_RH_ENDORSEMENT)`.
const EK_POLICY: [u8; 32] = [
    0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24,
    0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
];

/// A software TPM (see the module docs).
#[derive(Debug)]
pub struct SoftTpm {
    ek_secret: p256::SecretKey,
    ek_public: TpmPublic,
    ak_secret: p256::ecdsa::SigningKey,
    ak_public: TpmPublic,
    pcrs: FullBank,
    log: EventLog,
    clock: u64,
}

fn ecc_public(
    point: &p256::PublicKey,
    attributes: u32,
    policy: &[u8],
    symmetric: Option<SymDef>,
    scheme: Option<(u16, u16)>,
) -> TpmPublic {
    let p = point.to_encoded_point(false);
    let mut x = [0u8; 32];
    let mut y = [0u8; 32];
    x.copy_from_slice(p.x().expect("uncompressed point has x"));
    y.copy_from_slice(p.y().expect("uncompressed point has y"));
    TpmPublic::build(
        attributes,
        policy,
        symmetric,
        scheme,
        &PublicKey::EccP256 { x, y },
    )
    .expect("a P-256 public area always marshals")
}

impl Default for SoftTpm {
    fn default() -> Self {
        Self::new()
    }
}

impl SoftTpm {
    /// Fresh keys, PCRs as after `TPM2_Startup(CLEAR)` at locality 0.
    pub fn new() -> Self {
        let ek_secret = p256::SecretKey::random(&mut OsRng);
        let ek_public = ecc_public(
            &ek_secret.public_key(),
            EK_ATTRIBUTES,
            &EK_POLICY,
            Some(SymDef {
                alg: TPM_ALG_AES,
                key_bits: 128,
                mode: TPM_ALG_CFB,
            }),
            None,
        );
        Self::with_ek(ek_secret, ek_public)
    }

    fn with_ek(ek_secret: p256::SecretKey, ek_public: TpmPublic) -> Self {
        let ak_secret = p256::ecdsa::SigningKey::random(&mut OsRng);
        let ak_public = ecc_public(
            &p256::PublicKey::from(ak_secret.verifying_key()),
            AK_ATTRIBUTES,
            &[],
            None,
            Some((TPM_ALG_ECDSA, TPM_ALG_SHA256)),
        );
        Self {
            ek_secret,
            ek_public,
            ak_secret,
            ak_public,
            pcrs: initial_pcrs(0),
            log: EventLog::new(),
            clock: 1000,
        }
    }

    /// Replaces the AK with a new one (same EK): the old AK's certificate no longer fits.
    pub fn new_ak(&mut self) {
        let fresh = Self::with_ek(self.ek_secret.clone(), self.ek_public.clone());
        self.ak_secret = fresh.ak_secret;
        self.ak_public = fresh.ak_public;
    }

    pub fn ek_public(&self) -> &TpmPublic {
        &self.ek_public
    }

    pub fn ak_public(&self) -> &TpmPublic {
        &self.ak_public
    }

    pub fn extend(&mut self, pcr: u32, digest: &Sha256Digest) {
        if let Some(v) = self.pcrs.get_mut(pcr as usize) {
            *v = extend(v, digest);
        }
    }

    /// Extends and logs `plan` as the VMM does.
    pub fn measure(&mut self, plan: &[Event]) {
        for e in plan {
            self.extend(e.pcr, &e.digest);
            self.log.push(e.clone());
        }
    }

    /// The event log of everything [`SoftTpm::measure`]d.
    pub fn event_log(&self) -> &EventLog {
        &self.log
    }

    pub fn pcr(&self, pcr: u32) -> Sha256Digest {
        self.pcrs[pcr as usize]
    }

    /// `TPM2_ActivateCredential` with this TPM's EK and AK.
    pub fn activate_credential(
        &self,
        challenge: &CredentialChallenge,
    ) -> Result<Vec<u8>, ActivationError> {
        activate_credential_p256(
            &self.ek_secret,
            &self.ek_public,
            &self.ak_public.name(),
            challenge,
        )
    }

    /// `TPM2_Quote` over SHA-256 `pcrs` (indices < 24) with `nonce` as qualifying data.
    /// Returns the signed `TPMS_ATTEST`, its `TPMT_SIGNATURE` and the quoted values.
    pub fn quote(&mut self, nonce: &[u8], pcrs: &[u32]) -> (Vec<u8>, Vec<u8>, PcrBank) {
        use signature::Signer as _;
        let mut selected: Vec<u32> = pcrs.iter().copied().filter(|&p| p < 24).collect();
        selected.sort_unstable();
        selected.dedup();
        let values: PcrBank = selected
            .iter()
            .map(|&p| (p, self.pcrs[p as usize]))
            .collect();
        self.clock += 1;
        let attest = QuoteAttest {
            qualified_signer: self.ak_public.name(),
            extra_data: nonce.to_vec(),
            clock: ClockInfo {
                clock: self.clock,
                reset_count: 0,
                restart_count: 0,
                safe: true,
            },
            firmware_version: 0x2019_1023_0016_3636,
            pcr_select: vec![PcrSelection {
                hash: TPM_ALG_SHA256,
                pcrs: selected,
            }],
            pcr_digest: pcr_digest(&values).to_vec(),
        }
        .marshal();
        let sig: p256::ecdsa::Signature = self.ak_secret.sign(&attest);
        let (r, s) = sig.split_bytes();
        let sig = TpmSignature::Ecdsa {
            hash: TPM_ALG_SHA256,
            r: r.to_vec(),
            s: s.to_vec(),
        }
        .marshal();
        (attest, sig, values)
    }
}
