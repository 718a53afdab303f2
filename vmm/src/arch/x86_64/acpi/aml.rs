//! Just enough of an AML encoder (ACPI 6.5 §20, "ACPI Machine Language (AML) Specification")
//! and of resource descriptors (§6.4) for a DSDT that declares a few fixed devices.

/// ScopeOp (§20.2.5.1): DefScope := ScopeOp PkgLength NameString TermList.
const SCOPE_OP: u8 = 0x10;
/// NameOp (§20.2.5.1): DefName := NameOp NameString DataRefObject.
pub const NAME_OP: u8 = 0x08;
/// ExtOpPrefix DeviceOp (§20.2.5.2): DefDevice := DeviceOp PkgLength NameString TermList.
const DEVICE_OP: [u8; 2] = [0x5b, 0x82];
/// BufferOp (§20.2.5.4): DefBuffer := BufferOp PkgLength BufferSize ByteList.
const BUFFER_OP: u8 = 0x11;
/// Data prefixes (§20.2.3).
pub const BYTE_PREFIX: u8 = 0x0a;
const WORD_PREFIX: u8 = 0x0b;
const DWORD_PREFIX: u8 = 0x0c;
const STRING_PREFIX: u8 = 0x0d;
pub const ZERO_OP: u8 = 0x00;
const ONE_OP: u8 = 0x01;
/// RootChar (§20.2.2): a NameString starting at the namespace root.
const ROOT_CHAR: u8 = b'\\';

/// PkgLength (§20.2.4) for `content` bytes following it: the encoded length counts the
/// PkgLength bytes themselves. One byte holds up to 63; longer lengths put the low nibble in
/// the lead byte (bits 7..6 = number of extra bytes) and the rest in the following bytes.
pub fn pkg_length(content: usize) -> Vec<u8> {
    if content < 63 {
        return vec![(content + 1) as u8];
    }
    for extra in 1..=3usize {
        let total = content + 1 + extra;
        if total < 1 << (4 + 8 * extra) {
            let mut out = vec![((extra as u8) << 6) | (total & 0xf) as u8];
            out.extend((0..extra).map(|i| (total >> (4 + 8 * i)) as u8));
            return out;
        }
    }
    // 2^28 bytes of AML do not fit in the BIOS area the tables live in; callers never get here.
    vec![0xff, 0xff, 0xff, 0xff]
}

/// A four-character NameSeg (§20.2.2), padded with '_'.
pub fn name_seg(name: &str) -> [u8; 4] {
    let mut seg = [b'_'; 4];
    for (dst, src) in seg.iter_mut().zip(name.bytes()) {
        *dst = src;
    }
    seg
}

/// An integer as the shortest ComputationalData (§20.2.3).
pub fn integer(value: u32) -> Vec<u8> {
    match value {
        0 => vec![ZERO_OP],
        1 => vec![ONE_OP],
        v if v <= 0xff => vec![BYTE_PREFIX, v as u8],
        v if v <= 0xffff => [&[WORD_PREFIX][..], &(v as u16).to_le_bytes()].concat(),
        v => [&[DWORD_PREFIX][..], &v.to_le_bytes()].concat(),
    }
}

/// A String (§20.2.3): StringPrefix, ASCII characters, NUL.
pub fn string(s: &str) -> Vec<u8> {
    let mut out = vec![STRING_PREFIX];
    out.extend(s.bytes());
    out.push(0);
    out
}

/// `Name (NAME, value)`.
pub fn name(seg: &str, value: &[u8]) -> Vec<u8> {
    [&[NAME_OP][..], &name_seg(seg), value].concat()
}

/// `Buffer () { bytes }`.
pub fn buffer(bytes: &[u8]) -> Vec<u8> {
    let size = integer(bytes.len() as u32);
    let content = size.len() + bytes.len();
    [&[BUFFER_OP][..], &pkg_length(content), &size, bytes].concat()
}

/// `Device (NAME) { body }`.
pub fn device(seg: &str, body: &[u8]) -> Vec<u8> {
    let content = 4 + body.len();
    [&DEVICE_OP[..], &pkg_length(content), &name_seg(seg), body].concat()
}

