//! The agent's connection to the host over AF_VSOCK.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, VsockAddr};

/// The host's context id (`VMADDR_CID_HOST`).
pub const HOST_CID: u32 = 2;
/// The host port the agent connects to.
pub const AGENT_PORT: u32 = 1024;

const RETRY_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    #[error("creating a vsock socket")]
    Socket(#[source] Errno),
    #[error("connecting to vsock {cid}:{port}")]
    Connect { cid: u32, port: u32, source: Errno },
}

/// Connects to `cid:port`, retrying for up to `patience` while the host is not listening yet.
pub fn connect_with_retry(cid: u32, port: u32, patience: Duration) -> Result<File, VsockError> {
    let addr = VsockAddr::new(cid, port);
    let deadline = Instant::now() + patience;
    loop {
        let fd = socket(
            AddressFamily::Vsock,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(VsockError::Socket)?;
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
