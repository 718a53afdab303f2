//! Pieces shared by every ACPI table: the System Description Table Header (ACPI 6.5 §5.2.6,
//! Table 5.4), the byte checksum rule it defines, and the Generic Address Structure
//! (ACPI 6.5 §5.2.3.2, Table 5.1).
//!
//! Header layout (36 bytes, little endian):
//!
//! | offset | len | field            |
//! |--------|-----|------------------|
//! | 0      | 4   | Signature        |
//! | 4      | 4   | Length           |
//! | 8      | 1   | Revision         |
//! | 9      | 1   | Checksum         |
//! | 10     | 6   | OEMID            |
//! | 16     | 8   | OEM Table ID     |
//! | 24     | 4   | OEM Revision     |
//! | 28     | 4   | Creator ID       |
//! | 32     | 4   | Creator Revision |

/// Length of the System Description Table Header.
pub const HEADER_LEN: usize = 36;
/// Offset of the header's Length field.
pub const LENGTH_OFFSET: usize = 4;
/// Offset of the header's Checksum field.
pub const CHECKSUM_OFFSET: usize = 9;

/// OEMID in every table and the RSDP.
pub const OEM_ID: [u8; 6] = *b"ZONES ";
/// OEM Table ID in every table.
pub const OEM_TABLE_ID: [u8; 8] = *b"ZONESVMM";
/// OEM Revision in every table.
pub const OEM_REVISION: u32 = 1;
/// Creator ID ("the vendor ID of the utility that created the table") in every table.
pub const CREATOR_ID: [u8; 4] = *b"ZONE";
/// Creator Revision in every table.
pub const CREATOR_REVISION: u32 = 1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SdtError {
    #[error("ACPI table {signature} is {len} bytes, more than its 32-bit length field holds")]
    TooLarge { signature: String, len: usize },
}

/// The byte that, stored in a checksum field that is zero in `bytes`, makes all of `bytes`
/// sum to zero modulo 256.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |sum, b| sum.wrapping_add(*b))
        .wrapping_neg()
}

/// Generic Address Structure (12 bytes): where a register lives and how to access it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gas {
    pub space_id: u8,
    pub bit_width: u8,
    pub bit_offset: u8,
    pub access_size: u8,
    pub address: u64,
}

impl Gas {
    /// Address Space ID 1: System I/O.
    pub const SPACE_SYSTEM_IO: u8 = 1;
    /// Access Size 1: byte access.
    pub const ACCESS_BYTE: u8 = 1;
    /// Encoded length.
    pub const LEN: usize = 12;

    /// An 8-bit register at I/O `port`, accessed as a byte.
    pub fn io_byte(port: u16) -> Self {
        Self {
            space_id: Self::SPACE_SYSTEM_IO,
            bit_width: 8,
            bit_offset: 0,
            access_size: Self::ACCESS_BYTE,
            address: u64::from(port),
        }
    }

    pub fn to_bytes(self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[0] = self.space_id;
        out[1] = self.bit_width;
        out[2] = self.bit_offset;
        out[3] = self.access_size;
        out[4..].copy_from_slice(&self.address.to_le_bytes());
        out
    }
}

/// A table under construction: a header with Length and Checksum left zero, then the body
/// appended field by field in spec order. [`Sdt::finish`] fills in Length and Checksum.
#[derive(Debug)]
pub struct Sdt {
    bytes: Vec<u8>,
}

