//! Guest physical address map of a zone.
//!
//! ```text
//! 0x0000_0500  GDT                      0x0000_9000  PML4, then PDPT, 4 page directories
//! 0x0000_7000  zero page (boot_params)  0x0002_0000  kernel command line
//! 0x0000_8ff0  initial stack pointer    0x0009_fc00  EBDA (reserved up to 1 MiB)
//! 0x000e_0000  ACPI tables              0x0010_0000  kernel (bzImage protected-mode part)
//! RAM up to MMIO_GAP_START, the rest from 4 GiB
//! 0xd000_0000  virtio-mmio devices, 4 KiB each
//! 0xfec0_0000  IOAPIC    0xfed4_0000  TPM (TIS)    0xfee0_0000  local APIC
//! ```

/// Global descriptor table.
pub const GDT_START: u64 = 0x500;
/// The zero page the kernel finds through `rsi`.
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Initial stack pointer for the boot vCPU.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Page map level 4; the PDPT and page directories follow it page by page.
pub const PML4_START: u64 = 0x9000;
/// Kernel command line.
pub const CMDLINE_START: u64 = 0x2_0000;
/// Longest command line we accept (including the terminating NUL).
pub const CMDLINE_MAX_SIZE: usize = 4096;
/// Start of the extended BIOS data area; memory from here to 1 MiB is reserved.
pub const EBDA_START: u64 = 0x9_fc00;
/// Where the kernel is loaded: the first byte above the legacy 1 MiB area.
pub const HIMEM_START: u64 = 0x10_0000;
/// The 32-bit MMIO hole below 4 GiB: no RAM is mapped here.
pub const MMIO_GAP_START: u64 = 0xc000_0000;
pub const MMIO_GAP_END: u64 = 0x1_0000_0000;
/// First virtio-mmio device window; each device gets [`VIRTIO_MMIO_SIZE`] bytes.
pub const VIRTIO_MMIO_START: u64 = 0xd000_0000;
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
/// The KVM TSS needs three pages the guest never uses, inside the MMIO hole.
pub const KVM_TSS_ADDRESS: u64 = 0xfffb_d000;

/// GSI of the serial port (COM1 uses IRQ 4).
pub const SERIAL_GSI: u32 = 4;
/// GSIs for virtio-mmio devices: ISA IRQs, which the kernel treats as edge-triggered, as our
/// irqfds are. IRQ 8 (RTC) is left out.
pub const VIRTIO_GSIS: [u32; 10] = [5, 6, 7, 9, 10, 11, 12, 13, 14, 15];

/// The guest RAM ranges (start, length) for `mem_size` bytes of memory.
pub fn ram_ranges(mem_size: u64) -> Vec<(u64, u64)> {
    if mem_size <= MMIO_GAP_START {
        vec![(0, mem_size)]
    } else {
        vec![
            (0, MMIO_GAP_START),
            (MMIO_GAP_END, mem_size - MMIO_GAP_START),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_ram_ranges_large_memory_skips_mmio_gap() {
        assert_eq!(ram_ranges(256 << 20), vec![(0, 256 << 20)]);
        let ranges = ram_ranges(4 << 30);
        assert_eq!(ranges, vec![(0, MMIO_GAP_START), (MMIO_GAP_END, 1 << 30)]);
    }
}
