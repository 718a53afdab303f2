//! The agent's connection to the host over AF_VSOCK.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    accept, bind, connect, listen, socket, AddressFamily, Backlog, SockFlag, SockType, VsockAddr,
};
use std::os::fd::{FromRawFd, OwnedFd};

/// The host's context id (`VMADDR_CID_HOST`).
pub const HOST_CID: u32 = 2;
/// The host port the agent connects to.
pub const AGENT_PORT: u32 = 1024;
/// The port the agent listens on for further commands (`zonectl exec`), one per connection.
pub const API_PORT: u32 = 1025;
/// VMADDR_CID_ANY: listen on the zone's own CID, whatever it is.
const CID_ANY: u32 = u32::MAX;

const RETRY_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    #[error("creating a vsock socket")]
    Socket(#[source] Errno),
    #[error("connecting to vsock {cid}:{port}")]
    Connect { cid: u32, port: u32, source: Errno },
    #[error("listening on vsock port {port}")]
    Listen { port: u32, source: Errno },
    #[error("accepting a vsock connection")]
    Accept(#[source] Errno),
}

/// A new vsock stream socket, closed on exec.
fn stream_socket() -> Result<OwnedFd, VsockError> {
    socket(
        AddressFamily::Vsock,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(VsockError::Socket)
}

/// A listening vsock stream socket on `port`.
pub fn listen_on(port: u32) -> Result<OwnedFd, VsockError> {
    let fd = stream_socket()?;
    let addr = VsockAddr::new(CID_ANY, port);
    bind(fd.as_raw_fd(), &addr).map_err(|source| VsockError::Listen { port, source })?;
    listen(&fd, Backlog::new(16).unwrap_or(Backlog::MAXCONN))
        .map_err(|source| VsockError::Listen { port, source })?;
    Ok(fd)
}

/// Waits for the next connection on `listener`.
pub fn accept_one(listener: &OwnedFd) -> Result<File, VsockError> {
    let fd = accept(listener.as_raw_fd()).map_err(VsockError::Accept)?;
    // SAFETY: accept(2) returned a new descriptor that nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Connects to `cid:port`, retrying for up to `patience` while the host is not listening yet.
pub fn connect_with_retry(cid: u32, port: u32, patience: Duration) -> Result<File, VsockError> {
    let addr = VsockAddr::new(cid, port);
    let deadline = Instant::now() + patience;
    loop {
        let fd = stream_socket()?;
        match connect(fd.as_raw_fd(), &addr) {
            Ok(()) => return Ok(File::from(fd)),
            Err(e) if is_transient(e) && Instant::now() < deadline => {
                tracing::debug!(error = %e, "host not reachable yet, retrying");
                thread::sleep(RETRY_INTERVAL);
            }
            Err(source) => return Err(VsockError::Connect { cid, port, source }),
        }
    }
}

/// Errors that mean "not yet" rather than "never".
fn is_transient(e: Errno) -> bool {
    matches!(
        e,
        Errno::ECONNREFUSED
            | Errno::ECONNRESET
            | Errno::ETIMEDOUT
            | Errno::ENODEV
            | Errno::EHOSTUNREACH
            | Errno::ENETUNREACH
            | Errno::EINTR
            | Errno::EAGAIN
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_is_transient_refused_true_denied_false() {
        assert!(is_transient(Errno::ECONNREFUSED));
        assert!(!is_transient(Errno::EACCES));
        assert!(!is_transient(Errno::EAFNOSUPPORT));
    }
}
