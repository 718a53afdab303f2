//! Recognising kernel image formats before loading them, so that a wrong file gets an error
//! that says what is wrong instead of a loader's internal complaint.

use std::io::{Read, Seek, SeekFrom};

use crate::arch::x86_64::boot_params::HDRS_MAGIC;

/// The two formats `zone-vmm` boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelFormat {
    /// An uncompressed ELF `vmlinux`, entered at its ELF entry point in 64-bit mode.
    Elf,
    /// A `bzImage`, entered at its 64-bit entry point.
    BzImage,
}

const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
const ELFCLASS64: u8 = 2;
const EM_X86_64: u16 = 62;
/// Setup header fields (boot.rst): magic at 0x202, version at 0x206, xloadflags at 0x236.
const HDR_MAGIC_OFFSET: usize = 0x202;
const HDR_VERSION_OFFSET: usize = 0x206;
const HDR_XLOADFLAGS_OFFSET: usize = 0x236;
const XLF_KERNEL_64: u16 = 0x1;

/// Reads the start of `image` and says which format it is, or why it is not a kernel.
pub fn detect_format<F: Read + Seek>(image: &mut F) -> Result<KernelFormat, String> {
    let mut head = [0u8; 0x240];
    image.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let mut len = 0;
    while len < head.len() {
        match image.read(&mut head[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) => return Err(e.to_string()),
        }
    }
    let head = &head[..len];
    if head.starts_with(ELF_MAGIC) {
        let machine = head.get(18..20).map(|b| u16::from_le_bytes([b[0], b[1]]));
        return match (head.get(4), machine) {
            (Some(&ELFCLASS64), Some(EM_X86_64)) => Ok(KernelFormat::Elf),
            _ => Err("an ELF file, but not a 64-bit x86-64 one".into()),
        };
    }
    let le16 = |at: usize| {
        head.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let magic = head
        .get(HDR_MAGIC_OFFSET..HDR_MAGIC_OFFSET + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    if magic != Some(HDRS_MAGIC) {
        return Err("neither an ELF vmlinux nor a bzImage (no \"HdrS\" boot header)".into());
    }
    match (le16(HDR_VERSION_OFFSET), le16(HDR_XLOADFLAGS_OFFSET)) {
        (Some(v), Some(x)) if v >= 0x020c && x & XLF_KERNEL_64 != 0 => Ok(KernelFormat::BzImage),
        (Some(v), _) => Err(format!(
            "a bzImage without a 64-bit entry point (boot protocol {}.{:02}, need 2.12+ with XLF_KERNEL_64)",
            v >> 8,
            v & 0xff
        )),
        _ => Err("a truncated bzImage".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn bzimage(version: u16, xloadflags: u16) -> Vec<u8> {
        let mut img = vec![0u8; 0x1000];
        img[HDR_MAGIC_OFFSET..HDR_MAGIC_OFFSET + 4].copy_from_slice(&HDRS_MAGIC.to_le_bytes());
        img[HDR_VERSION_OFFSET..HDR_VERSION_OFFSET + 2].copy_from_slice(&version.to_le_bytes());
        img[HDR_XLOADFLAGS_OFFSET..HDR_XLOADFLAGS_OFFSET + 2]
            .copy_from_slice(&xloadflags.to_le_bytes());
        img
    }

    #[test]
    fn test_detect_format_recognises_elf_and_bzimage() {
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(ELF_MAGIC);
        elf[4] = ELFCLASS64;
        elf[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        assert_eq!(detect_format(&mut Cursor::new(elf)), Ok(KernelFormat::Elf));
        let img = bzimage(0x020f, 0x3);
        assert_eq!(
            detect_format(&mut Cursor::new(img)),
            Ok(KernelFormat::BzImage)
        );
    }

    #[test]
    fn test_detect_format_rejects_junk_32bit_elf_and_old_bzimage() {
        assert!(detect_format(&mut Cursor::new(b"hello".to_vec())).is_err());
        let mut elf32 = vec![0u8; 64];
        elf32[..4].copy_from_slice(ELF_MAGIC);
        elf32[4] = 1;
        assert!(detect_format(&mut Cursor::new(elf32)).is_err());
        let err = detect_format(&mut Cursor::new(bzimage(0x020f, 0))).expect_err("no 64-bit");
        assert!(err.contains("64-bit entry"), "{err}");
        assert!(detect_format(&mut Cursor::new(Vec::new())).is_err());
    }
}