/// `Scope (\NAME) { body }` for a scope directly under the root, such as `\_SB`.
pub fn root_scope(seg: &str, body: &[u8]) -> Vec<u8> {
    let content = 1 + 4 + body.len();
    [
        &[SCOPE_OP][..],
        &pkg_length(content),
        &[ROOT_CHAR],
        &name_seg(seg),
        body,
    ]
    .concat()
}

/// Resource descriptors (§6.4) for a `_CRS` buffer.
pub mod resource {
    /// Memory32Fixed (§6.4.3.4): large item 0x86, read-write.
    pub fn memory32_fixed(base: u32, len: u32) -> Vec<u8> {
        [
            &[0x86, 0x09, 0x00, 0x01][..],
            &base.to_le_bytes(),
            &len.to_le_bytes(),
        ]
        .concat()
    }

    /// I/O port descriptor (§6.4.2.5): small item 0x47, 16-bit decode, fixed at `port`.
    pub fn io(port: u16, len: u8) -> Vec<u8> {
        let p = port.to_le_bytes();
        vec![0x47, 0x01, p[0], p[1], p[0], p[1], 0x01, len]
    }

    /// Extended Interrupt (§6.4.3.6): large item 0x89, one GSI, consumer, edge-triggered,
    /// active high, exclusive: what our irqfds deliver.
    pub fn edge_interrupt(gsi: u32) -> Vec<u8> {
        const CONSUMER: u8 = 1 << 0;
        const EDGE: u8 = 1 << 1;
        [
            &[0x89, 0x06, 0x00, CONSUMER | EDGE, 0x01][..],
            &gsi.to_le_bytes(),
        ]
        .concat()
    }

    /// End Tag (§6.4.2.9) with checksum 0, meaning "not checksummed".
    pub fn end() -> Vec<u8> {
        vec![0x79, 0x00]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_pkg_length_encodings() {
        assert_eq!(pkg_length(0), vec![1]);
        assert_eq!(pkg_length(62), vec![63]);
        // 63 bytes of content need a two-byte PkgLength: total 65 = 0x41.
        assert_eq!(pkg_length(63), vec![0x41, 0x04]);
        assert_eq!(pkg_length(4093), vec![0x4f, 0xff]);
        // 4094 + 3 = 4097 = 0x1001: three bytes.
        assert_eq!(pkg_length(4094), vec![0x81, 0x00, 0x01]);
    }

    #[test]
    fn test_integer_shortest_forms() {
        assert_eq!(integer(0), vec![0x00]);
        assert_eq!(integer(1), vec![0x01]);
        assert_eq!(integer(5), vec![0x0a, 5]);
        assert_eq!(integer(0x3f8), vec![0x0b, 0xf8, 0x03]);
        assert_eq!(integer(0xd000_0000), vec![0x0c, 0, 0, 0, 0xd0]);
    }

    #[test]
    fn test_device_with_hid_encodes_like_iasl() {
        // iasl compiles `Device (COM1) { Name (_HID, "PNP0501") }` to these bytes.
        let dev = device("COM1", &name("_HID", &string("PNP0501")));
        assert_eq!(
            dev,
            [
                &[0x5b, 0x82, 0x13][..],
                b"COM1",
                &[0x08],
                b"_HID",
                &[0x0d],
                b"PNP0501",
                &[0x00]
            ]
            .concat()
        );
    }

    #[test]
    fn test_buffer_of_resources_has_size_and_end_tag() {
        let crs = [
            resource::io(0x3f8, 8),
            resource::edge_interrupt(4),
            resource::end(),
        ]
        .concat();
        let buf = buffer(&crs);
        assert_eq!(buf[0], 0x11);
        assert_eq!(
            usize::from(buf[1]),
            1 + 2 + crs.len(),
            "PkgLength covers size and bytes"
        );
        assert_eq!(&buf[2..4], &[0x0a, crs.len() as u8]);
        assert_eq!(&buf[buf.len() - 2..], &[0x79, 0x00]);
    }
}
