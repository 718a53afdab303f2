//! The zone agent's [`Attester`]: the zone's vTPM through the kernel's resource manager
//! (`/dev/tpmrm0`), with the commands of [`crate::tpm_command`].
//!
//! Keys are derived, not stored: the EK from the TCG default ECC P-256 template and the AK from
//! our AK template, both primary keys of the endorsement hierarchy, so the same TPM gives the
//! same keys every time (the VMM derives the same EK before the zone boots, for the zone CA).
//! Each operation creates the keys it needs and flushes every transient object and session it
//! created, whether it succeeds or not.
//!
//! - `ek_public`/`ak_public`: `TPM2_CreatePrimary` (first call only; later calls answer from
//!   memory), `TPM2_FlushContext`.
//! - `activate_credential`: EK and AK created (and checked to be the keys reported before),
//!   `TPM2_StartAuthSession` (policy), `TPM2_PolicySecret(TPM_RH_ENDORSEMENT)`,
//!   `TPM2_ActivateCredential`, flushes.
//! - `quote`: AK created, `TPM2_PCR_Read` of the PCRs, `TPM2_Quote`; the values read must hash
//!   to the quote's pcrDigest (else the PCRs moved in between and it tries again).

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::activation::CredentialChallenge;
use crate::protocol::{Attester, RawQuote};
use crate::quote::pcr_digest;
use crate::tpm_command::{CommandError, LoadedKey, Tpm, MAX_COMMAND, MAX_RESPONSE};
use crate::tpm_types::{QuoteAttest, TpmPublic};

pub use crate::tpm_command::TpmTransport;

/// The resource-managed TPM device of a zone.
pub const TPMRM_DEVICE: &str = "/dev/tpmrm0";
/// Where the kernel publishes the event log the VMM wrote (securityfs).
pub const KERNEL_EVENT_LOG: &str = "/sys/kernel/security/tpm0/binary_bios_measurements";
/// How often a quote is tried again when the PCRs change between reading and quoting.
const QUOTE_ATTEMPTS: usize = 3;

/// A TPM character device: one `write` per command, one `read` per response.
#[derive(Debug)]
pub struct DeviceTransport<F = File> {
    device: F,
}

impl DeviceTransport<File> {
    /// Opens `path` (normally [`TPMRM_DEVICE`]) for reading and writing.
    pub fn open(path: &Path) -> io::Result<Self> {
        let device = File::options().read(true).write(true).open(path)?;
        Ok(Self { device })
    }
}

impl<F: Read + Write> DeviceTransport<F> {
    /// Over anything that behaves like the device (tests use a socket).
    pub fn from_device(device: F) -> Self {
        Self { device }
    }
}

impl<F: Read + Write> TpmTransport for DeviceTransport<F> {
    /// Writes the whole command in one `write` (the driver takes a command per write) and reads
    /// the whole response in one `read` of at most [`MAX_RESPONSE`] bytes, which must be as
    /// long as its header says.
    fn transmit(&mut self, command: &[u8]) -> io::Result<Vec<u8>> {
        if command.len() < 10 || command.len() > MAX_COMMAND {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a TPM command is 10 to {MAX_COMMAND} bytes, not {}",
                    command.len()
                ),
            ));
        }
        let written = self.device.write(command)?;
        if written != command.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("the TPM device took {written} of {} bytes", command.len()),
            ));
        }
        let mut buf = vec![0u8; MAX_RESPONSE];
        let n = self.device.read(&mut buf)?;
        buf.truncate(n);
        let size = buf
            .get(2..6)
            .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize);
        match size {
            Some(size) if n >= 10 && size == n => Ok(buf),
            Some(size) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the TPM device returned {n} bytes for a response of {size}"),
            )),
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the TPM device returned {n} bytes, less than a response header"),
            )),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AttesterError {
    #[error("cannot open the TPM device {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the event log {path}")]
    EventLog {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("the TPM derived another {key} than before (was the TPM cleared?)")]
    KeyChanged { key: &'static str },
    #[error("the PCRs changed between reading and quoting them, {QUOTE_ATTEMPTS} times")]
    PcrsMoving,
}

/// Where the event log comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventLogSource {
    /// Read from this file at each call (the kernel's securityfs copy).
    File(PathBuf),
    /// These bytes.
    Bytes(Vec<u8>),
}

/// An [`Attester`] over a TPM reached through `T`.
#[derive(Debug)]
pub struct TpmAttester<T: TpmTransport> {
    tpm: Tpm<T>,
    event_log: EventLogSource,
    ek: Option<TpmPublic>,
    ak: Option<TpmPublic>,
}

