//! The host side of the device: Unix domain sockets speaking the hybrid vsock protocol.
//!
//! Host processes connect to the device's socket at `P` and write `CONNECT <port>\n`; the device
//! answers `OK <host port>\n` once the guest accepted. Guest connections to host port `N` are
//! forwarded to a Unix socket listening at `P_N`.

use std::fs;
use std::io::{self, Read};
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::VsockError;

/// Longest `CONNECT <port>\n` line accepted, newline included.
pub const MAX_CONNECT_LINE: usize = 32;

/// The socket file the device bound, identified by inode so that dropping the device removes
/// only the file it created (never one somebody put there since).
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    /// Removes the socket file if it is still the one we bound.
    pub fn remove(&self) {
        match fs::symlink_metadata(&self.path) {
            Ok(md) if md.dev() == self.dev && md.ino() == self.ino => {
                if let Err(e) = fs::remove_file(&self.path) {
                    tracing::warn!(path = %self.path.display(), error = %e, "vsock: cannot remove socket file");
                }
            }
            _ => {}
        }
    }
}

/// Binds a non-blocking listener at `path`. A socket file already there is removed only if
/// nobody listens on it; any other kind of file is left alone and reported.
pub fn bind_listener(path: &Path) -> Result<(UnixListener, SocketFile), VsockError> {
    match fs::symlink_metadata(path) {
        Ok(md) if md.file_type().is_socket() => match connect_nonblocking(path) {
            Ok(_) => return Err(VsockError::CheckStaleSocket(path.to_path_buf())),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(VsockError::CheckStaleSocket(path.to_path_buf()))
            }
            Err(_) => match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(VsockError::RemoveStaleSocket {
                        path: path.to_path_buf(),
                        source,
                    })
                }
            },
        },
        Ok(_) => return Err(VsockError::CheckPathIsSocket(path.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(VsockError::InspectSocketPath {
                path: path.to_path_buf(),
                source,
            })
        }
    }
    let listener = UnixListener::bind(path).map_err(|source| VsockError::BindListener {
        path: path.to_path_buf(),
        source,
    })?;
    let md = fs::symlink_metadata(path).map_err(|source| VsockError::InspectSocketPath {
        path: path.to_path_buf(),
        source,
    })?;
    let file = SocketFile {
        path: path.to_path_buf(),
        dev: md.dev(),
        ino: md.ino(),
    };
    if let Err(e) = listener.set_nonblocking(true) {
        file.remove();
        return Err(VsockError::ConfigureListener(e));
    }
    Ok((listener, file))
}

/// Connects to the Unix stream socket at `path` without ever blocking: a listener whose backlog
/// is full yields `WouldBlock` instead of stalling the device. The stream is non-blocking.
pub fn connect_nonblocking(path: &Path) -> io::Result<UnixStream> {
    let bytes = path.as_os_str().as_bytes();
    let mut addr = libc::sockaddr_un {
        sun_family: libc::AF_UNIX as libc::sa_family_t,
        sun_path: [0; 108],
    };
    // Keep a terminating NUL; an embedded NUL would silently shorten the path.
    if bytes.is_empty() || bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "unusable unix socket path",
        ));
    }
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: socket() takes no pointers; its result is checked before use.
    let raw = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a descriptor socket() just returned; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let len = mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    // SAFETY: `addr` is an initialised sockaddr_un living across the call, and `len` (checked
    // above to be at most its size) tells the kernel how much of it to read; `fd` is a socket.
    let rc = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast::<libc::sockaddr>(),
            len as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(UnixStream::from(fd))
}

/// The path a guest connection to host port `port` is forwarded to.
pub fn forward_path(base: &Path, port: u32) -> PathBuf {
    let mut s = base.as_os_str().to_os_string();
    s.push(format!("_{port}"));
    PathBuf::from(s)
}

