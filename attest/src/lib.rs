//! zone-attest: the pure attestation library shared by the VMM, the guest agent, zonectl and
//! verifiers. No I/O, no TPM access: bytes in, bytes or verdicts out.
//!
//! - [`eventlog`]: the TCG PC Client crypto-agile event log (SHA-256 bank): writer, hostile-input
//!   parser and PCR replay.
//! - [`measurements`]: the measurement plan, the single source of truth for what the VMM extends
//!   into which PCR when a zone boots (and what `zonectl reference` predicts).

pub mod eventlog;
pub mod measurements;
