//! Loading a Linux kernel by the x86 boot protocol (Documentation/arch/x86/boot.rst): an ELF
//! `vmlinux` entered at its 64-bit entry point, or a `bzImage` whose protected-mode part is
//! loaded at 1 MiB and entered at `startup_64` (load address + 0x200). The initrd goes as high
//! in low memory as the kernel allows; command line, zero page and page tables go below 1 MiB.

mod kernel_image;

use std::fs::File;
use std::path::{Path, PathBuf};

use linux_loader::loader::bzimage::BzImage;
use linux_loader::loader::elf::Elf;
use linux_loader::loader::KernelLoader;
use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryBackend};

use crate::arch::x86_64::boot_params::{default_setup_header, write_zero_page, InitrdPlacement};
use crate::arch::x86_64::layout::{CMDLINE_MAX_SIZE, CMDLINE_START, HIMEM_START, MMIO_GAP_START};
use crate::arch::x86_64::paging::write_identity_map;
pub use kernel_image::{detect_format, KernelFormat};

/// Offset of `startup_64` in a bzImage's protected-mode code (boot protocol 2.12+).
const STARTUP_64_OFFSET: u64 = 0x200;
const PAGE_SIZE: u64 = 0x1000;

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("cannot open {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a Linux kernel: {reason}")]
    NotAKernel { path: PathBuf, reason: String },
    #[error("cannot load the kernel into guest memory (does it fit in the zone's memory?)")]
    LoadKernel(#[source] linux_loader::loader::Error),
    #[error("the kernel needs {needed_mib} MiB of memory to unpack; give the zone more memory")]
    KernelTooLarge { needed_mib: u64 },
    #[error("the command line is {len} bytes; this kernel accepts at most {max}")]
    CmdlineTooLong { len: usize, max: usize },
    #[error("the command line contains a NUL byte")]
    CmdlineNul,
    #[error("the initrd ({size_mib} MiB) does not fit in guest memory ({free_mib} MiB free above the kernel); give the zone more memory")]
    InitrdTooLarge { size_mib: u64, free_mib: u64 },
    #[error("cannot read the initrd {path}")]
    ReadInitrd {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write boot data into guest memory")]
    Write(#[source] vm_memory::GuestMemoryError),
    #[error("cannot write the zero page")]
    ZeroPage(#[from] crate::arch::x86_64::boot_params::ZeroPageError),
}

/// What the boot vCPU needs to start the kernel.
#[derive(Clone, Copy, Debug)]
pub struct BootEntry {
    pub entry: u64,
    pub cr3: u64,
}

/// Loads kernel, initrd and command line into `mem` and writes the zero page and page tables.
pub fn load<M: GuestMemory + GuestMemoryBackend>(
    mem: &M,
    mem_size: u64,
    kernel: &Path,
    initrd: Option<&Path>,
    cmdline: &str,
) -> Result<BootEntry, BootError> {
    let open = |path: &Path| {
        File::open(path).map_err(|source| BootError::Open {
            path: path.to_path_buf(),
            source,
        })
    };
    let mut image = open(kernel)?;
    let format = detect_format(&mut image).map_err(|reason| BootError::NotAKernel {
        path: kernel.to_path_buf(),
        reason,
    })?;
    let low_ram_end = mem_size.min(MMIO_GAP_START);
    let highmem = Some(GuestAddress(HIMEM_START));
    let (entry, header, kernel_end) = match format {
        KernelFormat::BzImage => {
            let loaded =
                BzImage::load(mem, None, &mut image, highmem).map_err(BootError::LoadKernel)?;
            let header = loaded.setup_header.unwrap_or_else(default_setup_header);
            // The decompressor needs init_size bytes from the load address.
            let init_end = loaded.kernel_load.0 + u64::from(header.init_size);
            if init_end > low_ram_end {
                return Err(BootError::KernelTooLarge {
                    needed_mib: init_end.div_ceil(1 << 20),
                });
            }
            (
                loaded.kernel_load.0 + STARTUP_64_OFFSET,
                header,
                init_end.max(loaded.kernel_end),
            )
        }
        KernelFormat::Elf => {
            let loaded =
                Elf::load(mem, None, &mut image, highmem).map_err(BootError::LoadKernel)?;
            (
                loaded.kernel_load.0,
                default_setup_header(),
                loaded.kernel_end,
            )
        }
    };

    let max_cmdline = if header.version >= 0x0206 {
        (header.cmdline_size as usize).min(CMDLINE_MAX_SIZE - 1)
    } else {
        255
    };
    if cmdline.len() > max_cmdline {
        return Err(BootError::CmdlineTooLong {
            len: cmdline.len(),
            max: max_cmdline,
        });
    }
    if cmdline.contains('\0') {
        return Err(BootError::CmdlineNul);
    }
    let mut bytes = cmdline.as_bytes().to_vec();
    bytes.push(0);
    mem.write_slice(&bytes, GuestAddress(CMDLINE_START))
        .map_err(BootError::Write)?;

    let initrd = match initrd {
        Some(path) => {
            let limit = low_ram_end.min(u64::from(header.initrd_addr_max) + 1);
            Some(load_initrd(mem, path, kernel_end, limit)?)
        }
        None => None,
    };
    write_zero_page(mem, header, cmdline.len(), initrd, mem_size)?;
    let cr3 = write_identity_map(mem).map_err(BootError::Write)?;
    Ok(BootEntry { entry, cr3 })
}

/// Puts the initrd at the highest page-aligned address below `limit` and above `floor`.
fn load_initrd<M: GuestMemory>(
    mem: &M,
    path: &Path,
    floor: u64,
    limit: u64,
) -> Result<InitrdPlacement, BootError> {
    let read_err = |source| BootError::ReadInitrd {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(read_err)?;
    let size = file.metadata().map_err(read_err)?.len();
    let floor = floor.next_multiple_of(PAGE_SIZE);
    let address = limit
        .checked_sub(size)
        .map(|top| top & !(PAGE_SIZE - 1))
        .filter(|addr| *addr >= floor);
    let Some(address) = address else {
        return Err(BootError::InitrdTooLarge {
            size_mib: size.div_ceil(1 << 20),
            free_mib: limit.saturating_sub(floor) >> 20,
        });
    };
    let len = usize::try_from(size).map_err(|_| BootError::InitrdTooLarge {
        size_mib: size >> 20,
        free_mib: 0,
    })?;
    mem.read_exact_volatile_from(GuestAddress(address), &mut file, len)
        .map_err(BootError::Write)?;
    Ok(InitrdPlacement { address, size })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use vm_memory::GuestMemoryMmap;

    fn mem(size: u64) -> GuestMemoryMmap<()> {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), size as usize)]).expect("mem")
    }

    fn file_with(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        f.write_all(bytes).expect("write");
        f
    }

    #[test]
    fn test_load_initrd_goes_high_and_page_aligned() {
        let m = mem(16 << 20);
        let initrd = file_with(&[7u8; 5000]);
        let placed = load_initrd(&m, initrd.path(), 2 << 20, 16 << 20).expect("load");
        assert_eq!(placed.size, 5000);
        assert_eq!(placed.address % PAGE_SIZE, 0);
        assert!(placed.address + 5000 <= 16 << 20 && placed.address >= (16 << 20) - 0x3000);
        let byte: u8 = m
            .read_obj(GuestAddress(placed.address + 4999))
            .expect("read");
        assert_eq!(byte, 7);
    }

    #[test]
    fn test_load_initrd_too_large_rejected() {
        let m = mem(4 << 20);
        let initrd = file_with(&vec![0u8; 3 << 20]);
        let err = load_initrd(&m, initrd.path(), 2 << 20, 4 << 20).expect_err("too big");
        assert!(
            matches!(
                err,
                BootError::InitrdTooLarge {
                    size_mib: 3,
                    free_mib: 2
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn test_load_not_a_kernel_rejected() {
        let m = mem(4 << 20);
        let junk = file_with(b"#!/bin/sh\necho this is not a kernel\n");
        let err = load(&m, 4 << 20, junk.path(), None, "").expect_err("junk");
        assert!(matches!(err, BootError::NotAKernel { .. }), "{err}");
    }
}
