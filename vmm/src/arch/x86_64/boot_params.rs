//! The zero page (`struct boot_params`, Documentation/arch/x86/zero-page.rst) with the memory
//! map, command line and initrd location the kernel reads at entry.

use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use vm_memory::{Bytes, GuestAddress, GuestMemory};

use super::acpi::layout::{BIOS_AREA_END, BIOS_AREA_START};
use super::layout::{ram_ranges, CMDLINE_START, EBDA_START, HIMEM_START, ZERO_PAGE_START};

const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;
/// "HdrS": the magic a boot protocol header carries at 0x202.
pub const HDRS_MAGIC: u32 = 0x5372_6448;
/// Boot-loader id "undefined" (Documentation/arch/x86/boot.rst, type_of_loader).
const LOADER_UNDEFINED: u8 = 0xff;
/// loadflags: the protected-mode code is loaded at 0x100000.
const LOADED_HIGH: u8 = 0x1;
/// loadflags: heap_end_ptr is valid (we do not use the real-mode heap, but set it like a loader).
const CAN_USE_HEAP: u8 = 0x80;

/// Where the initrd sits in guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitrdPlacement {
    pub address: u64,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ZeroPageError {
    #[error("the memory map has more than {0} entries")]
    TooManyE820Entries(usize),
    #[error("cannot write the zero page into guest memory")]
    Write(#[source] vm_memory::GuestMemoryError),
}

/// A setup header for kernels that bring none (an ELF vmlinux).
pub fn default_setup_header() -> setup_header {
    setup_header {
        boot_flag: 0xaa55,
        header: HDRS_MAGIC,
        version: 0x020f,
        kernel_alignment: 0x100_0000,
        initrd_addr_max: 0x7fff_ffff,
        cmdline_size: (super::layout::CMDLINE_MAX_SIZE - 1) as u32,
        ..Default::default()
    }
}

/// Fills in the loader's fields of `header` and writes the zero page.
pub fn write_zero_page<M: GuestMemory>(
    mem: &M,
    mut header: setup_header,
    cmdline_len: usize,
    initrd: Option<InitrdPlacement>,
    mem_size: u64,
) -> Result<(), ZeroPageError> {
    header.type_of_loader = LOADER_UNDEFINED;
    header.loadflags |= LOADED_HIGH | CAN_USE_HEAP;
    header.cmd_line_ptr = CMDLINE_START as u32;
    header.cmdline_size = cmdline_len as u32;
    if let Some(initrd) = initrd {
        header.ramdisk_image = initrd.address as u32;
        header.ramdisk_size = initrd.size as u32;
    }

    let mut params = boot_params {
        hdr: header,
        ..Default::default()
    };
    // The BIOS area holds the ACPI tables and the TPM event log: reserved, said explicitly.
    let mut entries = vec![
        (0, EBDA_START, E820_RAM),
        (
            BIOS_AREA_START,
            BIOS_AREA_END - BIOS_AREA_START,
            E820_RESERVED,
        ),
    ];
    for (start, len) in ram_ranges(mem_size) {
        // Below 1 MiB only the conventional memory under the EBDA is RAM.
        let end = start + len;
        let start = start.max(HIMEM_START);
        if end > start {
            entries.push((start, end - start, E820_RAM));
        }
    }
    if entries.len() > params.e820_table.len() {
        return Err(ZeroPageError::TooManyE820Entries(params.e820_table.len()));
    }
    for (slot, (addr, size, kind)) in params.e820_table.iter_mut().zip(&entries) {
        *slot = boot_e820_entry {
            addr: *addr,
            size: *size,
            r#type: *kind,
        };
    }
    params.e820_entries = entries.len() as u8;
    mem.write_obj(params, GuestAddress(ZERO_PAGE_START))
        .map_err(ZeroPageError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::x86_64::layout::{MMIO_GAP_END, MMIO_GAP_START};
    use vm_memory::GuestMemoryMmap;

    fn read_params(mem: &GuestMemoryMmap<()>) -> boot_params {
        mem.read_obj(GuestAddress(ZERO_PAGE_START)).expect("read")
    }

    #[test]
    fn test_zero_page_small_memory_has_low_and_high_ram() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).expect("mem");
        let initrd = InitrdPlacement {
            address: 0x40_0000,
            size: 0x1234,
        };
        write_zero_page(&mem, default_setup_header(), 20, Some(initrd), 256 << 20).expect("write");
        let p = read_params(&mem);
        assert_eq!(p.e820_entries, 3);
        let e = p.e820_table;
        assert_eq!((e[0].addr, e[0].size, e[0].r#type), (0, EBDA_START, 1));
        assert_eq!(
            (e[1].addr, e[1].size, e[1].r#type),
            (0xe_0000, 0x2_0000, 2),
            "BIOS area (ACPI tables, TPM event log) reserved"
        );
        assert_eq!(
            (e[2].addr, e[2].size),
            (HIMEM_START, (256 << 20) - HIMEM_START)
        );
        let hdr = p.hdr;
        assert_eq!({ hdr.header }, HDRS_MAGIC);
        assert_eq!((hdr.ramdisk_image, hdr.ramdisk_size), (0x40_0000, 0x1234));
        assert_eq!({ hdr.cmd_line_ptr }, CMDLINE_START as u32);
        assert_eq!(hdr.type_of_loader, 0xff);
    }

    #[test]
    fn test_zero_page_large_memory_maps_ram_above_4g() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).expect("mem");
        write_zero_page(&mem, default_setup_header(), 1, None, 5 << 30).expect("write");
        let p = read_params(&mem);
        assert_eq!(p.e820_entries, 4);
        let e = p.e820_table;
        assert_eq!(
            (e[2].addr, e[2].size),
            (HIMEM_START, MMIO_GAP_START - HIMEM_START)
        );
        assert_eq!(
            (e[3].addr, e[3].size),
            (MMIO_GAP_END, (5 << 30) - MMIO_GAP_START)
        );
    }
}
