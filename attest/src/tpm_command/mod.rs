//! The TPM 2.0 commands Zones sends itself, as bytes on the wire (TPM 2.0 Library Part 1 §18
//! "Command/Response Structures", Part 3 for each command), and a small client over any
//! [`TpmTransport`]. This is the one TPM marshalling layer: the VMM measures the boot and reads
//! the EK with it, the zone agent's [`crate::device_attester::TpmAttester`] attests with it.
//!
//! - [`wire`]: command framing (header, handle area, authorization area, parameters) and the
//!   strict response parser: the response tag, its size against the bytes received (at most
//!   [`MAX_RESPONSE`]), the response code (an error names the command and the `TPM_RC`), the
//!   handle area, `parameterSize` and one authorization response per session sent, every `TPM2B`
//!   bounded, no trailing bytes.
//! - [`commands`]: one builder (`fn name(..) -> Vec<u8>`) and one parser (`parse_name`) per
//!   command: `Startup`, `PCR_Extend`, `PCR_Read`, `CreatePrimary`, `ReadPublic`,
//!   `FlushContext`, `StartAuthSession`, `PolicySecret`, `ActivateCredential`, `Quote`, `Sign`.
//! - [`templates`]: the TCG EK Credential Profile's ECC NIST P-256 EK template, our AK template
//!   and the host's zone CA key template.
//! - [`Tpm`]: the commands sent through a transport, retried on `TPM_RC_RETRY`/`YIELDED`/`TESTING`.
//!
//! Everything a TPM answers is hostile input here (the host reading a guest-reachable vTPM's
//! state, the guest reading a device): parsers never panic and never trust a length.

pub mod commands;
pub mod templates;
pub mod wire;

use std::io;

use crate::eventlog::Sha256Digest;
use crate::quote::PcrBank;
use crate::tpm_types::{TpmError, TpmPublic};
use templates::Template;

pub use commands::{
    CreatedPrimary, ReadPublic, TPM_RH_ENDORSEMENT, TPM_RH_NULL, TPM_RH_OWNER, TPM_RS_PW,
};
pub use wire::{rc_name, MAX_COMMAND, MAX_RESPONSE};

/// `TPM_RC_INITIALIZE`: the TPM has not been started.
pub const TPM_RC_INITIALIZE: u32 = 0x100;
/// `TPM_RC_LOCALITY`: not allowed at the current locality.
pub const TPM_RC_LOCALITY: u32 = 0x907;
/// `TPM_RC_RETRY`, `TPM_RC_YIELDED`, `TPM_RC_TESTING`: send the command again.
pub const TPM_RC_RETRY: u32 = 0x922;
pub const TPM_RC_YIELDED: u32 = 0x908;
pub const TPM_RC_TESTING: u32 = 0x90a;
/// How often a command answered with a warning asking for a retry is sent again.
const RETRIES: usize = 8;

/// Something that carries one TPM command to a TPM and brings its whole response back.
pub trait TpmTransport {
    fn transmit(&mut self, command: &[u8]) -> io::Result<Vec<u8>>;
}

impl<T: TpmTransport + ?Sized> TpmTransport for &mut T {
    fn transmit(&mut self, command: &[u8]) -> io::Result<Vec<u8>> {
        (**self).transmit(command)
    }
}

impl<T: TpmTransport + ?Sized> TpmTransport for Box<T> {
    fn transmit(&mut self, command: &[u8]) -> io::Result<Vec<u8>> {
        (**self).transmit(command)
    }
}

/// A TPM command that did not do its job.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("TPM2_{command}: the transport to the TPM failed")]
    Transport {
        command: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("TPM2_{command} returned {}", rc_name(*rc))]
    Tpm { command: &'static str, rc: u32 },
    #[error("TPM2_{command}: malformed response")]
    Response {
        command: &'static str,
        #[source]
        source: TpmError,
    },
    #[error("TPM2_{command}: {why}")]
    Argument {
        command: &'static str,
        why: &'static str,
    },
}

