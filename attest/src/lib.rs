//! zone-attest: the attestation library shared by the VMM, the guest agent, zonectl and
//! verifiers. Bytes in, bytes or verdicts out, with std only: the zone CA reads and writes its
//! own key file, and [`device_attester`] talks to a TPM through whatever [`tpm_command::TpmTransport`]
//! it is given (a character device with std's `File` in the zone).
//!
//! - [`eventlog`]: the TCG PC Client crypto-agile event log (SHA-256 bank): writer, hostile-input
//!   parser and PCR replay.
//! - [`measurements`]: the measurement plan, the single source of truth for what the VMM extends
//!   into which PCR when a zone boots (and what `zonectl reference` predicts).
//! - [`tpm_types`]: TPM2B_PUBLIC, TPMS_ATTEST and TPMT_SIGNATURE from hostile bytes.
//! - [`tpm_command`]: the TPM 2.0 commands Zones sends (marshalling, strict response parsing,
//!   EK and AK templates), used by the VMM's measured boot and by [`device_attester`], the
//!   zone agent's TPM-backed [`protocol::Attester`].
//! - [`quote`]: quote checks (AK signature, nonce, pcrDigest over the signed selection).
//! - [`activation`]: MakeCredential, the CA's half of credential activation.
//! - [`zone_ca`], [`chain`]: the per-host zone CA (EK and AK certificates) and certificate checks;
//!   [`tpm_ca_signer`]: the zone CA's key in the host's TPM; [`tpm_socket`]: raw TPM commands
//!   over a Unix or TCP socket (swtpm's server channel).
//! - [`evidence`], [`reference`]: the evidence bundle and reference values (JSON).
//! - [`verify`]: the verifier; [`ear`]: attestation results (EAR JWT) and summaries.
//! - [`protocol`]: the [`protocol::Attester`] trait and the enroll/respond/attest calls;
//!   [`soft_tpm`]: a software TPM for tests.
//! - [`identity`]: workload identity (SPIFFE IDs, X.509- and JWT-SVIDs, the registration policy
//!   and the host's identity authority).

pub mod activation;
mod cert_parts;
pub mod chain;
pub mod device_attester;
pub mod ear;
pub mod eventlog;
pub mod evidence;
pub mod identity;
pub mod measurements;
pub mod protocol;
pub mod quote;
pub mod reference;
pub mod soft_tpm;
pub mod tpm_ca_signer;
pub mod tpm_command;
pub mod tpm_socket;
pub mod tpm_types;
pub mod verify;
pub mod zone_ca;