impl TpmAttester<DeviceTransport> {
    /// The zone's TPM at [`TPMRM_DEVICE`] with the kernel's event log at [`KERNEL_EVENT_LOG`].
    pub fn open_zone_tpm() -> Result<Self, AttesterError> {
        Self::open(
            Path::new(TPMRM_DEVICE),
            EventLogSource::File(KERNEL_EVENT_LOG.into()),
        )
    }

    /// The TPM at `device` (a `/dev/tpmrm*`: the attester needs a resource manager only for
    /// sharing the TPM; it flushes its own objects) with `event_log`.
    pub fn open(device: &Path, event_log: EventLogSource) -> Result<Self, AttesterError> {
        let transport = DeviceTransport::open(device).map_err(|source| AttesterError::Open {
            path: device.to_path_buf(),
            source,
        })?;
        Ok(Self::new(transport, event_log))
    }
}

impl<T: TpmTransport> TpmAttester<T> {
    pub fn new(transport: T, event_log: EventLogSource) -> Self {
        Self {
            tpm: Tpm::new(transport),
            event_log,
            ek: None,
            ak: None,
        }
    }

    pub fn into_transport(self) -> T {
        self.tpm.into_transport()
    }

    /// Runs `f` with the keys asked for loaded, then flushes them, whatever `f` returned.
    fn with_keys<R>(
        &mut self,
        need_ek: bool,
        f: impl FnOnce(&mut Tpm<T>, Option<&LoadedKey>, &LoadedKey) -> Result<R, AttesterError>,
    ) -> Result<R, AttesterError> {
        let ek = if need_ek {
            Some(self.tpm.create_ek()?)
        } else {
            None
        };
        let result = self.with_ak(ek.as_ref(), f);
        let flushed = match &ek {
            Some(ek) => self.tpm.flush_context(ek.handle),
            None => Ok(()),
        };
        let out = result?;
        flushed?;
        Ok(out)
    }

    fn with_ak<R>(
        &mut self,
        ek: Option<&LoadedKey>,
        f: impl FnOnce(&mut Tpm<T>, Option<&LoadedKey>, &LoadedKey) -> Result<R, AttesterError>,
    ) -> Result<R, AttesterError> {
        let ak = self.tpm.create_ak()?;
        let result = Self::remember(&mut self.ek, ek.map(|k| &k.public), "EK")
            .and_then(|()| Self::remember(&mut self.ak, Some(&ak.public), "AK"))
            .and_then(|()| f(&mut self.tpm, ek, &ak));
        let flushed = self.tpm.flush_context(ak.handle);
        let out = result?;
        flushed?;
        Ok(out)
    }

    /// Keeps the first public area seen for `key`; a different one later is an error.
    fn remember(
        slot: &mut Option<TpmPublic>,
        public: Option<&TpmPublic>,
        key: &'static str,
    ) -> Result<(), AttesterError> {
        match (slot.as_ref(), public) {
            (_, None) => Ok(()),
            (None, Some(p)) => {
                *slot = Some(p.clone());
                Ok(())
            }
            (Some(old), Some(p)) if old == p => Ok(()),
            (Some(_), Some(_)) => Err(AttesterError::KeyChanged { key }),
        }
    }

    fn activate(
        tpm: &mut Tpm<T>,
        ek: &LoadedKey,
        ak: &LoadedKey,
        challenge: &CredentialChallenge,
    ) -> Result<Vec<u8>, AttesterError> {
        let session = tpm.start_policy_session()?;
        let result = tpm.policy_secret_endorsement(session).and_then(|()| {
            tpm.activate_credential(
                ak.handle,
                ek.handle,
                session,
                &challenge.credential_blob,
                &challenge.encrypted_secret,
            )
        });
        if result.is_err() {
            // The TPM closes the session only when ActivateCredential succeeds.
            let _ = tpm.flush_context(session);
        }
        Ok(result?)
    }

    fn quote_once(
        tpm: &mut Tpm<T>,
        ak: &LoadedKey,
        nonce: &[u8],
        pcrs: &[u32],
    ) -> Result<Option<RawQuote>, AttesterError> {
        let values = tpm.pcr_read(pcrs)?;
        let (attest, signature) = tpm.quote(ak.handle, nonce, pcrs)?;
        let parsed = QuoteAttest::parse(&attest).map_err(|source| CommandError::Response {
            command: "Quote",
            source,
        })?;
        if parsed.pcr_digest != pcr_digest(&values).to_vec() {
            return Ok(None);
        }
        Ok(Some(RawQuote {
            attest,
            signature,
            pcrs: values,
        }))
    }
}

