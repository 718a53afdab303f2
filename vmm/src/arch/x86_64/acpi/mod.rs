//! Minimal ACPI tables for x86-64 zones (ACPI 6.5), so that the guest kernel finds every
//! vCPU and can power off and reboot through registers the VMM owns.
//!
//! The set is the smallest Linux accepts for a HW-reduced ACPI platform (ACPI 6.5 §4.1):
//!
//! - [`rsdp`]: Root System Description Pointer (§5.2.5.3), found by the guest's scan of
//!   the BIOS area, pointing at the XSDT;
//! - [`xsdt`]: Extended System Description Table (§5.2.8), listing the FADT and MADT;
//! - [`fadt`]: Fixed ACPI Description Table (§5.2.9), HW-reduced, with sleep and reset
//!   registers on the I/O ports of [`crate::devices::power::PowerDevice`];
//! - [`dsdt`]: Differentiated System Description Table (§5.2.11.1), just `\_S5_`;
//! - [`madt`]: Multiple APIC Description Table (§5.2.12), one local APIC per vCPU;
//! - [`tpm2`]: the TCG TPM2 table, when the zone has a vTPM: its CRB control area and the
//!   event log area.
//!
//! [`build_tables`] lays them out and returns the bytes with their addresses;
//! [`AcpiTables::write_to`] copies them into guest memory; [`write_tables`] does both.
//! Addresses and ports live in [`layout`].

pub mod aml;
pub mod dsdt;
pub mod fadt;
pub mod layout;
pub mod madt;
pub mod rsdp;
pub mod sdt;
pub mod tpm2;
pub mod xsdt;

use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryError};

pub use self::dsdt::DsdtDevice;
use self::layout::MAX_VCPUS;
use self::rsdp::RSDP_LEN;
use self::sdt::SdtError;

/// Tables after the RSDP start on this boundary.
const TABLE_ALIGN: u64 = 16;
/// The guest scans for the RSDP on this boundary. (A mask test rather than
/// `is_multiple_of`, which is newer than the workspace's rust-version.)
const RSDP_ALIGN: u64 = 16;

#[derive(Debug, thiserror::Error)]
pub enum AcpiError {
    #[error("vCPU count {0} is outside 1..={max}", max = MAX_VCPUS)]
    InvalidVcpuCount(u8),
    #[error("RSDP address {0:#x} is not 16-byte aligned; the guest's scan would miss it")]
    MisalignedRsdp(u64),
    #[error("ACPI tables at {tables:#x}..{end:#x} overlap the RSDP at {rsdp:#x}")]
    Overlap { rsdp: u64, tables: u64, end: u64 },
    #[error("ACPI tables starting at {0:#x} run past the end of the address space")]
    AddressOverflow(u64),
    #[error(transparent)]
    Table(#[from] SdtError),
    #[error("writing an ACPI table to guest memory at {addr:#x}")]
    GuestMemory {
        addr: u64,
        #[source]
        source: GuestMemoryError,
    },
}

/// One table and where it goes in guest memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub addr: GuestAddress,
    pub bytes: Vec<u8>,
}

impl Table {
    /// First address after the table.
    pub fn end(&self) -> u64 {
        self.addr.0.saturating_add(self.bytes.len() as u64)
    }
}

/// The full set of tables, laid out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcpiTables {
    pub rsdp: Table,
    pub xsdt: Table,
    pub fadt: Table,
    pub dsdt: Table,
    pub madt: Table,
    pub tpm2: Option<Table>,
}

/// What the TPM2 table says: the CRB control area and the event log area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TpmTable {
    pub control_area: u64,
    pub log_addr: u64,
    pub log_len: u32,
}

impl AcpiTables {
    /// All tables, RSDP first, then in address order.
    pub fn tables(&self) -> Vec<&Table> {
        let mut all = vec![&self.rsdp, &self.dsdt, &self.fadt, &self.madt];
        all.extend(self.tpm2.as_ref());
        all.push(&self.xsdt);
        all
    }

    /// Copies every table into guest memory. On error, tables before the failing one are
    /// already written.
    pub fn write_to<M: GuestMemory>(&self, mem: &M) -> Result<(), AcpiError> {
        for t in self.tables() {
            mem.write_slice(&t.bytes, t.addr)
                .map_err(|source| AcpiError::GuestMemory {
                    addr: t.addr.0,
                    source,
                })?;
        }
        Ok(())
    }
}