impl CommandError {
    /// The TPM's response code, when the TPM refused the command.
    pub fn rc(&self) -> Option<u32> {
        match self {
            CommandError::Tpm { rc, .. } => Some(*rc),
            _ => None,
        }
    }
}

/// A key the TPM holds in a transient slot, with its public area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedKey {
    pub handle: u32,
    pub public: TpmPublic,
}

/// The commands of [`commands`] sent through `T`, one at a time.
#[derive(Debug)]
pub struct Tpm<T: TpmTransport> {
    transport: T,
}

impl<T: TpmTransport> Tpm<T> {
    pub fn new(transport: T) -> Self {
        Self { transport }
    }

    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    pub fn into_transport(self) -> T {
        self.transport
    }

    /// Sends `cmd`, again while the TPM answers with a retry warning; returns the raw response
    /// (which may carry another error code: the command's parser checks it).
    pub fn execute(&mut self, command: &'static str, cmd: &[u8]) -> Result<Vec<u8>, CommandError> {
        let mut attempt = 0;
        loop {
            let rsp = self
                .transport
                .transmit(cmd)
                .map_err(|source| CommandError::Transport { command, source })?;
            let retry = matches!(
                wire::peek_rc(&rsp),
                Some(TPM_RC_RETRY | TPM_RC_YIELDED | TPM_RC_TESTING)
            );
            attempt += 1;
            if !retry || attempt >= RETRIES {
                return Ok(rsp);
            }
        }
    }

    /// `TPM2_Startup(TPM_SU_CLEAR)`.
    pub fn startup_clear(&mut self) -> Result<(), CommandError> {
        let rsp = self.execute("Startup", &commands::startup_clear())?;
        commands::parse_startup(&rsp)
    }

    /// `TPM2_PCR_Extend` of the SHA-256 bank, at whatever locality the transport is in.
    pub fn pcr_extend(&mut self, pcr: u32, digest: &Sha256Digest) -> Result<(), CommandError> {
        let rsp = self.execute("PCR_Extend", &commands::pcr_extend(pcr, digest)?)?;
        commands::parse_pcr_extend(&rsp)
    }

    /// The SHA-256 values of `pcrs`, over as many `TPM2_PCR_Read`s as the TPM needs (it answers
    /// at most eight at a time). Fails if the PCRs change between the reads.
    pub fn pcr_read(&mut self, pcrs: &[u32]) -> Result<PcrBank, CommandError> {
        let mut left = commands::pcr_list("PCR_Read", pcrs)?;
        let mut out = PcrBank::new();
        let mut counter = None;
        while !left.is_empty() {
            let rsp = self.execute("PCR_Read", &commands::pcr_read(&left)?)?;
            let read = commands::parse_pcr_read(&rsp)?;
            if read.values.is_empty() || counter.is_some_and(|c| c != read.update_counter) {
                return Err(CommandError::Response {
                    command: "PCR_Read",
                    source: TpmError::Invalid {
                        what: "pcrSelectionOut",
                        why: if read.values.is_empty() {
                            "none of the PCRs asked for"
                        } else {
                            "pcrUpdateCounter moved between two reads"
                        },
                    },
                });
            }
            counter = Some(read.update_counter);
            for (pcr, value) in read.values {
                if !left.contains(&pcr) {
                    return Err(CommandError::Response {
                        command: "PCR_Read",
                        source: TpmError::Invalid {
                            what: "pcrSelectionOut",
                            why: "a PCR that was not asked for",
                        },
                    });
                }
                left.retain(|p| *p != pcr);
                out.insert(pcr, value);
            }
        }
        Ok(out)
    }

    /// `TPM2_CreatePrimary` of `template` under `hierarchy`, with an empty password for the
    /// hierarchy. The key is checked against the template and its name against its public area.
    pub fn create_primary(
        &mut self,
        hierarchy: u32,
        template: &Template,
    ) -> Result<LoadedKey, CommandError> {
        let rsp = self.execute(
            "CreatePrimary",
            &commands::create_primary(hierarchy, template)?,
        )?;
        let created = commands::parse_create_primary(&rsp, template)?;
        Ok(LoadedKey {
            handle: created.handle,
            public: created.public,
        })
    }

