//! Differentiated System Description Table (ACPI 6.5 §5.2.11.1): the header followed by a
//! hand-encoded AML definition block (ACPI 6.5 §20, "ACPI Machine Language (AML)
//! Specification").
//!
//! The namespace holds `\_S5_`, the soft-off sleep-type package (ACPI 6.5 §7.4.2), without
//! which Linux does not register ACPI power-off, and the zone's fixed devices under `\_SB`:
//!
//! ```text
//! Name (_S5, Package (4) { 5, 0, 0, 0 })
//! Scope (\_SB) {
//!     Device (COM1) { Name (_HID, "PNP0501") Name (_UID, 0)
//!                     Name (_CRS, ResourceTemplate () { IO (0x3f8, 8)  Interrupt { 4 } }) }
//!     Device (VR00) { Name (_HID, "LNRO0005") Name (_UID, 0)      // virtio-mmio
//!                     Name (_CRS, ResourceTemplate () { Memory32Fixed (0xd0000000, 0x1000)
//!                                                       Interrupt { 5 } }) }
//!     ...
//! }
//! ```
//!
//! Devices are declared here rather than on the kernel command line because HW-reduced ACPI
//! Linux has no legacy PIC: ISA IRQ numbers mean nothing to it, and only a GSI given in a
//! `_CRS` is mapped (`acpi_register_gsi`) to a Linux IRQ the driver can request.
//!
//! Element 0 is the value the OS writes to SLP_TYP in the Sleep Control Register (HW-reduced
//! ACPI uses only the first value); element 1 would be SLP_TYPb of legacy PM1b hardware;
//! the last two are reserved.

use super::aml::{self, resource};
use super::layout::SLP_TYP_S5;
use super::sdt::{Sdt, SdtError};

/// A fixed device the DSDT declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DsdtDevice {
    /// A 16550 UART at an I/O port.
    Serial { port: u16, gsi: u32 },
    /// A virtio-mmio window (ACPI id LNRO0005, drivers/virtio/virtio_mmio.c).
    VirtioMmio { base: u32, len: u32, gsi: u32 },
    /// A TPM 2.0 (ACPI id MSFT0101) at a memory window, without an interrupt (the driver
    /// polls); the TPM2 table says which interface it is.
    Tpm { base: u32, len: u32 },
}

/// DSDT revision 2: AML integers are 64 bits wide (§5.2.11.1).
pub const DSDT_REVISION: u8 = 2;

use aml::{BYTE_PREFIX, NAME_OP, ZERO_OP};
/// PackageOp (§20.2.5.4, DefPackage := PackageOp PkgLength NumElements PackageElementList).
const PACKAGE_OP: u8 = 0x12;

/// The AML for `Name (_S5, Package (4) { SLP_TYP_S5, 0, 0, 0 })`.
#[rustfmt::skip]
pub const S5_AML: [u8; 13] = [
    // DefName: NameOp, then the NameString. A NameString at the root of the definition
    // block is a single NameSeg (§20.2.2): four characters, padded with '_' to "_S5_".
    NAME_OP, b'_', b'S', b'5', b'_',
    // DefPackage: PackageOp ...
    PACKAGE_OP,
    // ... PkgLength (§20.2.4). Lengths up to 63 take one byte: bits 7..6 = 0 (no extra
    // bytes follow), bits 5..0 = the length. The length counts itself and everything after
    // it up to the end of the package: PkgLength (1) + NumElements (1) + elements (2+1+1+1).
    0x07,
    // ... NumElements: a ByteData, 4.
    0x04,
    // ... PackageElementList: SLP_TYPa as a ByteConst (BytePrefix, ByteData) ...
    BYTE_PREFIX, SLP_TYP_S5,
    // ... SLP_TYPb and the two reserved elements, each ZeroOp.
    ZERO_OP, ZERO_OP, ZERO_OP,
];

/// The AML declaring one device.
fn device_aml(device: &DsdtDevice, index: usize) -> Vec<u8> {
    let (seg, hid, crs) = match *device {
        DsdtDevice::Serial { port, gsi } => (
            format!("COM{}", index + 1),
            "PNP0501",
            [resource::io(port, 8), resource::edge_interrupt(gsi)].concat(),
        ),
        DsdtDevice::VirtioMmio { base, len, gsi } => (
            format!("VR{index:02X}"),
            "LNRO0005",
            [
                resource::memory32_fixed(base, len),
                resource::edge_interrupt(gsi),
            ]
            .concat(),
        ),
        DsdtDevice::Tpm { base, len } => (
            format!("TPM{index}"),
            "MSFT0101",
            resource::memory32_fixed(base, len),
        ),
    };
    let crs = [crs, resource::end()].concat();
    let body = [
        aml::name("_HID", &aml::string(hid)),
        aml::name("_UID", &aml::integer(index as u32)),
        aml::name("_CRS", &aml::buffer(&crs)),
    ]
    .concat();
    aml::device(&seg, &body)
}

