//! [`TpmCaSigner`]: the zone CA's key in the host's TPM.
//!
//! The key is the primary key of [`crate::tpm_command::templates::ca_ecc_p256`] in the owner
//! hierarchy: a non-restricted ECDSA P-256 signing key that never leaves the TPM (fixedTPM,
//! sensitiveDataOrigin) and that the TPM derives again, identically, from its owner seed each
//! time it is asked (TPM 2.0 Part 1 §26.2): nothing is persisted, neither a handle nor a key
//! blob. Clearing the owner hierarchy changes the key, and the CA certificate stored for the
//! old key is then refused ([`crate::zone_ca::ZoneCa::open_or_create_with`]).
//!
//! Every operation creates the key, uses it and flushes it (also when it fails), so no
//! transient object is left behind on a TPM without a resource manager (swtpm's socket) and
//! the signer holds nothing in the TPM between calls. Each signature is checked against the
//! key reported at creation before it is handed out: a TPM that derives another key (it was
//! cleared while we ran) or answers with a wrong signature is caught here, not by a verifier.
//!
//! What it does not do yet: certify the CA key with the host's AK (so a remote verifier can
//! chain host attestation → zone CA); the CA certificate is self-signed either way.

use std::sync::Mutex;

use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use sha2::{Digest as _, Sha256};

use crate::tpm_command::{CommandError, LoadedKey, Tpm, TpmTransport};
use crate::tpm_types::TpmPublic;
use crate::zone_ca::{CaSigner, ZoneCaError};

#[derive(Debug, thiserror::Error)]
pub enum TpmCaSignerError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("the host TPM's CA key is not a P-256 key")]
    Key(#[source] crate::tpm_types::TpmError),
    #[error("the host TPM derived another CA key than before (was its owner hierarchy cleared?)")]
    KeyChanged,
    #[error("the host TPM's signature does not verify under its CA key")]
    BadSignature,
    #[error("the host TPM is in use by a thread that panicked")]
    Poisoned,
}

/// A [`CaSigner`] whose key lives in the TPM behind `T`.
#[derive(Debug)]
pub struct TpmCaSigner<T: TpmTransport> {
    tpm: Mutex<Tpm<T>>,
    public: TpmPublic,
    key: p256::ecdsa::VerifyingKey,
    tpm_name: String,
}

impl<T: TpmTransport> TpmCaSigner<T> {
    /// Derives the CA key in the TPM behind `transport` (and flushes it again).
    pub fn new(transport: T) -> Result<Self, TpmCaSignerError> {
        let mut tpm = Tpm::new(transport);
        let public = with_ca_key(&mut tpm, |_, key| Ok(key.public.clone()))?;
        let key = p256::ecdsa::VerifyingKey::from(
            public.p256_public_key().map_err(TpmCaSignerError::Key)?,
        );
        Ok(Self {
            tpm: Mutex::new(tpm),
            public,
            key,
            tpm_name: "(unnamed)".to_string(),
        })
    }

    /// Names the TPM in messages (`device:/dev/tpmrm0`, `swtpm:unix:/run/host-tpm.sock`).
    pub fn named(mut self, tpm_name: impl Into<String>) -> Self {
        self.tpm_name = tpm_name.into();
        self
    }

    /// The CA key's public area as the TPM reported it.
    pub fn public(&self) -> &TpmPublic {
        &self.public
    }

    /// ECDSA P-256 over SHA-256 of `message`, by the TPM.
    pub fn sign_message(&self, message: &[u8]) -> Result<p256::ecdsa::Signature, TpmCaSignerError> {
        let digest: [u8; 32] = Sha256::digest(message).into();
        let mut tpm = self.tpm.lock().map_err(|_| TpmCaSignerError::Poisoned)?;
        let sig = with_ca_key(&mut tpm, |tpm, key| {
            if key.public != self.public {
                return Err(TpmCaSignerError::KeyChanged);
            }
            Ok(tpm.sign(key.handle, &digest)?)
        })?;
        // Low-S is not required by X.509 verifiers; keep the TPM's signature as it is.
        self.key
            .verify_prehash(&digest, &sig)
            .map_err(|_| TpmCaSignerError::BadSignature)?;
        Ok(sig)
    }
}

/// Creates the CA key, runs `f` with it and flushes it whatever `f` returned.
fn with_ca_key<T: TpmTransport, R>(
    tpm: &mut Tpm<T>,
    f: impl FnOnce(&mut Tpm<T>, &LoadedKey) -> Result<R, TpmCaSignerError>,
) -> Result<R, TpmCaSignerError> {
    let key = tpm.create_ca_key()?;
    let result = f(tpm, &key);
    let flushed = tpm.flush_context(key.handle);
    let out = result?;
    flushed?;
    Ok(out)
}

impl<T: TpmTransport + Send + std::fmt::Debug> CaSigner for TpmCaSigner<T> {
    fn verifying_key(&self) -> p256::ecdsa::VerifyingKey {
        self.key
    }

    fn describe(&self) -> String {
        format!("the CA key in the host TPM {}", self.tpm_name)
    }

    fn sign(&self, message: &[u8]) -> Result<p256::ecdsa::DerSignature, ZoneCaError> {
        Ok(self.sign_message(message)?.to_der())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Answers commands from a script and records them.
    #[derive(Debug, Default)]
    struct Scripted {
        answers: VecDeque<Vec<u8>>,
        sent: Vec<Vec<u8>>,
    }

    impl TpmTransport for Scripted {
        fn transmit(&mut self, command: &[u8]) -> std::io::Result<Vec<u8>> {
            self.sent.push(command.to_vec());
            self.answers
                .pop_front()
                .ok_or_else(|| std::io::Error::other("script exhausted"))
        }
    }

    fn ok_empty() -> Vec<u8> {
        vec![0x80, 0x01, 0, 0, 0, 10, 0, 0, 0, 0]
    }

    fn code(cmd: &[u8]) -> u32 {
        u32::from_be_bytes([cmd[6], cmd[7], cmd[8], cmd[9]])
    }

    #[test]
    fn test_tpm_ca_signer_flushes_the_key_when_creation_fails_later() {
        // CreatePrimary refused: nothing to flush, the error names the command.
        let t = Scripted {
            answers: [vec![0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x09, 0x8e]].into(),
            ..Default::default()
        };
        let e = TpmCaSigner::new(t).expect_err("refused");
        assert!(e.to_string().contains("TPM2_CreatePrimary"), "{e}");
        // A malformed CreatePrimary answer is refused too (strict parsing).
        let t = Scripted {
            answers: [ok_empty()].into(),
            ..Default::default()
        };
        assert!(TpmCaSigner::new(t).is_err());
    }

    #[test]
    fn test_with_ca_key_flushes_even_when_the_operation_fails() {
        // The CreatePrimary answer captured from swtpm (see commands_tests.rs).
        use crate::tpm_command::commands::tests::{unhex, CREATE_CA_RSP};
        let created = unhex(CREATE_CA_RSP);
        let mut tpm = Tpm::new(Scripted {
            answers: [created, ok_empty()].into(),
            ..Default::default()
        });
        let r: Result<(), _> = with_ca_key(&mut tpm, |_, _| Err(TpmCaSignerError::BadSignature));
        assert!(matches!(r, Err(TpmCaSignerError::BadSignature)));
        let sent = &tpm.transport_mut().sent;
        assert_eq!(sent.len(), 2);
        assert_eq!(code(&sent[0]), 0x131);
        assert_eq!(code(&sent[1]), 0x165);
        assert_eq!(sent[1][10..], 0x8000_0000u32.to_be_bytes());
    }
}