/// Builds the tables for `vcpus` vCPUs: the RSDP at `rsdp_addr`, the DSDT, FADT, MADT and
/// XSDT one after another from `tables_addr` on 16-byte boundaries.
///
/// The defaults are [`layout::RSDP_ADDR`] and [`layout::TABLES_ADDR`].
pub fn build_tables(
    rsdp_addr: GuestAddress,
    tables_addr: GuestAddress,
    vcpus: u8,
    devices: &[DsdtDevice],
    tpm: Option<TpmTable>,
) -> Result<AcpiTables, AcpiError> {
    if !(1..=MAX_VCPUS).contains(&vcpus) {
        return Err(AcpiError::InvalidVcpuCount(vcpus));
    }
    if rsdp_addr.0 & (RSDP_ALIGN - 1) != 0 {
        return Err(AcpiError::MisalignedRsdp(rsdp_addr.0));
    }
    let mut cursor = Cursor::new(tables_addr.0)?;
    let dsdt = cursor.place(dsdt::dsdt(devices)?)?;
    let fadt = cursor.place(fadt::fadt(dsdt.addr.0)?)?;
    let madt = cursor.place(madt::madt(vcpus)?)?;
    let tpm2 = match tpm {
        Some(t) => Some(cursor.place(tpm2::tpm2(t.control_area, t.log_addr, t.log_len)?)?),
        None => None,
    };
    let mut entries = vec![fadt.addr.0, madt.addr.0];
    entries.extend(tpm2.as_ref().map(|t| t.addr.0));
    let xsdt = cursor.place(xsdt::xsdt(&entries)?)?;
    let rsdp = Table {
        addr: rsdp_addr,
        bytes: rsdp::rsdp(xsdt.addr.0).to_vec(),
    };

    let rsdp_end = rsdp_addr
        .0
        .checked_add(RSDP_LEN as u64)
        .ok_or(AcpiError::AddressOverflow(rsdp_addr.0))?;
    let (start, end) = (tables_addr.0, cursor.next);
    if start < rsdp_end && rsdp_addr.0 < end {
        return Err(AcpiError::Overlap {
            rsdp: rsdp_addr.0,
            tables: start,
            end,
        });
    }
    Ok(AcpiTables {
        rsdp,
        xsdt,
        fadt,
        dsdt,
        madt,
        tpm2,
    })
}

/// Builds the tables for `vcpus` vCPUs (see [`build_tables`]) and writes them to `mem`.
pub fn write_tables<M: GuestMemory>(
    mem: &M,
    rsdp_addr: GuestAddress,
    tables_addr: GuestAddress,
    vcpus: u8,
    devices: &[DsdtDevice],
    tpm: Option<TpmTable>,
) -> Result<(), AcpiError> {
    build_tables(rsdp_addr, tables_addr, vcpus, devices, tpm)?.write_to(mem)
}

/// Hands out 16-byte-aligned addresses for consecutive tables.
struct Cursor {
    start: u64,
    next: u64,
}

impl Cursor {
    fn new(start: u64) -> Result<Self, AcpiError> {
        let next = align_up(start).ok_or(AcpiError::AddressOverflow(start))?;
        Ok(Self { start, next })
    }

    fn place(&mut self, bytes: Vec<u8>) -> Result<Table, AcpiError> {
        let addr = self.next;
        self.next = addr
            .checked_add(bytes.len() as u64)
            .and_then(align_up)
            .ok_or(AcpiError::AddressOverflow(self.start))?;
        Ok(Table {
            addr: GuestAddress(addr),
            bytes,
        })
    }
}

fn align_up(addr: u64) -> Option<u64> {
    Some(addr.checked_add(TABLE_ALIGN - 1)? & !(TABLE_ALIGN - 1))
}

#[cfg(test)]
mod tests {
    use super::layout::{RSDP_ADDR, TABLES_ADDR, TPM_EVENT_LOG_ADDR, TPM_EVENT_LOG_LEN};
    use super::sdt::test_util::{sum, u32_at, u64_at};
    use super::*;
    use vm_memory::GuestMemoryMmap;

