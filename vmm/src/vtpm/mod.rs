//! The zone's vTPM backend and measured boot.
//!
//! [`swtpm`] runs and talks to the per-zone `swtpm`; the TPM 2.0 commands the VMM sends itself
//! are `zone_attest::tpm_command`'s (one marshalling layer for the VMM and the zone's attester);
//! [`measure_boot`] powers the TPM on, starts it, extends the PCRs with the measurement plan of
//! `zone_attest::measurements` and returns the event log; [`endorsement_key`] derives the EK
//! the zone CA certifies. The VMM is the zone's root of trust for measurement: all of this
//! happens before the first vCPU runs.

pub mod swtpm;

use zone_attest::eventlog::EventLog;
use zone_attest::measurements::{self, Measurement, DEFAULT_LOCALITY};
use zone_attest::tpm_command::{CommandError, Tpm};
use zone_attest::tpm_types::TpmPublic;

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
    #[error(transparent)]
    Command(#[from] CommandError),
}

/// Powers the TPM on (`CMD_INIT`), sends `TPM2_Startup(CLEAR)` at locality 0, extends every
/// measurement of `plan` at its locality and returns the event log of what was extended.
pub fn measure_boot(tpm: &mut Swtpm, plan: &[Measurement]) -> Result<EventLog, MeasureError> {
    tpm.init().map_err(MeasureError::Init)?;
    let mut locality = DEFAULT_LOCALITY;
    set_locality(tpm, locality)?;
    Tpm::new(&mut *tpm).startup_clear()?;
    for m in plan {
        if m.locality != locality {
            set_locality(tpm, m.locality)?;
            locality = m.locality;
        }
        Tpm::new(&mut *tpm).pcr_extend(m.event.pcr, &m.event.digest)?;
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

/// The zone's endorsement key, derived from the TCG default ECC P-256 EK template
/// (`TPM2_CreatePrimary` under `TPM_RH_ENDORSEMENT` at the current locality) and flushed again.
/// The zone's attester derives the same key from the same template; the host's zone CA
/// certifies this public key, read from the TPM before the guest runs, never from the guest.
pub fn endorsement_key(tpm: &mut Swtpm) -> Result<TpmPublic, CommandError> {
    let mut tpm = Tpm::new(tpm);
    let ek = tpm.create_ek()?;
    tpm.flush_context(ek.handle)?;
    Ok(ek.public)
}
