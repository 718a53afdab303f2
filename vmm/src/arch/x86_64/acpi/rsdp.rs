//! Root System Description Pointer (ACPI 6.5 §5.2.5.3, Table 5.3), revision 2.
//!
//! | offset | len | field                                  |
//! |--------|-----|----------------------------------------|
//! | 0      | 8   | Signature `"RSD PTR "`                 |
//! | 8      | 1   | Checksum of bytes 0..20 (ACPI 1.0 part) |
//! | 9      | 6   | OEMID                                  |
//! | 15     | 1   | Revision: 2 for ACPI 2.0 and later     |
//! | 16     | 4   | RsdtAddress: 0, we only provide an XSDT |
//! | 20     | 4   | Length of the whole structure: 36      |
//! | 24     | 8   | XsdtAddress                            |
//! | 32     | 1   | Extended Checksum of all 36 bytes      |
//! | 33     | 3   | Reserved                               |

use super::sdt::{checksum, OEM_ID};

/// Length of a revision-2 RSDP.
pub const RSDP_LEN: usize = 36;
/// RSDP revision for ACPI 2.0 and later.
pub const RSDP_REVISION: u8 = 2;
/// Signature, including its trailing space.
pub const RSDP_SIGNATURE: &[u8; 8] = b"RSD PTR ";
/// The ACPI 1.0 checksum covers only the first 20 bytes.
const V1_LEN: usize = 20;

/// Builds an RSDP pointing at the XSDT at `xsdt_addr`, with both checksums set.
pub fn rsdp(xsdt_addr: u64) -> [u8; RSDP_LEN] {
    let mut b = [0u8; RSDP_LEN];
    b[0..8].copy_from_slice(RSDP_SIGNATURE);
    b[9..15].copy_from_slice(&OEM_ID);
    b[15] = RSDP_REVISION;
    // 16..20 RsdtAddress stays 0: revision-2 OSPMs use the XSDT.
    b[20..24].copy_from_slice(&(RSDP_LEN as u32).to_le_bytes());
    b[24..32].copy_from_slice(&xsdt_addr.to_le_bytes());
    b[8] = checksum(&b[..V1_LEN]);
    b[32] = checksum(&b);
    b
}

#[cfg(test)]
mod tests {
    use super::super::sdt::test_util::{sum, u32_at, u64_at};
    use super::*;

    #[test]
    fn test_rsdp_fields_and_both_checksums_valid() {
        let b = rsdp(0x000e_0123_4567);
        assert_eq!(&b[..8], b"RSD PTR ");
        assert_eq!(b[15], 2);
        assert_eq!(u32_at(&b, 16), 0);
        assert_eq!(u32_at(&b, 20) as usize, RSDP_LEN);
        assert_eq!(u64_at(&b, 24), 0x000e_0123_4567);
        assert_eq!(sum(&b[..20]), 0, "ACPI 1.0 checksum");
        assert_eq!(sum(&b), 0, "extended checksum");
        assert_eq!(&b[33..], &[0, 0, 0]);
    }
}
