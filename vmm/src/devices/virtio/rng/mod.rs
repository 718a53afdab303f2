//! virtio-rng (virtio 1.2, section 5.4): the guest's driver posts device-writable buffers and
//! we fill them from the host's `/dev/urandom`.

mod device;
mod handler;

use std::io;

pub use device::Rng;

/// Size of the single request queue.
pub const QUEUE_SIZE: u16 = 256;
/// Most random bytes given for one chain, so a huge buffer cannot keep the worker busy.
pub const MAX_FILL_BYTES: u32 = 64 * 1024;
/// Where random bytes come from.
pub const ENTROPY_SOURCE: &str = "/dev/urandom";

/// Why the entropy device could not start or fill a buffer.
#[derive(Debug, thiserror::Error)]
pub enum RngError {
    #[error("cannot open /dev/urandom")]
    Open(#[source] io::Error),
    #[error("cannot read /dev/urandom")]
    ReadEntropy(#[source] io::Error),
    #[error("cannot write guest memory")]
    WriteGuest(#[source] vm_memory::GuestMemoryError),
    #[error("cannot walk the available ring")]
    Iterate(#[source] virtio_queue::Error),
    #[error("cannot add to the used ring")]
    AddUsed(#[source] virtio_queue::Error),
    #[error("cannot raise the queue interrupt")]
    Notify(#[source] io::Error),
}

impl RngError {
    /// True when the host failed rather than the guest handing us something invalid.
    pub fn is_host_error(&self) -> bool {
        matches!(self, Self::Open(_) | Self::ReadEntropy(_) | Self::Notify(_))
    }
}
