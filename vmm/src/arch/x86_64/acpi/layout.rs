//! Where the ACPI tables live in guest memory, which I/O ports back the HW-reduced ACPI
//! registers they describe, and the bit layout of those registers. The table builders, the
//! [`crate::devices::power::PowerDevice`] and the VMM's setup code all take these from here.
//!
//! Spec references (ACPI 6.5 unless noted): RSDP search area §5.2.5.1; Reset Register
//! §4.8.3.6, Sleep Control Register §4.8.3.7 and Sleep Status Register §4.8.3.8 (ACPI 6.0
//! numbering); `\_S5` sleep type values §7.4.2.

/// Guest-physical address of the RSDP. Without EFI, Linux finds the RSDP by scanning the
/// BIOS read-only area 0xE0000..0x100000 on 16-byte boundaries; its first paragraph is ours.
pub const RSDP_ADDR: u64 = 0x000E_0000;

/// Guest-physical address of the first table after the RSDP (the RSDP is 36 bytes; we leave
/// the rest of its 64-byte slot empty). The tables follow one another on 16-byte boundaries.
pub const TABLES_ADDR: u64 = RSDP_ADDR + 0x40;

/// Start of the BIOS read-only area Linux scans for the RSDP.
pub const BIOS_AREA_START: u64 = 0x000E_0000;

/// End (exclusive) of the BIOS read-only area. The VMM must back 0xE0000..0x100000 with
/// guest memory; Linux reserves it and never hands it to the page allocator.
pub const BIOS_AREA_END: u64 = 0x0010_0000;

/// Guest-physical address of the TPM event log the VMM writes (the TPM2 table's LASA): the
/// top 64 KiB of the BIOS area, above the tables. The area is not RAM in the e820 map, so
/// the kernel never allocates it; it maps it to copy the log out.
pub const TPM_EVENT_LOG_ADDR: u64 = 0x000F_0000;

/// Size of the TPM event log area (the TPM2 table's LAML); the log is zero-padded to it.
pub const TPM_EVENT_LOG_LEN: u64 = BIOS_AREA_END - TPM_EVENT_LOG_ADDR;

/// Most vCPUs the tables describe. APIC ids are 8 bits, 0xFF is the broadcast id, and the
/// I/O APIC takes the id just after the last vCPU, so 254 vCPUs use ids 0..=253 plus 254.
pub const MAX_VCPUS: u8 = 254;

/// Guest-physical address of every vCPU's local APIC (the architectural default).
pub const LAPIC_ADDR: u32 = 0xFEE0_0000;

/// Guest-physical address of KVM's in-kernel I/O APIC (the architectural default).
pub const IOAPIC_ADDR: u32 = 0xFEC0_0000;

/// I/O port of the Sleep Control Register (FADT `SLEEP_CONTROL_REG`, 8 bits).
///
/// 0x3C0 is the VGA attribute controller on a PC. Zones have no VGA (the FADT says so), so
/// nothing else decodes it.
pub const SLEEP_CONTROL_PORT: u16 = 0x3c0;

/// I/O port of the Sleep Status Register (FADT `SLEEP_STATUS_REG`, 8 bits). It shares the
/// control register's port: the control bits (SLP_TYP, SLP_EN: bits 2..=5) and the status
/// bit (WAK_STS: bit 7) do not overlap, so one byte serves as both.
pub const SLEEP_STATUS_PORT: u16 = SLEEP_CONTROL_PORT;

/// I/O port of the Reset Register (FADT `RESET_REG`, 8 bits).
pub const RESET_PORT: u16 = 0x3c1;

/// The value the guest writes to [`RESET_PORT`] to reset the machine (FADT `RESET_VALUE`).
/// Any byte would do; a distinctive one keeps a stray write of 0x00, 0x01 or 0xFF from
/// rebooting the zone.
pub const RESET_VALUE: u8 = 0x5a;

/// First port of the power device's range on the I/O bus.
pub const POWER_PORTS_BASE: u64 = SLEEP_CONTROL_PORT as u64;

/// Number of ports the power device decodes: sleep control/status and reset.
pub const POWER_PORTS_LEN: u64 = RESET_PORT as u64 - POWER_PORTS_BASE + 1;

/// Sleep Control Register: SLP_TYP field, bits 2..=4.
pub const SLP_TYP_MASK: u8 = 0b0001_1100;

/// Sleep Control Register: shift of the SLP_TYP field.
pub const SLP_TYP_SHIFT: u8 = 2;

/// Sleep Control Register: SLP_EN, bit 5. Writing it starts the transition to SLP_TYP.
pub const SLP_EN: u8 = 1 << 5;

/// Sleep Status Register: WAK_STS, bit 7. Set when the machine is awake.
pub const WAK_STS: u8 = 1 << 7;

/// SLP_TYP value for S5 (soft off), as declared by the DSDT's `\_S5_` package. The value is
/// ours to choose; 5 mirrors the state number.
pub const SLP_TYP_S5: u8 = 5;
