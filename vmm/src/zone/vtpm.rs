//! Setting up a zone's vTPM: its state directory, its swtpm, the measured boot, the event log
//! (in guest memory for the kernel's ACPI TPM2 table, and in a file for evidence) and the
//! endorsement key's public area (in a file, for the zone CA).

use std::path::{Path, PathBuf};
use std::time::Instant;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use zone_attest::measurements::{plan, BootInputs};

use crate::arch::x86_64::acpi::layout::{TPM_EVENT_LOG_ADDR, TPM_EVENT_LOG_LEN};
use crate::config::{ZoneConfig, ZoneTpm};
use crate::devices::tpm::Crb;
use crate::vtpm::{endorsement_key, measure_boot, MeasureError, Swtpm, SwtpmError};
use zone_attest::tpm_command::CommandError;

/// What PCR 0 says the VMM is.
pub const VMM_VERSION: &str = concat!("zone-vmm ", env!("CARGO_PKG_VERSION"));

#[derive(Debug, thiserror::Error)]
pub enum VtpmError {
    #[error("cannot create the vTPM state directory {path}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start swtpm (is it installed? hack/setup installs it; --swtpm names another binary)")]
    Swtpm(#[source] SwtpmError),
    #[error("cannot read {path} to measure it")]
    ReadImage {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("measured boot failed")]
    Measure(#[from] MeasureError),
    #[error("the event log is {0} bytes, more than the {TPM_EVENT_LOG_LEN} of its guest area")]
    LogTooLarge(usize),
    #[error("cannot write the event log into guest memory")]
    GuestMemory(#[source] vm_memory::GuestMemoryError),
    #[error("cannot read the endorsement key from the vTPM")]
    EndorsementKey(#[source] CommandError),
    #[error("cannot write the endorsement key to {path}")]
    WriteEk {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the event log to {path}")]
    WriteLog {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The vTPM's state directory; removed on drop if the VMM created it.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    created: bool,
}

impl StateDir {
    fn prepare(path: &Path) -> Result<Self, VtpmError> {
        use std::os::unix::fs::DirBuilderExt;
        let err = |source| VtpmError::StateDir {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => Ok(Self {
                path: path.to_path_buf(),
                created: true,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => Ok(Self {
                path: path.to_path_buf(),
                created: false,
            }),
            Err(e) => Err(err(e)),
        }
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        if self.created {
            if let Err(e) = std::fs::remove_dir_all(&self.path) {
                tracing::warn!("vTPM: cannot remove {}: {e}", self.path.display());
            }
        }
    }
}

/// Starts the zone's swtpm, measures the boot into it and writes the event log. Returns the
/// CRB device (which owns the swtpm) and the state directory; drop the device first.
pub fn start(
    config: &ZoneConfig,
    tpm: &ZoneTpm,
    memory: &GuestMemoryMmap<()>,
) -> Result<(Crb, StateDir), VtpmError> {
    let began = Instant::now();
    let state = StateDir::prepare(&tpm.state_dir)?;
    let mut swtpm = Swtpm::spawn(&tpm.swtpm, &state.path).map_err(VtpmError::Swtpm)?;
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| VtpmError::ReadImage {
            path: path.to_path_buf(),
            source,
        })
    };
    let kernel = read(&config.kernel)?;
    let initrd = config.initrd.as_deref().map(read).transpose()?;
    let zone_config = config.platform_config().canonical_bytes();
    let measurements = plan(&BootInputs {
        vmm_version: VMM_VERSION,
        zone_config: &zone_config,
        kernel: &kernel,
        cmdline: config.cmdline.as_bytes(),
        initrd: initrd.as_deref(),
        claims: &tpm.claims,
    });
    let log = measure_boot(&mut swtpm, &measurements)?.to_bytes();
    if log.len() as u64 > TPM_EVENT_LOG_LEN {
        return Err(VtpmError::LogTooLarge(log.len()));
    }
    memory
        .write_slice(&log, GuestAddress(TPM_EVENT_LOG_ADDR))
        .map_err(VtpmError::GuestMemory)?;
    if let Some(path) = &tpm.event_log {
        std::fs::write(path, &log).map_err(|source| VtpmError::WriteLog {
            path: path.clone(),
            source,
        })?;
    }
    if let Some(path) = &tpm.ek_public {
        // Before any guest command.
        let ek = endorsement_key(&mut swtpm).map_err(VtpmError::EndorsementKey)?;
        std::fs::write(path, ek.to_tpm2b()).map_err(|source| VtpmError::WriteEk {
            path: path.clone(),
            source,
        })?;
    }
    tracing::info!(
        elapsed_us = began.elapsed().as_micros() as u64,
        events = measurements.len(),
        "vTPM: swtpm started and boot measured"
    );
    Ok((Crb::new(Box::new(swtpm)), state))
}