/// Parses `CONNECT <port>\n` (decimal port, nothing else).
pub fn parse_connect_line(line: &[u8]) -> Option<u32> {
    let digits = line.strip_prefix(b"CONNECT ")?.strip_suffix(b"\n")?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// What reading the connect line produced so far.
#[derive(Debug, PartialEq, Eq)]
pub enum LineStatus {
    /// No newline yet; wait for more bytes.
    Incomplete,
    /// A well-formed request for this guest port.
    Port(u32),
    /// Malformed, too long, closed or failed: drop the client.
    Invalid,
}

/// A host client that connected to the listener and has not finished its `CONNECT` line.
#[derive(Debug)]
pub struct PendingClient {
    pub stream: UnixStream,
    pub deadline: Instant,
    buf: [u8; MAX_CONNECT_LINE],
    len: usize,
}

impl PendingClient {
    pub fn new(stream: UnixStream, deadline: Instant) -> Self {
        Self {
            stream,
            deadline,
            buf: [0; MAX_CONNECT_LINE],
            len: 0,
        }
    }

    /// Reads what is available, one byte at a time so that no payload past the newline is
    /// consumed (it belongs to the guest).
    pub fn read_line(&mut self) -> LineStatus {
        read_line_from(&mut self.stream, &mut self.buf, &mut self.len)
    }
}

fn read_line_from(
    src: &mut impl Read,
    buf: &mut [u8; MAX_CONNECT_LINE],
    len: &mut usize,
) -> LineStatus {
    loop {
        if *len == buf.len() {
            return LineStatus::Invalid;
        }
        let mut byte = [0u8; 1];
        match src.read(&mut byte) {
            Ok(0) => return LineStatus::Invalid,
            Ok(_) => {
                buf[*len] = byte[0];
                *len += 1;
                if byte[0] == b'\n' {
                    return match parse_connect_line(&buf[..*len]) {
                        Some(port) => LineStatus::Port(port),
                        None => LineStatus::Invalid,
                    };
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return LineStatus::Incomplete,
            Err(_) => return LineStatus::Invalid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    #[test]
    fn test_parse_connect_line_valid_returns_port() {
        assert_eq!(parse_connect_line(b"CONNECT 52\n"), Some(52));
        assert_eq!(parse_connect_line(b"CONNECT 4294967295\n"), Some(u32::MAX));
    }

    #[test]
    fn test_parse_connect_line_malformed_returns_none() {
        for bad in [
            &b"CONNECT \n"[..],
            b"CONNECT +5\n",
            b"CONNECT 4294967296\n",
            b"connect 5\n",
            b"CONNECT 5",
            b"CONNECT 5 \n",
            b"LISTEN 5\n",
        ] {
            assert_eq!(parse_connect_line(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn test_pending_client_line_split_over_reads_completes() {
        let (mut a, b) = UnixStream::pair().expect("pair");
        b.set_nonblocking(true).expect("nonblocking");
        let mut client = PendingClient::new(b, Instant::now() + Duration::from_secs(5));
        a.write_all(b"CONN").expect("write");
        assert_eq!(client.read_line(), LineStatus::Incomplete);
        a.write_all(b"ECT 1024\nPAYLOAD").expect("write");
        assert_eq!(client.read_line(), LineStatus::Port(1024));
        // The payload after the newline is still in the socket.
        let mut rest = [0u8; 7];
        client.stream.read_exact(&mut rest).expect("payload kept");
        assert_eq!(&rest, b"PAYLOAD");
    }

    #[test]
    fn test_pending_client_too_long_line_invalid() {
        let (mut a, b) = UnixStream::pair().expect("pair");
        b.set_nonblocking(true).expect("nonblocking");
        let mut client = PendingClient::new(b, Instant::now());
        a.write_all(&[b'A'; 40]).expect("write");
        assert_eq!(client.read_line(), LineStatus::Invalid);
    }

    #[test]
    fn test_pending_client_eof_invalid() {
        let (a, b) = UnixStream::pair().expect("pair");
        b.set_nonblocking(true).expect("nonblocking");
        let mut client = PendingClient::new(b, Instant::now());
        drop(a);
        assert_eq!(client.read_line(), LineStatus::Invalid);
    }

    #[test]
    fn test_bind_listener_stale_socket_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v.sock");
        drop(UnixListener::bind(&path).expect("first bind"));
        assert!(path.exists(), "closing a listener leaves its file");
        let (_l, file) = bind_listener(&path).expect("stale socket is replaced");
        file.remove();
        assert!(!path.exists());
    }

    #[test]
    fn test_bind_listener_live_socket_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v.sock");
        let _live = UnixListener::bind(&path).expect("bind");
        assert!(matches!(
            bind_listener(&path),
            Err(VsockError::CheckStaleSocket(_))
        ));
        assert!(path.exists());
    }

    #[test]
    fn test_bind_listener_regular_file_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v.sock");
        fs::write(&path, b"precious").expect("write");
        assert!(matches!(
            bind_listener(&path),
            Err(VsockError::CheckPathIsSocket(_))
        ));
        assert_eq!(fs::read(&path).expect("still there"), b"precious");
    }

    #[test]
    fn test_bind_listener_missing_dir_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nope").join("v.sock");
        assert!(matches!(
            bind_listener(&path),
            Err(VsockError::BindListener { .. })
        ));
    }

    #[test]
    fn test_connect_nonblocking_no_listener_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(connect_nonblocking(&dir.path().join("absent")).is_err());
        let long = dir.path().join("x".repeat(200));
        assert!(connect_nonblocking(&long).is_err());
    }

    #[test]
    fn test_forward_path_appends_port() {
        assert_eq!(
            forward_path(Path::new("/run/z/v.sock"), 52),
            PathBuf::from("/run/z/v.sock_52")
        );
    }
}
