//! Zones attestation: a pure library shared by the host (VMM, `zonectl`) and the zone agent.
//!
//! Quotes, keys and certificates (`tpm_types`, `quote`, `zone_ca`, `activation`), the evidence bundle
//! (`evidence`), reference values (`reference`), the verifier (`verify`) and attestation results (`ear`).
//! Everything that parses TPM structures treats its input as hostile.

pub mod activation;
pub mod quote;
pub mod tpm_types;
