//! The zone's vTPM backend and measured boot.
//!
//! [`swtpm`] runs and talks to the per-zone `swtpm`; [`command`] builds the few TPM 2.0
//! commands the VMM itself sends; [`measure_boot`] powers the TPM on, starts it, extends the
//! PCRs with the measurement plan of `zone_attest::measurements` and returns the event log.
//! The VMM is the zone's root of trust for measurement: all of this happens before the first
//! vCPU runs.

pub mod command;
pub mod swtpm;

use zone_attest::eventlog::EventLog;
use zone_attest::measurements::{self, Measurement, DEFAULT_LOCALITY};

pub use swtpm::{Swtpm, SwtpmError};

#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    #[error("cannot power on the vTPM")]
    Init(#[source] SwtpmError),
    #[error("cannot set the vTPM's locality to {locality}")]
    Locality {
        locality: u8,
        #[source]
        source: SwtpmError,
    },
    #[error("TPM2_{command} failed")]
    Transmit {
        command: &'static str,
        #[source]
        source: SwtpmError,
    },
    #[error("TPM2_{command} returned {rc:#x}{}", command::rc_hint(*rc))]
    Tpm { command: &'static str, rc: u32 },
}

/// Powers the TPM on (`CMD_INIT`), sends `TPM2_Startup(CLEAR)` at locality 0, extends every
/// measurement of `plan` at its locality and returns the event log of what was extended.
pub fn measure_boot(tpm: &mut Swtpm, plan: &[Measurement]) -> Result<EventLog, MeasureError> {
    tpm.init().map_err(MeasureError::Init)?;
    let mut locality = DEFAULT_LOCALITY;
    set_locality(tpm, locality)?;
    run(tpm, "Startup", &command::startup_clear())?;
    for m in plan {
        if m.locality != locality {
            set_locality(tpm, m.locality)?;
            locality = m.locality;
        }
        run(
            tpm,
            "PCR_Extend",
            &command::pcr_extend(m.event.pcr, &m.event.digest),
        )?;
    }
    // The guest's commands run at locality 0.
    if locality != DEFAULT_LOCALITY {
        set_locality(tpm, DEFAULT_LOCALITY)?;
    }
    Ok(measurements::event_log(plan))
}

fn set_locality(tpm: &mut Swtpm, locality: u8) -> Result<(), MeasureError> {
    tpm.set_locality(locality)
        .map_err(|source| MeasureError::Locality { locality, source })
}

/// Sends `cmd` and checks its response code.
fn run(tpm: &mut Swtpm, name: &'static str, cmd: &[u8]) -> Result<Vec<u8>, MeasureError> {
    let rsp = tpm.transmit(cmd).map_err(|source| MeasureError::Transmit {
        command: name,
        source,
    })?;
    match command::response_code(&rsp) {
        0 => Ok(rsp),
        rc => Err(MeasureError::Tpm { command: name, rc }),
    }
}
