//! virtio-vsock (virtio 1.2, section 5.10), implemented in userspace with the host side on
//! Unix domain sockets ("hybrid vsock").
//!
//! - Host to guest: a host process connects to the socket at `P` given to [`Vsock::new`],
//!   writes `CONNECT <guest port>\n`, and reads `OK <host port>\n` once the guest accepted;
//!   the stream then carries the connection's bytes. A refused, malformed or timed-out request
//!   closes the Unix stream.
//! - Guest to host: a guest connection to host CID 2, port `N`, is forwarded to a Unix socket
//!   listening at `P_N`; without one the guest sees a reset.
//!
//! Only stream sockets exist. Everything the guest writes is checked; a malformed packet is
//! dropped, a misbehaving connection is reset, and neither affects other connections.
//! The device runs one worker thread (the [`muxer`]) once activated.

mod connection;
mod credit;
mod device;
mod muxer;
mod packet;
mod uds;

#[cfg(test)]
mod tests;

use std::io;
use std::path::PathBuf;

pub use device::Vsock;

/// Queue indices (virtio 1.2, section 5.10.2).
pub const RX_QUEUE: usize = 0;
pub const TX_QUEUE: usize = 1;
pub const EVENT_QUEUE: usize = 2;
/// Maximum size of each of the three queues.
pub const QUEUE_SIZE: u16 = 256;
/// Most connections (guest- and host-initiated together) the device keeps at once.
pub const MAX_CONNECTIONS: usize = 1024;

/// What failed, named for the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    #[error("guest CID {0} is reserved or does not fit in 32 bits (valid: 3..=0xfffffffe)")]
    CheckGuestCid(u64),
    #[error("cannot inspect socket path {path}")]
    InspectSocketPath {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0} exists and is not a socket; refusing to replace it")]
    CheckPathIsSocket(PathBuf),
    #[error("{0} is a socket somebody is listening on; refusing to replace it")]
    CheckStaleSocket(PathBuf),
    #[error("cannot remove stale socket {path}")]
    RemoveStaleSocket {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot bind the vsock listener at {path}")]
    BindListener {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot make the vsock listener non-blocking")]
    ConfigureListener(#[source] io::Error),
    #[error("cannot create the epoll instance")]
    CreateEpoll(#[source] io::Error),
    #[error("cannot register a file descriptor with epoll")]
    RegisterEvent(#[source] io::Error),
    #[error("waiting for events failed")]
    WaitEvents(#[source] io::Error),
    #[error("cannot walk the virtqueue")]
    IterQueue(#[source] virtio_queue::Error),
    #[error("cannot return a buffer to the used ring")]
    AddUsed(#[source] virtio_queue::Error),
    #[error("descriptor has the wrong direction (expected writable: {writable})")]
    ChainDirection { writable: bool },
    #[error("descriptor chain has more than {0} descriptors")]
    ChainTooLong(usize),
    #[error("descriptor at {addr:#x} (+{len:#x}) lies outside guest memory")]
    ChainOutsideMemory { addr: u64, len: usize },
    #[error("descriptor chain too short ({0} bytes)")]
    ChainTooShort(usize),
    #[error("cannot read guest memory")]
    ReadGuestMemory(#[source] vm_memory::GuestMemoryError),
    #[error("cannot write guest memory")]
    WriteGuestMemory(#[source] vm_memory::GuestMemoryError),
    #[error("packet payload length {0} exceeds the maximum")]
    CheckPayloadLen(u32),
    #[error("packet payload length {len} exceeds the {available} bytes in its chain")]
    CheckLenAgainstChain { len: u32, available: usize },
    #[error("packet source CID {0} is not the guest's")]
    CheckSrcCid(u64),
    #[error("packet destination CID {0} is not the host's")]
    CheckDstCid(u64),
    #[error("packet socket type {0} is not supported")]
    CheckType(u16),
    #[error("packet operation {0} is unknown")]
    CheckOp(u16),
    #[error("control packet (op {op}) carries {len} payload bytes")]
    CheckControlLen { op: u16, len: u32 },
}
