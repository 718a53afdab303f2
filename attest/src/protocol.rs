//! The attestation protocol as library calls, for `zonectl attest` and the zone agent.
//!
//! 1. Enrollment, once per zone ([`enroll`]): the zone CA issues the EK certificate, seals a
//!    secret to the EK for the AK's name (MakeCredential), the zone's TPM activates it, and only
//!    then the CA issues the AK certificate.
//! 2. Attestation, per request ([`attest`]): the verifier picks a nonce
//!    ([`Verifier::challenge`]), the attester quotes the required PCRs over it and sends the
//!    evidence bundle ([`respond`]), the verifier checks it and uses the nonce up
//!    ([`Verifier::verify_response`]). A replayed bundle carries a used nonce and is refused.
//!
//! The TPM side is the [`Attester`] trait: a vTPM through tss-esapi or tpm2-tools, or the
//! [`SoftTpm`] in tests.

use crate::activation::{ActivationError, CredentialChallenge};
use crate::eventlog::EventLog;
use crate::evidence::{Evidence, PcrValues, QuoteBlob, ZoneManifest, FORMAT};
use crate::quote::PcrBank;
use crate::soft_tpm::SoftTpm;
use crate::tpm_types::TpmPublic;
use crate::verify::{key_binding, Failure, Verified, Verifier, REQUIRED_PCRS};
use crate::zone_ca::{CaSigner, ZoneCa, ZoneCaError};

/// What the zone's TPM must do for attestation.
pub trait Attester {
    type Error: std::error::Error + Send + Sync + 'static;
    /// The endorsement key's `TPMT_PUBLIC`.
    fn ek_public(&mut self) -> Result<TpmPublic, Self::Error>;
    /// The attestation key (created on first use): a restricted signing key under the EK
    /// hierarchy, as `tpm2_createak` makes.
    fn ak_public(&mut self) -> Result<TpmPublic, Self::Error>;
    /// `TPM2_ActivateCredential` with the AK and EK: the secret sealed in `challenge`.
    fn activate_credential(
        &mut self,
        challenge: &CredentialChallenge,
    ) -> Result<Vec<u8>, Self::Error>;
    /// `TPM2_Quote` of the SHA-256 `pcrs` with `nonce` as qualifying data, by the AK.
    fn quote(&mut self, nonce: &[u8], pcrs: &[u32]) -> Result<RawQuote, Self::Error>;
    /// The binary TCG event log of the zone's boot.
    fn event_log(&mut self) -> Result<Vec<u8>, Self::Error>;
}

/// A quote as the TPM returns it, with the PCR values read alongside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawQuote {
    /// `TPMS_ATTEST` bytes.
    pub attest: Vec<u8>,
    /// `TPMT_SIGNATURE` bytes.
    pub signature: Vec<u8>,
    pub pcrs: PcrBank,
}

/// What enrollment leaves the host with, to put into every evidence bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrollment {
    pub ek_cert: Vec<u8>,
    pub ak_cert: Vec<u8>,
    pub ak_public: TpmPublic,
    pub zone_ca_cert: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("the zone's TPM")]
    Attester(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the zone CA")]
    Ca(#[from] ZoneCaError),
}

fn tpm<E: std::error::Error + Send + Sync + 'static>(e: E) -> ProtocolError {
    ProtocolError::Attester(Box::new(e))
}

/// Enrolls zone `zone_id`'s TPM with the host's zone CA (EK certificate, activation, AK
/// certificate), with the EK the attester reports. Prefer [`enroll_with_ek`] on the host.
pub fn enroll<S: CaSigner, A: Attester>(
    ca: &ZoneCa<S>,
    attester: &mut A,
    zone_id: &str,
) -> Result<Enrollment, ProtocolError> {
    let ek = attester.ek_public().map_err(tpm)?;
    enroll_with_ek(ca, attester, zone_id, &ek)
}

