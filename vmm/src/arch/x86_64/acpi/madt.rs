//! Multiple APIC Description Table (ACPI 6.5 §5.2.12): how the OS finds every vCPU and
//! KVM's in-kernel interrupt controllers.
//!
//! After the header: Local Interrupt Controller Address (4 bytes, offset 36) and Flags
//! (4 bytes, offset 40), then interrupt controller structures:
//!
//! - one Processor Local APIC (§5.2.12.2) per vCPU, the boot vCPU first (§5.2.12.1), with
//!   ACPI Processor UID = APIC ID = vCPU index and the Enabled flag;
//! - one I/O APIC (§5.2.12.3) at 0xFEC00000 with GSI base 0. Its id is the vCPU count, the
//!   first id no local APIC uses;
//! - an Interrupt Source Override (§5.2.12.5) of ISA IRQ 0 to GSI 2: KVM's in-kernel PIT
//!   drives I/O APIC pin 2, as on PC chipsets;
//! - identity Interrupt Source Overrides, edge-triggered and active high, for ISA IRQs 1 and
//!   3-15, where the serial port and the virtio-mmio devices interrupt. In HW-reduced mode
//!   Linux has no legacy PIC, so it maps no ISA IRQ by default (`mp_config_acpi_legacy_irqs`
//!   loops over zero legacy IRQs) and `request_irq` on a device's IRQ would fail with EINVAL;
//!   an override gives each pin an `mp_irqs` entry, and `setup_IO_APIC_irqs` allocates it;
//! - a Local APIC NMI (§5.2.12.7) on LINT1 for all processors.
//!
//! Flags has PCAT_COMPAT set: KVM's in-kernel irqchip really contains a dual 8259 next to the
//! I/O APIC, and the flag tells the OS to mask it when it uses the APICs. (Linux in
//! HW-reduced mode switches to a null legacy PIC regardless.)

use super::layout::{IOAPIC_ADDR, LAPIC_ADDR};
use super::sdt::{Sdt, SdtError};

/// MADT revision 5 (ACPI 6.3 and 6.4); the structures used here predate it unchanged.
pub const MADT_REVISION: u8 = 5;

/// MADT Flags bit 0: the platform also has PC-AT-compatible dual 8259 PICs.
pub const PCAT_COMPAT: u32 = 1 << 0;

/// Interrupt controller structure types and lengths.
pub const TYPE_LOCAL_APIC: u8 = 0;
pub const LEN_LOCAL_APIC: u8 = 8;
pub const TYPE_IO_APIC: u8 = 1;
pub const LEN_IO_APIC: u8 = 12;
pub const TYPE_INTERRUPT_SOURCE_OVERRIDE: u8 = 2;
pub const LEN_INTERRUPT_SOURCE_OVERRIDE: u8 = 10;
pub const TYPE_LOCAL_APIC_NMI: u8 = 4;
pub const LEN_LOCAL_APIC_NMI: u8 = 6;

/// Local APIC Flags bit 0: the processor is usable.
pub const LAPIC_ENABLED: u32 = 1 << 0;