    /// The endorsement key of [`templates::ek_ecc_p256`], loaded.
    pub fn create_ek(&mut self) -> Result<LoadedKey, CommandError> {
        self.create_primary(TPM_RH_ENDORSEMENT, &templates::ek_ecc_p256())
    }

    /// The attestation key of [`templates::ak_ecc_p256`] (a primary key of the endorsement
    /// hierarchy: the same key every time on the same TPM), loaded.
    pub fn create_ak(&mut self) -> Result<LoadedKey, CommandError> {
        self.create_primary(TPM_RH_ENDORSEMENT, &templates::ak_ecc_p256())
    }

    /// The host's zone CA key of [`templates::ca_ecc_p256`], loaded: a primary key of the owner
    /// hierarchy, so the same key every time on the same TPM until the owner hierarchy is
    /// cleared (nothing is persisted).
    pub fn create_ca_key(&mut self) -> Result<LoadedKey, CommandError> {
        self.create_primary(TPM_RH_OWNER, &templates::ca_ecc_p256())
    }

    /// `TPM2_Sign` of a SHA-256 `digest` by the non-restricted ECDSA key `key` (empty password).
    pub fn sign(
        &mut self,
        key: u32,
        digest: &Sha256Digest,
    ) -> Result<p256::ecdsa::Signature, CommandError> {
        let rsp = self.execute("Sign", &commands::sign(key, digest))?;
        commands::parse_sign(&rsp)
    }

    /// `TPM2_ReadPublic`.
    pub fn read_public(&mut self, handle: u32) -> Result<ReadPublic, CommandError> {
        let rsp = self.execute("ReadPublic", &commands::read_public(handle))?;
        commands::parse_read_public(&rsp)
    }

    /// `TPM2_FlushContext`.
    pub fn flush_context(&mut self, handle: u32) -> Result<(), CommandError> {
        let rsp = self.execute("FlushContext", &commands::flush_context(handle))?;
        commands::parse_flush_context(&rsp)
    }

    /// `TPM2_StartAuthSession`: a policy session, SHA-256, unsalted, unbound, no parameter
    /// encryption. Returns the session handle.
    pub fn start_policy_session(&mut self) -> Result<u32, CommandError> {
        let mut nonce = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
        let rsp = self.execute(
            "StartAuthSession",
            &commands::start_auth_session_policy(&nonce),
        )?;
        Ok(commands::parse_start_auth_session(&rsp)?.0)
    }

    /// `TPM2_PolicySecret(TPM_RH_ENDORSEMENT)` with the endorsement hierarchy's (empty) password:
    /// what the EK template's policy asks for.
    pub fn policy_secret_endorsement(&mut self, session: u32) -> Result<(), CommandError> {
        let rsp = self.execute(
            "PolicySecret",
            &commands::policy_secret(TPM_RH_ENDORSEMENT, session),
        )?;
        commands::parse_policy_secret(&rsp)
    }

    /// `TPM2_ActivateCredential`: `ak` with an empty password, `ek` through the policy `session`
    /// (which the TPM closes when the command succeeds).
    pub fn activate_credential(
        &mut self,
        ak: u32,
        ek: u32,
        session: u32,
        credential_blob: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Vec<u8>, CommandError> {
        let cmd =
            commands::activate_credential(ak, ek, session, credential_blob, encrypted_secret)?;
        let rsp = self.execute("ActivateCredential", &cmd)?;
        commands::parse_activate_credential(&rsp)
    }

    /// `TPM2_Quote` by `ak` (ECDSA, SHA-256) over the SHA-256 `pcrs` with `nonce` as qualifying
    /// data. Returns the signed `TPMS_ATTEST` and the `TPMT_SIGNATURE`, both checked to parse.
    pub fn quote(
        &mut self,
        ak: u32,
        nonce: &[u8],
        pcrs: &[u32],
    ) -> Result<(Vec<u8>, Vec<u8>), CommandError> {
        let rsp = self.execute("Quote", &commands::quote(ak, nonce, pcrs)?)?;
        commands::parse_quote(&rsp)
    }
}
