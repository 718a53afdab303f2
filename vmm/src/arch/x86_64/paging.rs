//! Identity page tables for the first 4 GiB, with 2 MiB pages: the 64-bit boot protocol needs
//! the kernel, zero page and command line identity-mapped.

use vm_memory::{Bytes, GuestAddress, GuestMemory};

use super::layout::PML4_START;

const PRESENT_WRITABLE: u64 = 0x3;
const PAGE_SIZE_2M: u64 = 0x80;
/// One page directory maps 1 GiB; four cover the low 4 GiB.
const DIRECTORIES: u64 = 4;

/// The PDPT follows the PML4, the page directories follow the PDPT.
pub const PDPT_START: u64 = PML4_START + 0x1000;
pub const PD_START: u64 = PDPT_START + 0x1000;
/// First byte after the page tables.
pub const PAGE_TABLES_END: u64 = PD_START + DIRECTORIES * 0x1000;

/// Writes the tables; returns the value for CR3.
pub fn write_identity_map<M: GuestMemory>(mem: &M) -> Result<u64, vm_memory::GuestMemoryError> {
    mem.write_obj(PDPT_START | PRESENT_WRITABLE, GuestAddress(PML4_START))?;
    for dir in 0..DIRECTORIES {
        let pd = PD_START + dir * 0x1000;
        mem.write_obj(pd | PRESENT_WRITABLE, GuestAddress(PDPT_START + dir * 8))?;
        for entry in 0..512u64 {
            let phys = (dir << 30) | (entry << 21);
            mem.write_obj(
                phys | PRESENT_WRITABLE | PAGE_SIZE_2M,
                GuestAddress(pd + entry * 8),
            )?;
        }
    }
    Ok(PML4_START)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    #[test]
    fn test_identity_map_translates_addresses_to_themselves() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).expect("mem");
        let cr3 = write_identity_map(&mem).expect("write");
        for addr in [0u64, 0x10_0000, 0x4020_0000, 0xffe0_0000] {
            let pml4e: u64 = mem
                .read_obj(GuestAddress(cr3 + ((addr >> 39) & 511) * 8))
                .expect("pml4e");
            let pdpte: u64 = mem
                .read_obj(GuestAddress((pml4e & !0xfff) + ((addr >> 30) & 511) * 8))
                .expect("pdpte");
            let pde: u64 = mem
                .read_obj(GuestAddress((pdpte & !0xfff) + ((addr >> 21) & 511) * 8))
                .expect("pde");
            assert_eq!(pde & PAGE_SIZE_2M, PAGE_SIZE_2M);
            assert_eq!(pde & !0x1f_ffff, addr & !0x1f_ffff);
        }
    }
}
