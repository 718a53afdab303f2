//! Fixed ACPI Description Table (ACPI 6.5 §5.2.9, Table 5.9), revision 6.5, for a
//! HW-reduced ACPI platform (ACPI 6.5 §4.1).
//!
//! HW-reduced means there is no ACPI fixed hardware: no PM1/PM2 blocks, PM timer, GPE
//! blocks, SCI or SMI command port. The OS ignores those fields, and we leave them zero.
//! What remains:
//!
//! - `DSDT`/`X_DSDT` point at the DSDT holding `\_S5_`.
//! - `SLEEP_CONTROL_REG`/`SLEEP_STATUS_REG` (§4.8.3.7, §4.8.3.8 in ACPI 6.0 numbering)
//!   are 8-bit System I/O registers at [`SLEEP_CONTROL_PORT`]/[`SLEEP_STATUS_PORT`]; S5
//!   entry is a write of `SLP_TYP << 2 | SLP_EN` there.
//! - `RESET_REG` (§4.8.3.6) is an 8-bit System I/O register at [`RESET_PORT`]; writing
//!   [`RESET_VALUE`] resets the machine. Flag `RESET_REG_SUP` says it is there.
//! - No FACS (`FIRMWARE_CTRL` = `X_FIRMWARE_CTRL` = 0), which HW-reduced platforms may omit:
//!   there is no firmware waking vector or global lock to share.
//! - IA-PC boot architecture flags (§5.2.9.3): VGA Not Present (so the OS never probes
//!   0x3C0.., where our power registers live) and CMOS RTC Not Present (the VMM emulates
//!   none; Linux then skips the rtc-cmos device and takes wall time from kvmclock).
//!   LEGACY_DEVICES and 8042 stay clear: there is no keyboard controller, and Linux uses the
//!   legacy bit only to skip PnP BIOS probing; the 16550 console is found at its fixed port.
//! - Hypervisor Vendor Identity: [`HYPERVISOR_ID`].

use super::layout::{RESET_PORT, RESET_VALUE, SLEEP_CONTROL_PORT, SLEEP_STATUS_PORT};
use super::sdt::{Gas, Sdt, SdtError};

/// FADT major revision for ACPI 6.x.
pub const FADT_REVISION: u8 = 6;
/// FADT minor revision: ACPI 6.5.
pub const FADT_MINOR_REVISION: u8 = 5;
/// Length of a revision-6 FADT.
pub const FADT_LEN: usize = 276;

/// Hypervisor Vendor Identity: eight bytes naming the hypervisor, no version.
pub const HYPERVISOR_ID: [u8; 8] = *b"ZONESVMM";

/// Fixed Feature Flags (§5.2.9, Table 5.10).
pub mod flags {
    /// WBINVD works (required on all ACPI 2.0+ processors).
    pub const WBINVD: u32 = 1 << 0;
    /// No fixed-feature power button (a power button, if any, is a device).
    pub const PWR_BUTTON: u32 = 1 << 4;
    /// No fixed-feature sleep button.
    pub const SLP_BUTTON: u32 = 1 << 5;
    /// RESET_REG is supported.
    pub const RESET_REG_SUP: u32 = 1 << 10;
    /// HW-reduced ACPI: no fixed hardware; sleep uses SLEEP_CONTROL_REG/SLEEP_STATUS_REG.
    pub const HW_REDUCED_ACPI: u32 = 1 << 20;
}

/// IA-PC Boot Architecture Flags (§5.2.9.3, Table 5.11).
pub mod boot_arch {
    /// User-visible devices on an LPC or ISA bus (clear: none).
    pub const LEGACY_DEVICES: u16 = 1 << 0;
    /// An 8042 keyboard controller (clear: none).
    pub const I8042: u16 = 1 << 1;
    /// VGA Not Present: the OS must not probe VGA ports or memory.
    pub const VGA_NOT_PRESENT: u16 = 1 << 2;
    /// CMOS RTC Not Present.
    pub const CMOS_RTC_NOT_PRESENT: u16 = 1 << 5;
}

/// Fixed Feature Flags we set.
pub const FADT_FLAGS: u32 = flags::WBINVD
    | flags::PWR_BUTTON
    | flags::SLP_BUTTON
    | flags::RESET_REG_SUP
    | flags::HW_REDUCED_ACPI;

/// IA-PC Boot Architecture Flags we set.
pub const IAPC_BOOT_ARCH: u16 = boot_arch::VGA_NOT_PRESENT | boot_arch::CMOS_RTC_NOT_PRESENT;

/// Preferred_PM_Profile 0: unspecified.
const PM_PROFILE_UNSPECIFIED: u8 = 0;