/// Builds the DSDT declaring `devices`. Serial ports and virtio devices are numbered apart.
pub fn dsdt(devices: &[DsdtDevice]) -> Result<Vec<u8>, SdtError> {
    let mut serial = 0;
    let mut virtio = 0;
    let mut tpm = 0;
    let mut sb = Vec::new();
    for device in devices {
        let counter = match device {
            DsdtDevice::Serial { .. } => &mut serial,
            DsdtDevice::VirtioMmio { .. } => &mut virtio,
            DsdtDevice::Tpm { .. } => &mut tpm,
        };
        sb.extend(device_aml(device, *counter));
        *counter += 1;
    }
    let mut t = Sdt::new(b"DSDT", DSDT_REVISION);
    t.bytes(&S5_AML);
    t.bytes(&aml::root_scope("_SB", &sb));
    t.finish()
}

#[cfg(test)]
mod tests {
    use super::super::sdt::test_util::assert_valid_table;
    use super::super::sdt::HEADER_LEN;
    use super::*;

    #[test]
    fn test_dsdt_contains_s5_package_bytes() {
        let t = dsdt(&[]).expect("dsdt");
        assert_valid_table(&t, b"DSDT");
        assert_eq!(t[8], DSDT_REVISION);
        assert_eq!(
            &t[HEADER_LEN..HEADER_LEN + 13],
            &[0x08, b'_', b'S', b'5', b'_', 0x12, 0x07, 0x04, 0x0a, 0x05, 0x00, 0x00, 0x00]
        );
        assert_eq!(
            &t[HEADER_LEN + 13..],
            &[0x10, 0x06, b'\\', b'_', b'S', b'B', b'_']
        );
    }

    #[test]
    fn test_dsdt_declares_serial_and_virtio_with_resources() {
        let devices = [
            DsdtDevice::Serial {
                port: 0x3f8,
                gsi: 4,
            },
            DsdtDevice::VirtioMmio {
                base: 0xd000_0000,
                len: 0x1000,
                gsi: 5,
            },
            DsdtDevice::VirtioMmio {
                base: 0xd000_1000,
                len: 0x1000,
                gsi: 6,
            },
        ];
        let t = dsdt(&devices).expect("dsdt");
        assert_valid_table(&t, b"DSDT");
        let find = |needle: &[u8]| t.windows(needle.len()).position(|w| w == needle);
        assert!(find(b"COM1").is_some() && find(b"PNP0501\0").is_some());
        assert!(find(b"VR00").is_some() && find(b"VR01").is_some());
        assert_eq!(t.windows(9).filter(|w| w == b"LNRO0005\0").count(), 2);
        // Memory32Fixed for the second window, then its interrupt on GSI 6.
        let mem = find(&[0x86, 0x09, 0x00, 0x01, 0x00, 0x10, 0x00, 0xd0]).expect("window");
        assert_eq!(
            &t[mem + 12..mem + 21],
            &[0x89, 0x06, 0x00, 0x03, 0x01, 6, 0, 0, 0]
        );
    }

    #[test]
    fn test_dsdt_declares_tpm_with_memory_window_only() {
        let t = dsdt(&[DsdtDevice::Tpm {
            base: 0xfed4_0000,
            len: 0x1000,
        }])
        .expect("dsdt");
        assert_valid_table(&t, b"DSDT");
        let find = |needle: &[u8]| t.windows(needle.len()).position(|w| w == needle);
        assert!(find(b"TPM0").is_some() && find(b"MSFT0101\0").is_some());
        let mem = find(&[
            0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0xd4, 0xfe, 0x00, 0x10, 0, 0,
        ])
        .expect("Memory32Fixed 0xfed40000, 4 KiB");
        assert_eq!(&t[mem + 12..mem + 14], &[0x79, 0x00], "then the end tag");
    }

    #[test]
    fn test_s5_aml_pkglength_covers_package_exactly() {
        // PkgLength is at index 6; the package runs from there to the end of the AML.
        let pkg_len = usize::from(S5_AML[6]);
        assert!(pkg_len < 64, "single-byte PkgLength form");
        assert_eq!(pkg_len, S5_AML.len() - 6);
    }
}
