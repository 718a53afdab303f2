//! Extended System Description Table (ACPI 6.5 §5.2.8, Table 5.7): the header followed by
//! one 64-bit physical address per table. Revision 1.
//!
//! The DSDT is not listed: the OS reaches it through the FADT's X_DSDT field (§5.2.9).

use super::sdt::{Sdt, SdtError};

/// XSDT revision.
pub const XSDT_REVISION: u8 = 1;

/// Builds an XSDT listing the tables at `entries`, in order.
pub fn xsdt(entries: &[u64]) -> Result<Vec<u8>, SdtError> {
    let mut t = Sdt::new(b"XSDT", XSDT_REVISION);
    for addr in entries {
        t.u64(*addr);
    }
    t.finish()
}

#[cfg(test)]
mod tests {
    use super::super::sdt::test_util::{assert_valid_table, u64_at};
    use super::super::sdt::HEADER_LEN;
    use super::*;

    #[test]
    fn test_xsdt_two_entries_listed_in_order() {
        let t = xsdt(&[0xe0100, 0x1_0000_0000]).expect("xsdt");
        assert_valid_table(&t, b"XSDT");
        assert_eq!(t.len(), HEADER_LEN + 16);
        assert_eq!(t[8], XSDT_REVISION);
        assert_eq!(u64_at(&t, HEADER_LEN), 0xe0100);
        assert_eq!(u64_at(&t, HEADER_LEN + 8), 0x1_0000_0000);
    }
}