impl Sdt {
    pub fn new(signature: &[u8; 4], revision: u8) -> Self {
        let mut sdt = Self {
            bytes: Vec::with_capacity(512),
        };
        sdt.bytes(signature)
            .u32(0) // Length: set by finish()
            .u8(revision)
            .u8(0) // Checksum: set by finish()
            .bytes(&OEM_ID)
            .bytes(&OEM_TABLE_ID)
            .u32(OEM_REVISION)
            .bytes(&CREATOR_ID)
            .u32(CREATOR_REVISION);
        sdt
    }

    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.bytes.push(v);
        self
    }

    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }

    pub fn zeros(&mut self, n: usize) -> &mut Self {
        self.bytes.resize(self.bytes.len() + n, 0);
        self
    }

    pub fn gas(&mut self, gas: Gas) -> &mut Self {
        self.bytes(&gas.to_bytes())
    }

    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(b);
        self
    }

    /// Fills in Length and Checksum and returns the finished table.
    pub fn finish(mut self) -> Result<Vec<u8>, SdtError> {
        let len = u32::try_from(self.bytes.len()).map_err(|_| SdtError::TooLarge {
            signature: String::from_utf8_lossy(&self.bytes[..4]).into_owned(),
            len: self.bytes.len(),
        })?;
        self.bytes[LENGTH_OFFSET..LENGTH_OFFSET + 4].copy_from_slice(&len.to_le_bytes());
        self.bytes[CHECKSUM_OFFSET] = checksum(&self.bytes);
        Ok(self.bytes)
    }
}

/// Test helpers shared by the table modules' tests.
#[cfg(test)]
pub mod test_util {
    /// Sum of all bytes modulo 256; zero for a table with a correct checksum.
    pub fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b))
    }

    pub fn u16_at(bytes: &[u8], off: usize) -> u16 {
        u16::from_le_bytes([bytes[off], bytes[off + 1]])
    }

    pub fn u32_at(bytes: &[u8], off: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&bytes[off..off + 4]);
        u32::from_le_bytes(b)
    }

    pub fn u64_at(bytes: &[u8], off: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[off..off + 8]);
        u64::from_le_bytes(b)
    }

    /// Asserts the header's Length equals the byte length and the checksum is right.
    pub fn assert_valid_table(bytes: &[u8], signature: &[u8; 4]) {
        assert_eq!(&bytes[..4], signature);
        assert_eq!(u32_at(bytes, 4) as usize, bytes.len(), "length field");
        assert_eq!(sum(bytes), 0, "checksum");
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;

    #[test]
    fn test_sdt_finish_empty_body_valid_header() {
        let t = Sdt::new(b"TEST", 3).finish().expect("finish");
        assert_eq!(t.len(), HEADER_LEN);
        assert_valid_table(&t, b"TEST");
        assert_eq!(t[8], 3);
        assert_eq!(&t[10..16], &OEM_ID);
        assert_eq!(&t[16..24], &OEM_TABLE_ID);
        assert_eq!(u32_at(&t, 24), OEM_REVISION);
        assert_eq!(&t[28..32], &CREATOR_ID);
        assert_eq!(u32_at(&t, 32), CREATOR_REVISION);
    }

    #[test]
    fn test_sdt_finish_with_body_length_and_checksum_cover_body() {
        let mut s = Sdt::new(b"TEST", 1);
        s.u8(0xff)
            .u16(0xabcd)
            .u32(0xdead_beef)
            .u64(u64::MAX)
            .zeros(3);
        let t = s.finish().expect("finish");
        assert_eq!(t.len(), HEADER_LEN + 1 + 2 + 4 + 8 + 3);
        assert_valid_table(&t, b"TEST");
        assert_eq!(u16_at(&t, 37), 0xabcd);
        assert_eq!(u32_at(&t, 39), 0xdead_beef);
    }

    #[test]
    fn test_checksum_any_bytes_sum_to_zero() {
        let data = [1u8, 2, 3, 250, 0, 77];
        let mut with = data.to_vec();
        with.push(checksum(&data));
        assert_eq!(sum(&with), 0);
        assert_eq!(checksum(&[]), 0);
    }

    #[test]
    fn test_gas_io_byte_encodes_system_io_port() {
        let b = Gas::io_byte(0x3c0).to_bytes();
        assert_eq!(b, [1, 8, 0, 1, 0xc0, 0x03, 0, 0, 0, 0, 0, 0]);
    }
}
