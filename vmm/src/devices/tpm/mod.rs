//! The zone's TPM: a TPM 2.0 *Command Response Buffer* interface (TCG PC Client Platform TPM
//! Profile (PTP) 1.05, §6.5 "CRB Interface") at [`CRB_BASE`], whose commands a
//! [`TpmBackend`] executes (in the VMM, a `swtpm` process: [`crate::vtpm`]).
//!
//! Why CRB rather than TIS (FIFO, PTP §6.4):
//! - one locality by construction: the interface is a single 4 KiB page for locality 0. The
//!   pages of localities 1-4 (0xFED41000..0xFED45000) are not mapped at all, so guest accesses
//!   there read all ones and writes vanish (the MMIO bus's rule), so the guest stays at
//!   locality 0 (where the VMM measures too: nothing relies on a higher locality, see
//!   `zone_attest::measurements::PCR_ZONE_CLAIMS`);
//! - far fewer exits: a command is written into a buffer with ordinary (4- or 8-byte) stores,
//!   where TIS moves every byte through the FIFO register, one MMIO exit each;
//! - a smaller state machine (locality request, command-ready/idle, start) to get right
//!   against a hostile guest;
//! - Linux's built-in `tpm_crb` finds it through ACPI (`MSFT0101` in the DSDT plus the TPM2
//!   table with start method 7), as for Cloud Hypervisor's and QEMU's `tpm-crb`.
//!
//! Commands run synchronously in the vCPU thread that writes `CTRL_START`: the backend's
//! answer is in the buffer when the write returns, so the guest's poll of `CTRL_START` sees
//! completion at once. Other vCPUs keep running meanwhile.

mod crb;

pub use crb::{Crb, CRB_BASE, CRB_CTRL_AREA, CRB_DATA_BUFFER, CRB_SIZE};

/// Executes TPM commands: one complete command in, one complete response out.
pub trait TpmBackend: Send {
    /// Runs `command` (a full TPM 2.0 command, header included) and returns the response.
    /// An error means the backend could not answer; the device turns it into a TPM error.
    fn execute(
        &mut self,
        command: &[u8],
    ) -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>>;
}

/// `TPM_RC_FAILURE`: what the guest gets when the backend fails or answers nonsense.
pub const TPM_RC_FAILURE: u32 = 0x101;

/// A response with no parameters: `TPM_ST_NO_SESSIONS`, size 10, `rc`.
pub fn error_response(rc: u32) -> [u8; 10] {
    let mut r = [0u8; 10];
    r[0..2].copy_from_slice(&0x8001u16.to_be_bytes());
    r[2..6].copy_from_slice(&10u32.to_be_bytes());
    r[6..10].copy_from_slice(&rc.to_be_bytes());
    r
}
