//! zone-attest: the pure attestation library shared by the VMM, the guest agent, zonectl and
//! verifiers. No TPM access: bytes in, bytes or verdicts out (the zone CA reads and writes its own
//! key file).
//!
//! - [`eventlog`]: the TCG PC Client crypto-agile event log (SHA-256 bank): writer, hostile-input
//!   parser and PCR replay.
//! - [`measurements`]: the measurement plan, the single source of truth for what the VMM extends
//!   into which PCR when a zone boots (and what `zonectl reference` predicts).
//! - [`tpm_types`], [`quote`]: TPM structures (hostile input) and quote checks.
//! - [`activation`]: MakeCredential (the CA's half of credential activation).

pub mod activation;
pub mod chain;
pub mod eventlog;
pub mod evidence;
pub mod measurements;
pub mod protocol;
pub mod quote;
pub mod reference;
pub mod soft_tpm;
pub mod tpm_types;
pub mod verify;
pub mod zone_ca;
