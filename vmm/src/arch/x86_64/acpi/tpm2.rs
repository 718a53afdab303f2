//! The TPM2 table (TCG ACPI Specification 1.3, §8.3 "ACPI Table for TPM 2.0", revision 4):
//! where the TPM's CRB control area is, how commands start, and the log area the kernel
//! reads the event log from (Linux `drivers/char/tpm/eventlog/acpi.c`: `LAML`/`LASA` after
//! the 12 bytes of start-method parameters).
//!
//! | offset | len | field |
//! |---|---|---|
//! | 0 | 36 | header, signature "TPM2", revision 4 |
//! | 36 | 2 | Platform Class: 0, client |
//! | 38 | 2 | reserved |
//! | 40 | 8 | Address of the CRB Control Area |
//! | 48 | 4 | Start Method: 7, Command Response Buffer |
//! | 52 | 12 | Start Method Specific Parameters: none for CRB, zero |
//! | 64 | 4 | Log Area Minimum Length (LAML) |
//! | 68 | 8 | Log Area Start Address (LASA) |

use super::sdt::{Sdt, SdtError};

pub const TPM2_REVISION: u8 = 4;
/// Start method 7: the Command Response Buffer interface.
pub const START_METHOD_CRB: u32 = 7;
/// Length of the table.
pub const TPM2_LEN: usize = 76;

/// Builds the TPM2 table for a CRB whose control area is at `control_area`, with the event
/// log in `log_len` bytes at `log_addr`.
pub fn tpm2(control_area: u64, log_addr: u64, log_len: u32) -> Result<Vec<u8>, SdtError> {
    let mut t = Sdt::new(b"TPM2", TPM2_REVISION);
    t.u16(0) // platform class: client
        .u16(0)
        .u64(control_area)
        .u32(START_METHOD_CRB)
        .zeros(12)
        .u32(log_len)
        .u64(log_addr);
    t.finish()
}

#[cfg(test)]
mod tests {
    use super::super::sdt::test_util::{assert_valid_table, u32_at, u64_at};
    use super::*;

    #[test]
    fn test_tpm2_table_bytes_and_checksum() {
        let t = tpm2(0xfed4_0040, 0xf_0000, 0x1_0000).expect("tpm2");
        assert_valid_table(&t, b"TPM2");
        assert_eq!(t.len(), TPM2_LEN);
        assert_eq!(t[8], 4, "revision");
        assert_eq!(&t[36..40], &[0, 0, 0, 0]);
        assert_eq!(u64_at(&t, 40), 0xfed4_0040);
        assert_eq!(u32_at(&t, 48), 7);
        assert!(t[52..64].iter().all(|b| *b == 0));
        assert_eq!(u32_at(&t, 64), 0x1_0000);
        assert_eq!(u64_at(&t, 68), 0xf_0000);
        // The exact bytes after the header, as iasl would compile them.
        assert_eq!(
            &t[36..],
            &[
                0, 0, 0, 0, 0x40, 0, 0xd4, 0xfe, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                0, 0, 0, 0, 0, 1, 0, 0, 0, 0x0f, 0, 0, 0, 0, 0
            ][..]
        );
    }
}
