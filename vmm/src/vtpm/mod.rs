//! The zone's vTPM backend and measured boot.
//!
//! [`swtpm`] runs and talks to the per-zone `swtpm`; the TPM 2.0 commands the VMM sends itself
//! are `zone_attest::tpm_command`'s (one marshalling layer for the VMM and the zone's attester);
//! [`measure_boot`] powers the TPM on, starts it, extends the PCRs with the measurement plan of
//! `zone_attest::measurements` and returns the event log; [`endorsement_key`] derives the EK
//! the zone CA certifies. The VMM is the zone's root of trust for measurement: all of this
//! happens before the first vCPU runs.

pub mod swtpm;

use zone_attest::eventlog::{Event, EventLog};
use zone_attest::measurements;
use zone_attest::tpm_command::{CommandError, Tpm};
use zone_attest::tpm_types::TpmPublic;

pub use swtpm::{Swtpm, SwtpmError};

#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    #[error("cannot power on the vTPM")]
    Init(#[source] SwtpmError),
    #[error(transparent)]
    Command(#[from] CommandError),
}

/// Powers the TPM on (`CMD_INIT`), sends `TPM2_Startup(CLEAR)` and extends every event of
/// `plan`, and returns the event log of what was extended. All of it at locality 0, where a
/// fresh swtpm is and where the guest's commands run too (the CRB device has no other).
pub fn measure_boot(tpm: &mut Swtpm, plan: &[Event]) -> Result<EventLog, MeasureError> {
    tpm.init().map_err(MeasureError::Init)?;
    let mut tpm = Tpm::new(tpm);
    tpm.startup_clear()?;
    for e in plan {
        tpm.pcr_extend(e.pcr, &e.digest)?;
    }
    Ok(measurements::event_log(plan))
}

/// The zone's endorsement key, derived from the TCG default ECC P-256 EK template
/// (`TPM2_CreatePrimary` under `TPM_RH_ENDORSEMENT`) and flushed again.
/// The zone's attester derives the same key from the same template; the host's zone CA
/// certifies this public key, read from the TPM before the guest runs, never from the guest.
pub fn endorsement_key(tpm: &mut Swtpm) -> Result<TpmPublic, CommandError> {
    let mut tpm = Tpm::new(tpm);
    let ek = tpm.create_ek()?;
    tpm.flush_context(ek.handle)?;
    Ok(ek.public)
}