/// Builds the FADT pointing at the DSDT at `dsdt_addr`.
///
/// The 32-bit DSDT field is filled too when the address fits; the OS prefers X_DSDT.
pub fn fadt(dsdt_addr: u64) -> Result<Vec<u8>, SdtError> {
    let dsdt32 = u32::try_from(dsdt_addr).unwrap_or(0);
    let mut t = Sdt::new(b"FACP", FADT_REVISION);
    // Offsets in the comments are from the start of the table.
    t.u32(0) // 36 FIRMWARE_CTRL: no FACS
        .u32(dsdt32) // 40 DSDT
        .u8(0) // 44 reserved
        .u8(PM_PROFILE_UNSPECIFIED) // 45 Preferred_PM_Profile
        .u16(0) // 46 SCI_INT: no SCI
        .u32(0) // 48 SMI_CMD: no SMM; ACPI is always enabled
        .u8(0) // 52 ACPI_ENABLE
        .u8(0) // 53 ACPI_DISABLE
        .u8(0) // 54 S4BIOS_REQ
        .u8(0) // 55 PSTATE_CNT
        .zeros(8 * 4) // 56..88 PM1a/PM1b EVT, PM1a/PM1b CNT, PM2 CNT, PM_TMR, GPE0, GPE1
        .zeros(8) // 88..96 PM1_EVT_LEN .. GPE1_BASE, CST_CNT
        .u16(0) // 96 P_LVL2_LAT
        .u16(0) // 98 P_LVL3_LAT
        .u16(0) // 100 FLUSH_SIZE
        .u16(0) // 102 FLUSH_STRIDE
        .u8(0) // 104 DUTY_OFFSET
        .u8(0) // 105 DUTY_WIDTH
        .u8(0) // 106 DAY_ALRM
        .u8(0) // 107 MON_ALRM
        .u8(0) // 108 CENTURY
        .u16(IAPC_BOOT_ARCH) // 109 IAPC_BOOT_ARCH
        .u8(0) // 111 reserved
        .u32(FADT_FLAGS) // 112 Flags
        .gas(Gas::io_byte(RESET_PORT)) // 116 RESET_REG
        .u8(RESET_VALUE) // 128 RESET_VALUE
        .u16(0) // 129 ARM_BOOT_ARCH
        .u8(FADT_MINOR_REVISION) // 131 FADT Minor Version
        .u64(0) // 132 X_FIRMWARE_CTRL
        .u64(dsdt_addr) // 140 X_DSDT
        .zeros(8 * Gas::LEN) // 148..244 X_PM1a/b EVT, X_PM1a/b CNT, X_PM2, X_PM_TMR, X_GPE0/1
        .gas(Gas::io_byte(SLEEP_CONTROL_PORT)) // 244 SLEEP_CONTROL_REG
        .gas(Gas::io_byte(SLEEP_STATUS_PORT)) // 256 SLEEP_STATUS_REG
        .bytes(&HYPERVISOR_ID); // 268 Hypervisor Vendor Identity
    t.finish()
}

#[cfg(test)]
mod tests {
    use super::super::sdt::test_util::{assert_valid_table, u16_at, u32_at, u64_at};
    use super::*;

    // Field offsets from ACPI 6.5 Table 5.9, written out independently of the builder.
    const DSDT: usize = 40;
    const IAPC_BOOT_ARCH_OFF: usize = 109;
    const FLAGS: usize = 112;
    const RESET_REG: usize = 116;
    const RESET_VALUE_OFF: usize = 128;
    const MINOR: usize = 131;
    const X_DSDT: usize = 140;
    const SLEEP_CONTROL_REG: usize = 244;
    const SLEEP_STATUS_REG: usize = 256;
    const HYPERVISOR_VENDOR_ID: usize = 268;

    #[test]
    fn test_fadt_length_revision_and_checksum_valid() {
        let t = fadt(0xe0100).expect("fadt");
        assert_valid_table(&t, b"FACP");
        assert_eq!(t.len(), FADT_LEN);
        assert_eq!(t[8], 6);
        assert_eq!(t[MINOR], 5);
    }

    #[test]
    fn test_fadt_flags_hw_reduced_and_reset_supported() {
        let t = fadt(0xe0100).expect("fadt");
        let f = u32_at(&t, FLAGS);
        assert_ne!(f & (1 << 20), 0, "HW_REDUCED_ACPI");
        assert_ne!(f & (1 << 10), 0, "RESET_REG_SUP");
        let boot = u16_at(&t, IAPC_BOOT_ARCH_OFF);
        assert_eq!(
            boot,
            (1 << 2) | (1 << 5),
            "no VGA, no CMOS RTC, nothing legacy"
        );
    }

    #[test]
    fn test_fadt_sleep_registers_point_at_power_ports() {
        let t = fadt(0xe0100).expect("fadt");
        for off in [SLEEP_CONTROL_REG, SLEEP_STATUS_REG] {
            assert_eq!(t[off], 1, "System I/O");
            assert_eq!(t[off + 1], 8, "bit width");
            assert_eq!(t[off + 2], 0, "bit offset");
            assert_eq!(t[off + 3], 1, "byte access");
        }
        assert_eq!(u64_at(&t, SLEEP_CONTROL_REG + 4), 0x3c0);
        assert_eq!(u64_at(&t, SLEEP_STATUS_REG + 4), 0x3c0);
    }

    #[test]
    fn test_fadt_reset_register_and_value_set() {
        let t = fadt(0xe0100).expect("fadt");
        assert_eq!(&t[RESET_REG..RESET_REG + 4], &[1, 8, 0, 1]);
        assert_eq!(u64_at(&t, RESET_REG + 4), u64::from(RESET_PORT));
        assert_eq!(t[RESET_VALUE_OFF], RESET_VALUE);
    }

    #[test]
    fn test_fadt_dsdt_pointers_and_hypervisor_id_set() {
        let t = fadt(0xe0100).expect("fadt");
        assert_eq!(u32_at(&t, DSDT), 0xe0100);
        assert_eq!(u64_at(&t, X_DSDT), 0xe0100);
        assert_eq!(&t[HYPERVISOR_VENDOR_ID..], b"ZONESVMM");
    }

    #[test]
    fn test_fadt_dsdt_above_4g_only_x_dsdt_set() {
        let t = fadt(0x1_0000_0000).expect("fadt");
        assert_eq!(u32_at(&t, DSDT), 0);
        assert_eq!(u64_at(&t, X_DSDT), 0x1_0000_0000);
    }
}