impl<T: TpmTransport> Attester for TpmAttester<T> {
    type Error = AttesterError;

    fn ek_public(&mut self) -> Result<TpmPublic, AttesterError> {
        if self.ek.is_none() {
            self.with_keys(true, |_, _, _| Ok(()))?;
        }
        self.ek
            .clone()
            .ok_or(AttesterError::KeyChanged { key: "EK" })
    }

    fn ak_public(&mut self) -> Result<TpmPublic, AttesterError> {
        if self.ak.is_none() {
            self.with_keys(false, |_, _, _| Ok(()))?;
        }
        self.ak
            .clone()
            .ok_or(AttesterError::KeyChanged { key: "AK" })
    }

    fn activate_credential(
        &mut self,
        challenge: &CredentialChallenge,
    ) -> Result<Vec<u8>, AttesterError> {
        self.with_keys(true, |tpm, ek, ak| {
            let ek = ek.expect("with_keys(true) loads the EK");
            Self::activate(tpm, ek, ak, challenge)
        })
    }

    fn quote(&mut self, nonce: &[u8], pcrs: &[u32]) -> Result<RawQuote, AttesterError> {
        self.with_keys(false, |tpm, _, ak| {
            for _ in 0..QUOTE_ATTEMPTS {
                if let Some(q) = Self::quote_once(tpm, ak, nonce, pcrs)? {
                    return Ok(q);
                }
            }
            Err(AttesterError::PcrsMoving)
        })
    }

    fn event_log(&mut self) -> Result<Vec<u8>, AttesterError> {
        match &self.event_log {
            EventLogSource::Bytes(b) => Ok(b.clone()),
            EventLogSource::File(path) => {
                std::fs::read(path).map_err(|source| AttesterError::EventLog {
                    path: path.clone(),
                    source,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    /// A fake device on the other end of a socket: answers each command with `answer(cmd)`.
    fn fake_device(
        answer: impl Fn(&[u8]) -> Vec<u8> + Send + 'static,
    ) -> DeviceTransport<UnixStream> {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        std::thread::spawn(move || {
            let mut theirs = theirs;
            let mut buf = [0u8; 8192];
            while let Ok(n) = theirs.read(&mut buf) {
                if n == 0 || theirs.write_all(&answer(&buf[..n])).is_err() {
                    break;
                }
            }
        });
        DeviceTransport::from_device(ours)
    }

    fn header(size: u32, rc: u32) -> Vec<u8> {
        let mut r = vec![0x80, 0x01];
        r.extend(size.to_be_bytes());
        r.extend(rc.to_be_bytes());
        r
    }

    #[test]
    fn test_device_transport_whole_response_returned() {
        let mut t = fake_device(|_| header(10, 0));
        let rsp = t
            .transmit(&crate::tpm_command::commands::startup_clear())
            .expect("answer");
        assert_eq!(rsp, header(10, 0));
    }

    #[test]
    fn test_device_transport_size_mismatch_and_short_refused() {
        let mut t = fake_device(|_| header(12, 0));
        let e = t
            .transmit(&[0x80, 1, 0, 0, 0, 10, 0, 0, 1, 0x44])
            .expect_err("lies");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let mut t = fake_device(|_| vec![0x80, 0x01, 0, 0]);
        let e = t
            .transmit(&[0x80, 1, 0, 0, 0, 10, 0, 0, 1, 0x44])
            .expect_err("short");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        let mut t = fake_device(|_| header(10, 0));
        assert!(t.transmit(&[0; 4]).is_err(), "not a command");
        assert!(t.transmit(&vec![0; MAX_COMMAND + 1]).is_err(), "too long");
    }

    #[test]
    fn test_device_transport_oversized_response_refused() {
        // 5000 bytes claimed and sent: the read stops at 4096, which disagrees with the header.
        let mut t = fake_device(|_| {
            let mut r = header(5000, 0);
            r.resize(5000, 0);
            r
        });
        let e = t
            .transmit(&[0x80, 1, 0, 0, 0, 10, 0, 0, 1, 0x44])
            .expect_err("big");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn test_attester_tpm_error_names_command_and_rc() {
        let t = fake_device(|_| header(10, 0x902));
        let mut a = TpmAttester::new(t, EventLogSource::Bytes(vec![]));
        let e = a.ek_public().expect_err("TPM out of memory");
        assert_eq!(
            e.to_string(),
            "TPM2_CreatePrimary returned TPM_RC 0x902 TPM_RC_OBJECT_MEMORY"
        );
    }
}