/// The attester's answer to `nonce`: a quote of [`REQUIRED_PCRS`] and the evidence bundle.
pub fn respond<A: Attester>(
    attester: &mut A,
    enrollment: &Enrollment,
    manifest: &ZoneManifest,
    nonce: &[u8],
) -> Result<Evidence, ProtocolError> {
    let q = attester.quote(nonce, &REQUIRED_PCRS).map_err(tpm)?;
    Ok(Evidence {
        format: FORMAT.to_string(),
        nonce: nonce.to_vec(),
        quote: QuoteBlob {
            attest: q.attest,
            signature: q.signature,
        },
        pcrs: PcrValues {
            sha256: q.pcrs.iter().map(|(k, v)| (*k, hex::encode(v))).collect(),
        },
        event_log: attester.event_log().map_err(tpm)?,
        ak_public: enrollment.ak_public.to_tpm2b(),
        ek_cert: enrollment.ek_cert.clone(),
        ak_cert: enrollment.ak_cert.clone(),
        zone_ca_cert: enrollment.zone_ca_cert.clone(),
        manifest: manifest.clone(),
    })
}

/// Enrolls zone `zone_id`'s TPM with `ek`, the EK public the VMM read from the vTPM before the
/// zone ran (`zone-vmm --tpm-ek-public`), instead of the EK the zone reports: the host never
/// takes the guest's word for which EK it certifies. Credential activation then proves the
/// zone's AK lives in the TPM holding that EK.
pub fn enroll_with_ek<S: CaSigner, A: Attester>(
    ca: &ZoneCa<S>,
    attester: &mut A,
    zone_id: &str,
    ek: &TpmPublic,
) -> Result<Enrollment, ProtocolError> {
    let ak = attester.ak_public().map_err(tpm)?;
    let ek_cert = ca.issue_ek_cert(zone_id, ek)?;
    let (challenge, pending) = ca.start_ak_activation(&ek_cert, ek, &ak, &mut rand_core::OsRng)?;
    let secret = attester.activate_credential(&challenge).map_err(tpm)?;
    let ak_cert = ca.finish_ak_activation(pending, &secret)?;
    Ok(Enrollment {
        ek_cert,
        ak_cert,
        ak_public: ak,
        zone_ca_cert: ca.cert_der().to_vec(),
    })
}

/// One round: the verifier's challenge, the attester's evidence, the verdict.
/// The outer `Result` is the protocol (the TPM failed); the inner one the verification.
#[allow(clippy::type_complexity)]
pub fn attest<A: Attester>(
    attester: &mut A,
    enrollment: &Enrollment,
    manifest: &ZoneManifest,
    verifier: &mut Verifier,
) -> Result<(Evidence, Result<Verified, Vec<Failure>>), ProtocolError> {
    let nonce = verifier.challenge();
    let evidence = respond(attester, enrollment, manifest, &nonce)?;
    let verdict = verifier.verify_response(&evidence);
    Ok((evidence, verdict))
}

/// One round that also vouches for `key` (the public key a certificate will be issued for):
/// the verifier's challenge, the attester's quote over [`key_binding`] of it and the key, the
/// verdict. The identity authority calls this before every X.509-SVID it issues.
#[allow(clippy::type_complexity)]
pub fn attest_key<A: Attester>(
    attester: &mut A,
    enrollment: &Enrollment,
    manifest: &ZoneManifest,
    verifier: &mut Verifier,
    key: &[u8],
) -> Result<(Evidence, Result<Verified, Vec<Failure>>), ProtocolError> {
    let challenge = verifier.challenge();
    let evidence = respond(
        attester,
        enrollment,
        manifest,
        &key_binding(&challenge, key),
    )?;
    let verdict = verifier.verify_key_bound_response(&evidence, &challenge, key);
    Ok((evidence, verdict))
}

impl Attester for SoftTpm {
    type Error = ActivationError;

    fn ek_public(&mut self) -> Result<TpmPublic, Self::Error> {
        Ok(SoftTpm::ek_public(self).clone())
    }

    fn ak_public(&mut self) -> Result<TpmPublic, Self::Error> {
        Ok(SoftTpm::ak_public(self).clone())
    }

    fn activate_credential(
        &mut self,
        challenge: &CredentialChallenge,
    ) -> Result<Vec<u8>, Self::Error> {
        SoftTpm::activate_credential(self, challenge)
    }

    fn quote(&mut self, nonce: &[u8], pcrs: &[u32]) -> Result<RawQuote, Self::Error> {
        let (attest, signature, pcrs) = SoftTpm::quote(self, nonce, pcrs);
        Ok(RawQuote {
            attest,
            signature,
            pcrs,
        })
    }

    fn event_log(&mut self) -> Result<Vec<u8>, Self::Error> {
        Ok(EventLog::to_bytes(SoftTpm::event_log(self)))
    }
}