/// ACPI Processor UID meaning "all processors" in a Local APIC NMI structure.
const ALL_PROCESSORS: u8 = 0xff;
/// MPS INTI flags 0: polarity and trigger mode conform to the bus (ISA: edge, active high).
const INTI_CONFORMS: u16 = 0;
/// Interrupt Source Override bus 0: ISA.
const BUS_ISA: u8 = 0;
/// The PIT's ISA IRQ and the I/O APIC pin it is wired to.
const PIT_IRQ: u8 = 0;
const PIT_GSI: u32 = 2;
/// MPS INTI flags: active high (bits 1:0 = 01), edge-triggered (bits 3:2 = 01).
const INTI_EDGE_HIGH: u16 = 0b0101;
/// ISA IRQs mapped one to one onto I/O APIC pins: all but the PIT's 0 and the cascade's 2.
const ISA_IDENTITY_IRQS: [u8; 14] = [1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
/// The local APIC input NMI is wired to.
const NMI_LINT: u8 = 1;

/// Builds the MADT for `vcpus` vCPUs. The caller bounds `vcpus` (see
/// [`super::layout::MAX_VCPUS`]) so that the I/O APIC id `vcpus` is a valid, unused APIC id.
pub fn madt(vcpus: u8) -> Result<Vec<u8>, SdtError> {
    let mut t = Sdt::new(b"APIC", MADT_REVISION);
    t.u32(LAPIC_ADDR) // 36 Local Interrupt Controller Address
        .u32(PCAT_COMPAT); // 40 Flags
    for id in 0..vcpus {
        t.u8(TYPE_LOCAL_APIC)
            .u8(LEN_LOCAL_APIC)
            .u8(id) // ACPI Processor UID
            .u8(id) // APIC ID
            .u32(LAPIC_ENABLED);
    }
    t.u8(TYPE_IO_APIC)
        .u8(LEN_IO_APIC)
        .u8(vcpus) // I/O APIC ID
        .u8(0) // reserved
        .u32(IOAPIC_ADDR)
        .u32(0); // Global System Interrupt Base
    t.u8(TYPE_INTERRUPT_SOURCE_OVERRIDE)
        .u8(LEN_INTERRUPT_SOURCE_OVERRIDE)
        .u8(BUS_ISA)
        .u8(PIT_IRQ) // Source
        .u32(PIT_GSI) // Global System Interrupt
        .u16(INTI_CONFORMS);
    for irq in ISA_IDENTITY_IRQS {
        t.u8(TYPE_INTERRUPT_SOURCE_OVERRIDE)
            .u8(LEN_INTERRUPT_SOURCE_OVERRIDE)
            .u8(BUS_ISA)
            .u8(irq)
            .u32(u32::from(irq))
            .u16(INTI_EDGE_HIGH);
    }
    t.u8(TYPE_LOCAL_APIC_NMI)
        .u8(LEN_LOCAL_APIC_NMI)
        .u8(ALL_PROCESSORS)
        .u16(INTI_CONFORMS)
        .u8(NMI_LINT);
    t.finish()
}

#[cfg(test)]
mod tests {
    use super::super::sdt::test_util::{assert_valid_table, u16_at, u32_at};
    use super::super::sdt::HEADER_LEN;
    use super::*;

    /// Splits the structure list into (type, bytes) pairs, checking each length byte.
    fn entries(t: &[u8]) -> Vec<(u8, &[u8])> {
        let mut out = Vec::new();
        let mut off = HEADER_LEN + 8;
        while off < t.len() {
            let len = usize::from(t[off + 1]);
            assert!(len >= 2 && off + len <= t.len(), "entry at {off} overruns");
            out.push((t[off], &t[off..off + len]));
            off += len;
        }
        out
    }

    #[test]
    fn test_madt_header_and_checksum_valid() {
        let t = madt(4).expect("madt");
        assert_valid_table(&t, b"APIC");
        assert_eq!(t[8], MADT_REVISION);
        assert_eq!(u32_at(&t, 36), 0xfee0_0000);
        assert_eq!(u32_at(&t, 40), 1, "PCAT_COMPAT");
    }

    #[test]
    fn test_madt_n_vcpus_n_enabled_lapics_with_index_ids() {
        for n in [1u8, 2, 7, 254] {
            let t = madt(n).expect("madt");
            assert_valid_table(&t, b"APIC");
            let lapics: Vec<_> = entries(&t)
                .into_iter()
                .filter(|(ty, _)| *ty == 0)
                .map(|(_, e)| e)
                .collect();
            assert_eq!(lapics.len(), usize::from(n));
            for (i, e) in lapics.iter().enumerate() {
                assert_eq!(e.len(), 8);
                assert_eq!(usize::from(e[2]), i, "processor uid");
                assert_eq!(usize::from(e[3]), i, "apic id");
                assert_eq!(u32_at(e, 4), 1, "enabled");
            }
        }
    }

    #[test]
    fn test_madt_ioapic_id_after_last_lapic() {
        let t = madt(3).expect("madt");
        let all = entries(&t);
        let ioapics: Vec<_> = all.iter().filter(|(ty, _)| *ty == 1).collect();
        assert_eq!(ioapics.len(), 1);
        let e = ioapics[0].1;
        assert_eq!(e.len(), 12);
        assert_eq!(e[2], 3, "id = vcpu count");
        assert_eq!(u32_at(e, 4), 0xfec0_0000);
        assert_eq!(u32_at(e, 8), 0, "GSI base");
    }

    #[test]
    fn test_madt_irq0_override_and_lint1_nmi_present() {
        let t = madt(1).expect("madt");
        let all = entries(&t);
        let iso = all.iter().find(|(ty, _)| *ty == 2).expect("override").1;
        assert_eq!(iso.len(), 10);
        assert_eq!((iso[2], iso[3]), (0, 0), "ISA IRQ 0");
        assert_eq!(u32_at(iso, 4), 2, "GSI 2");
        assert_eq!(u16_at(iso, 8), 0);
        let identity: Vec<_> = all
            .iter()
            .filter(|(ty, b)| *ty == 2 && b[3] != 0)
            .map(|(_, b)| (b[3], u32_at(b, 4), u16_at(b, 8)))
            .collect();
        assert_eq!(identity.len(), 14);
        assert!(identity
            .iter()
            .all(|&(irq, gsi, flags)| u32::from(irq) == gsi && flags == 5));
        assert!(
            identity.iter().any(|&(irq, _, _)| irq == 5),
            "virtio's first IRQ"
        );
        let nmi = all.iter().find(|(ty, _)| *ty == 4).expect("nmi").1;
        assert_eq!(nmi.len(), 6);
        assert_eq!(nmi[2], 0xff, "all processors");
        assert_eq!(nmi[5], 1, "LINT1");
    }
}
