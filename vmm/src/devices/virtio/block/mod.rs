//! virtio-blk (virtio 1.2, section 5.2): a raw disk image served on one request queue.
//!
//! `disk` opens and sizes the image, `request` turns a descriptor chain into a checked
//! request, `execute` performs it, `handler` runs the queue on the device's worker thread
//! and `device` is the [`VirtioDevice`](super::VirtioDevice) the transport talks to.

mod device;
mod disk;
mod execute;
mod handler;
mod request;
#[cfg(test)]
pub(in crate::devices::virtio) mod testing;

use std::io;
use std::path::PathBuf;

pub use device::{Block, BlockConfig};

/// Bytes per sector; offsets and capacity are counted in these (section 5.2.6).
pub const SECTOR_SIZE: u64 = 512;
/// Size of the single request queue.
pub const QUEUE_SIZE: u16 = 256;
/// Most data descriptors in one request (config `seg_max`).
pub const SEG_MAX: u32 = 126;
/// Largest data descriptor (config `size_max`), also the I/O chunk size.
pub const SIZE_MAX: u32 = 64 * 1024;
/// Most data bytes in one request: `SEG_MAX` descriptors of `SIZE_MAX` bytes.
pub const MAX_REQUEST_BYTES: u64 = SEG_MAX as u64 * SIZE_MAX as u64;

/// Why a disk could not be opened or a request could not be served.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("cannot stat disk image {path}")]
    Stat {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("disk image {path} is not a regular file or block device")]
    NotAFile { path: PathBuf },
    #[error("cannot open disk image {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot get the size of disk image {path}")]
    Size {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("disk image {path} is empty")]
    Empty { path: PathBuf },
    #[error("disk image {path} is {size} bytes, not a multiple of 512")]
    UnalignedSize { path: PathBuf, size: u64 },

    #[error("chain has no writable status byte at its end")]
    StatusDescriptor,
    #[error("request header is not one readable 16-byte descriptor")]
    HeaderDescriptor,
    #[error("cannot read the request header")]
    ReadHeader(#[source] vm_memory::GuestMemoryError),
    #[error("request has too many data descriptors or bytes")]
    TooLarge,
    #[error("data descriptor has the wrong direction for the request")]
    DataDirection,
    #[error("data descriptor lies outside guest memory")]
    DataAddress,
    #[error("data length {0} is not a multiple of 512")]
    DataLength(u64),
    #[error("sector {sector} plus {len} bytes lies beyond the disk")]
    SectorRange { sector: u64, len: u64 },
    #[error("request type {0} is not supported")]
    Unsupported(u32),
    #[error("write or flush on a read-only disk")]
    ReadOnly,
    #[error("cannot read the disk image")]
    ReadDisk(#[source] io::Error),
    #[error("cannot write the disk image")]
    WriteDisk(#[source] io::Error),
    #[error("cannot flush the disk image")]
    Flush(#[source] io::Error),
    #[error("cannot read guest memory")]
    ReadGuest(#[source] vm_memory::GuestMemoryError),
    #[error("cannot write guest memory")]
    WriteGuest(#[source] vm_memory::GuestMemoryError),
    #[error("cannot write the request status")]
    WriteStatus(#[source] vm_memory::GuestMemoryError),

    #[error("cannot walk the available ring")]
    Iterate(#[source] virtio_queue::Error),
    #[error("cannot add to the used ring")]
    AddUsed(#[source] virtio_queue::Error),
    #[error("cannot raise the queue interrupt")]
    Notify(#[source] io::Error),
}

impl BlockError {
    /// True when the host backend failed rather than the guest asking for something invalid.
    pub fn is_host_error(&self) -> bool {
        matches!(
            self,
            Self::ReadDisk(_) | Self::WriteDisk(_) | Self::Flush(_) | Self::Notify(_)
        )
    }
}
