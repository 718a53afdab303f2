//! virtio-net (virtio 1.2, section 5.1) backed by a Linux tap interface.
//!
//! One receive queue (0) and one transmit queue (1); no control queue, no multiqueue. Every
//! buffer starts with the 12-byte `struct virtio_net_hdr_v1` (section 5.1.6), which the tap
//! reads and writes itself (`IFF_VNET_HDR`, `TUNSETVNETHDRSZ` 12): checksum and segmentation
//! offloads pass through it, and the tap driver validates what the guest puts there.
//!
//! - `tap`: the tap backend, the only code that issues tun ioctls.
//! - `tx`: guest to host. A chain (header plus frame, device-readable only, at most
//!   [`MAX_TX_LEN`] bytes) goes to the tap with one `writev` straight from guest memory.
//! - `rx`: host to guest. A frame is read from the tap into a bounce buffer and copied into
//!   one receive buffer, or into several with `VIRTIO_NET_F_MRG_RXBUF` (section 5.1.6.4).
//!   While the guest has no receive buffers the tap is not polled: frames wait in its queue.
//! - `handler`: the worker thread's event loop and interrupt suppression.
//! - `device`: features, configuration space (section 5.1.4) and the worker's lifecycle.
//!
//! A malformed chain is returned to the guest with used length 0 and logged, rate-limited;
//! the device goes on.

mod device;
mod handler;
mod rx;
mod tap;
#[cfg(test)]
mod testing;
mod tx;

use std::io;

pub use device::{Net, NetDeviceConfig};
pub use tap::Tap;

/// Queue indices (section 5.1.2).
pub const RX_QUEUE: usize = 0;
pub const TX_QUEUE: usize = 1;
/// Maximum size of each queue.
pub const QUEUE_SIZE: u16 = 256;
/// `struct virtio_net_hdr_v1`: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset,
/// num_buffers.
pub const VNET_HDR_LEN: usize = 12;
/// Offset of `num_buffers` in the header.
const NUM_BUFFERS_OFFSET: usize = 10;
/// Largest transmit chain: the header and a 65550-byte frame (a 64 KiB GSO packet with its
/// Ethernet header).
pub const MAX_TX_LEN: u32 = 65562;
/// Most descriptors in one chain the device accepts (Linux uses at most `MAX_SKB_FRAGS + 2`).
pub const MAX_CHAIN_SEGMENTS: usize = 256;
/// The receive bounce buffer: the largest frame the tap hands out (a 64 KiB GSO packet plus
/// Ethernet and VLAN headers) and its header, with room to spare.
pub const RX_BUFFER_LEN: usize = 65536 + 4096;

/// What failed, named for the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot open /dev/net/tun")]
    OpenTun(#[source] io::Error),
    #[error("tap name {0:?} does not fit in an interface name")]
    TapName(String),
    #[error("cannot attach to or create tap {name} (TUNSETIFF)")]
    AttachTap {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("fd={fd} is not an open descriptor inherited from the parent")]
    InheritedFd {
        fd: i32,
        #[source]
        source: io::Error,
    },
    #[error("fd={fd} is not a tun/tap descriptor (TUNGETIFF failed)")]
    NotTun {
        fd: i32,
        #[source]
        source: io::Error,
    },
    #[error("fd={fd} is /dev/net/tun but not attached to an interface (TUNSETIFF was not done)")]
    NotAttached { fd: i32 },
    #[error(
        "fd={fd} (interface {name}) was opened without {missing}: \
         open it with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR"
    )]
    TapFlags {
        fd: i32,
        name: String,
        missing: String,
    },
    #[error("cannot set up the tap ({what})")]
    ConfigureTap {
        what: &'static str,
        #[source]
        source: io::Error,
    },

    #[error("cannot create the epoll instance")]
    CreateEpoll(#[source] io::Error),
    #[error("cannot register an event with epoll")]
    RegisterEvent(#[source] io::Error),
    #[error("waiting for events failed")]
    WaitEvents(#[source] io::Error),

    #[error("descriptor chain has more than {MAX_CHAIN_SEGMENTS} descriptors")]
    ChainTooLong,
    #[error("transmit chain holds {0} bytes, more than {MAX_TX_LEN}")]
    TxTooLarge(u64),
    #[error("chain holds {0} bytes, less than the 12-byte header")]
    ChainTooShort(u64),
    #[error("descriptor has the wrong direction for its queue (expected writable: {writable})")]
    ChainDirection { writable: bool },
    #[error("descriptor at {addr:#x} (+{len:#x}) lies outside guest memory")]
    ChainOutsideMemory { addr: u64, len: u32 },
    #[error("frame of {frame} bytes does not fit the guest's {room}-byte receive buffer")]
    RxBufferTooSmall { frame: usize, room: u64 },
    #[error("cannot write guest memory")]
    WriteGuest(#[source] vm_memory::GuestMemoryError),
    #[error("cannot walk the virtqueue")]
    IterQueue(#[source] virtio_queue::Error),
    #[error("cannot return a buffer to the used ring")]
    AddUsed(#[source] virtio_queue::Error),
    #[error("cannot write a frame to the tap")]
    TapWrite(#[source] io::Error),
    #[error("cannot read a frame from the tap")]
    TapRead(#[source] io::Error),
    #[error("cannot raise the queue interrupt")]
    Notify(#[source] io::Error),
}