    fn low_mem() -> GuestMemoryMmap<()> {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).expect("guest memory")
    }

    /// Reads a whole table back: its header, then as many bytes as its Length says.
    fn read_table(mem: &GuestMemoryMmap<()>, addr: u64) -> Vec<u8> {
        let mut header = [0u8; 8];
        mem.read_slice(&mut header, GuestAddress(addr))
            .expect("read header");
        let len = u32_at(&header, 4) as usize;
        let mut t = vec![0u8; len];
        mem.read_slice(&mut t, GuestAddress(addr))
            .expect("read table");
        t
    }

    #[test]
    fn test_write_tables_default_layout_rsdp_leads_to_fadt_and_madt() {
        let mem = low_mem();
        write_tables(
            &mem,
            GuestAddress(RSDP_ADDR),
            GuestAddress(TABLES_ADDR),
            2,
            &[],
            None,
        )
        .expect("write");

        let mut rsdp = [0u8; RSDP_LEN];
        mem.read_slice(&mut rsdp, GuestAddress(RSDP_ADDR))
            .expect("read rsdp");
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        assert_eq!(sum(&rsdp[..20]), 0);
        assert_eq!(sum(&rsdp), 0);

        let xsdt = read_table(&mem, u64_at(&rsdp, 24));
        assert_eq!(&xsdt[..4], b"XSDT");
        assert_eq!(sum(&xsdt), 0);
        assert_eq!(xsdt.len(), 36 + 16, "two entries");
        let sigs: Vec<Vec<u8>> = [36, 44]
            .iter()
            .map(|off| {
                let t = read_table(&mem, u64_at(&xsdt, *off));
                assert_eq!(sum(&t), 0);
                t[..4].to_vec()
            })
            .collect();
        assert_eq!(sigs, vec![b"FACP".to_vec(), b"APIC".to_vec()]);

        let fadt = read_table(&mem, u64_at(&xsdt, 36));
        let dsdt = read_table(&mem, u64_at(&fadt, 140));
        assert_eq!(&dsdt[..4], b"DSDT");
        assert_eq!(sum(&dsdt), 0);
    }

    #[test]
    fn test_build_tables_default_layout_fits_bios_area_without_overlap() {
        // The largest zone: every vCPU, a serial port and ten virtio windows.
        let mut devices = vec![DsdtDevice::Serial {
            port: 0x3f8,
            gsi: 4,
        }];
        devices.extend((0..10).map(|i| DsdtDevice::VirtioMmio {
            base: 0xd000_0000 + i * 0x1000,
            len: 0x1000,
            gsi: 5 + i,
        }));
        let t = build_tables(
            GuestAddress(RSDP_ADDR),
            GuestAddress(TABLES_ADDR),
            MAX_VCPUS,
            &devices,
            Some(TpmTable {
                control_area: 0xfed4_0040,
                log_addr: TPM_EVENT_LOG_ADDR,
                log_len: TPM_EVENT_LOG_LEN as u32,
            }),
        )
        .expect("build");
        let all = t.tables();
        for pair in all.windows(2) {
            assert!(pair[0].end() <= pair[1].addr.0, "tables overlap");
        }
        for table in all.iter().skip(1) {
            assert_eq!(table.addr.0 % 16, 0);
        }
        assert!(
            t.xsdt.end() <= TPM_EVENT_LOG_ADDR,
            "tables run into the event log"
        );
        assert_eq!(
            &t.xsdt.bytes[36 + 16..],
            &t.tpm2.as_ref().expect("tpm2").addr.0.to_le_bytes()
        );
    }

    #[test]
    fn test_build_tables_zero_or_255_vcpus_rejected() {
        for n in [0u8, 255] {
            let err = build_tables(
                GuestAddress(RSDP_ADDR),
                GuestAddress(TABLES_ADDR),
                n,
                &[],
                None,
            )
            .expect_err("invalid count accepted");
            assert!(matches!(err, AcpiError::InvalidVcpuCount(v) if v == n));
        }
    }

    #[test]
    fn test_build_tables_misaligned_rsdp_rejected() {
        let err = build_tables(
            GuestAddress(RSDP_ADDR + 8),
            GuestAddress(TABLES_ADDR),
            1,
            &[],
            None,
        )
        .expect_err("misaligned");
        assert!(matches!(err, AcpiError::MisalignedRsdp(_)));
    }

    #[test]
    fn test_build_tables_tables_over_rsdp_rejected() {
        let err = build_tables(
            GuestAddress(RSDP_ADDR),
            GuestAddress(RSDP_ADDR),
            1,
            &[],
            None,
        )
        .expect_err("overlap");
        assert!(matches!(err, AcpiError::Overlap { .. }));
    }

    #[test]
    fn test_build_tables_near_address_space_end_overflow_rejected() {
        let err = build_tables(
            GuestAddress(RSDP_ADDR),
            GuestAddress(u64::MAX - 64),
            1,
            &[],
            None,
        )
        .expect_err("overflow");
        assert!(matches!(err, AcpiError::AddressOverflow(_)));
    }

    #[test]
    fn test_write_tables_outside_guest_memory_error() {
        let mem = low_mem();
        let err = write_tables(
            &mem,
            GuestAddress(RSDP_ADDR),
            GuestAddress(0x20_0000),
            1,
            &[],
            None,
        )
        .expect_err("write outside memory");
        assert!(matches!(err, AcpiError::GuestMemory { .. }));
    }

    /// Writes each table to `$ZONES_ACPI_DUMP_DIR/<sig>.dat` for inspection with
    /// `iasl -d`. Ignored: run by hand with `--ignored`.
    #[test]
    #[ignore = "writes files; run by hand to disassemble the tables with iasl"]
    fn test_dump_tables_to_env_dir_writes_files() {
        let dir = std::env::var("ZONES_ACPI_DUMP_DIR").expect("ZONES_ACPI_DUMP_DIR");
        let t = build_tables(
            GuestAddress(RSDP_ADDR),
            GuestAddress(TABLES_ADDR),
            4,
            &[],
            None,
        )
        .expect("build");
        for (name, table) in [
            ("rsdp", &t.rsdp),
            ("xsdt", &t.xsdt),
            ("facp", &t.fadt),
            ("dsdt", &t.dsdt),
            ("apic", &t.madt),
        ] {
            std::fs::write(format!("{dir}/{name}.dat"), &table.bytes).expect("write");
        }
    }
}
