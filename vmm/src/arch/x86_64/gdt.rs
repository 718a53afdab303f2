//! The boot GDT. The 64-bit boot protocol asks for `__BOOT_CS` (0x10) as a flat 64-bit code
//! segment and `__BOOT_DS` (0x18) as a flat data segment, with interrupts disabled.

use kvm_bindings::kvm_segment;

/// Selector of the code segment at entry.
pub const BOOT_CS: u16 = 0x10;
/// Selector of the data segments at entry.
pub const BOOT_DS: u16 = 0x18;
/// Selector of the task state segment.
pub const BOOT_TSS: u16 = 0x20;

/// Packs a segment descriptor (Intel SDM vol. 3, 3.4.5).
pub const fn descriptor(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << 32)
        | ((flags as u64 & 0xf0ff) << 40)
        | ((limit as u64 & 0x000f_0000) << 32)
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
}

/// The table: null, null, code, data, TSS.
pub const BOOT_GDT: [u64; 5] = [
    0,
    0,
    descriptor(0xa09b, 0, 0xfffff), // 64-bit code, present, readable, accessed, 4 KiB units
    descriptor(0xc093, 0, 0xfffff), // 32-bit data, present, writable, accessed, 4 KiB units
    descriptor(0x808b, 0, 0xfffff), // busy 64-bit TSS
];

/// The hidden segment-register state KVM needs for a descriptor at `selector`.
pub fn segment(selector: u16) -> kvm_segment {
    let entry = BOOT_GDT[usize::from(selector >> 3)];
    let flags = (entry >> 40) & 0xf0ff;
    kvm_segment {
        base: ((entry >> 16) & 0x00ff_ffff) | ((entry >> 32) & 0xff00_0000),
        limit: {
            let raw = ((entry & 0xffff) | ((entry >> 32) & 0xf_0000)) as u32;
            // Granularity in 4 KiB units: the limit covers the whole last page.
            if flags & 0x8000 != 0 {
                (raw << 12) | 0xfff
            } else {
                raw
            }
        },
        selector,
        type_: (flags & 0xf) as u8,
        present: ((flags >> 7) & 1) as u8,
        dpl: ((flags >> 5) & 3) as u8,
        db: ((flags >> 14) & 1) as u8,
        s: ((flags >> 4) & 1) as u8,
        l: ((flags >> 13) & 1) as u8,
        g: ((flags >> 15) & 1) as u8,
        avl: ((flags >> 12) & 1) as u8,
        unusable: 0,
        padding: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_segment_code_is_flat_long_mode() {
        let cs = segment(BOOT_CS);
        assert_eq!(
            (cs.base, cs.limit, cs.l, cs.db, cs.g),
            (0, 0xffff_ffff, 1, 0, 1)
        );
        assert_eq!((cs.type_, cs.present, cs.s), (0xb, 1, 1));
    }

    #[test]
    fn test_segment_data_and_tss_types() {
        let ds = segment(BOOT_DS);
        assert_eq!((ds.type_, ds.db, ds.l), (0x3, 1, 0));
        let tss = segment(BOOT_TSS);
        assert_eq!((tss.type_, tss.s), (0xb, 0));
    }
}
