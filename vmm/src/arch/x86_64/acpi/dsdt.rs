//! Differentiated System Description Table (ACPI 6.5 §5.2.11.1): the header followed by a
//! hand-encoded AML definition block (ACPI 6.5 §20, "ACPI Machine Language (AML)
//! Specification").
//!
//! Zones declare their virtio-mmio devices on the kernel command line, so the namespace needs
//! exactly one object: `\_S5_`, the soft-off sleep-type package (ACPI 6.5 §7.4.2). Without it
//! Linux does not register ACPI power-off. In ASL it reads:
//!
//! ```text
//! Name (_S5, Package (4) { 5, 0, 0, 0 })
//! ```
//!
//! Element 0 is the value the OS writes to SLP_TYP in the Sleep Control Register (HW-reduced
//! ACPI uses only the first value); element 1 would be SLP_TYPb of legacy PM1b hardware;
//! the last two are reserved.

use super::layout::SLP_TYP_S5;
use super::sdt::{Sdt, SdtError};

/// DSDT revision 2: AML integers are 64 bits wide (§5.2.11.1).
pub const DSDT_REVISION: u8 = 2;

/// NameOp (§20.2.5.1, DefName := NameOp NameString DataRefObject).
const NAME_OP: u8 = 0x08;
/// PackageOp (§20.2.5.4, DefPackage := PackageOp PkgLength NumElements PackageElementList).
const PACKAGE_OP: u8 = 0x12;
/// BytePrefix (§20.2.3, ByteConst := BytePrefix ByteData).
const BYTE_PREFIX: u8 = 0x0a;
/// ZeroOp (§20.2.3, ConstObj): the integer 0 in one byte.
const ZERO_OP: u8 = 0x00;

/// The AML for `Name (_S5, Package (4) { SLP_TYP_S5, 0, 0, 0 })`.
#[rustfmt::skip]
pub const S5_AML: [u8; 13] = [
    // DefName: NameOp, then the NameString. A NameString at the root of the definition
    // block is a single NameSeg (§20.2.2): four characters, padded with '_' to "_S5_".
    NAME_OP, b'_', b'S', b'5', b'_',
    // DefPackage: PackageOp ...
    PACKAGE_OP,
    // ... PkgLength (§20.2.4). Lengths up to 63 take one byte: bits 7..6 = 0 (no extra
    // bytes follow), bits 5..0 = the length. The length counts itself and everything after
    // it up to the end of the package: PkgLength (1) + NumElements (1) + elements (2+1+1+1).
    0x07,
    // ... NumElements: a ByteData, 4.
    0x04,
    // ... PackageElementList: SLP_TYPa as a ByteConst (BytePrefix, ByteData) ...
    BYTE_PREFIX, SLP_TYP_S5,
    // ... SLP_TYPb and the two reserved elements, each ZeroOp.
    ZERO_OP, ZERO_OP, ZERO_OP,
];

/// Builds the DSDT.
pub fn dsdt() -> Result<Vec<u8>, SdtError> {
    let mut t = Sdt::new(b"DSDT", DSDT_REVISION);
    t.bytes(&S5_AML);
    t.finish()
}

#[cfg(test)]
mod tests {
    use super::super::sdt::test_util::assert_valid_table;
    use super::super::sdt::HEADER_LEN;
    use super::*;

    #[test]
    fn test_dsdt_contains_s5_package_bytes() {
        let t = dsdt().expect("dsdt");
        assert_valid_table(&t, b"DSDT");
        assert_eq!(t[8], DSDT_REVISION);
        assert_eq!(
            &t[HEADER_LEN..],
            &[0x08, b'_', b'S', b'5', b'_', 0x12, 0x07, 0x04, 0x0a, 0x05, 0x00, 0x00, 0x00]
        );
    }

    #[test]
    fn test_s5_aml_pkglength_covers_package_exactly() {
        // PkgLength is at index 6; the package runs from there to the end of the AML.
        let pkg_len = usize::from(S5_AML[6]);
        assert!(pkg_len < 64, "single-byte PkgLength form");
        assert_eq!(pkg_len, S5_AML.len() - 6);
    }
}
