//! A [`TpmTransport`] to a TPM that speaks raw TPM 2.0 commands on a stream socket: `swtpm
//! socket --server type=unixio,path=...` or `--server type=tcp,port=...` (the "server"
//! channel, not the control channel), or any TPM proxy with that framing. A command is written
//! whole; the response is its 10-byte header and as many bytes more as the header's
//! `responseSize` says, 10 to [`MAX_RESPONSE`].
//!
//! One connection per command: swtpm serves one client at a time, so holding a connection open
//! would lock out every other user of the TPM (tpm2-tools, another zonectl). swtpm keeps its
//! transient objects across connections (it has no resource manager), so whoever loads an
//! object must flush it.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use crate::tpm_command::{TpmTransport, MAX_COMMAND, MAX_RESPONSE};

/// How long one command may take before the transport gives up (an ECC key creation takes
/// milliseconds on swtpm and well under a second on a hardware TPM).
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Where the TPM's command socket is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketAddress {
    /// A Unix stream socket.
    Unix(PathBuf),
    /// A TCP address, `host:port` (a name or an IP literal; IPv6 in brackets).
    Tcp(String),
}

impl std::fmt::Display for SocketAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SocketAddress::Unix(p) => write!(f, "unix:{}", p.display()),
            SocketAddress::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// Raw TPM commands over a socket, one connection per command.
#[derive(Debug, Clone)]
pub struct SocketTransport {
    address: SocketAddress,
    timeout: Duration,
}

impl SocketTransport {
    pub fn new(address: SocketAddress) -> Self {
        Self {
            address,
            timeout: TIMEOUT,
        }
    }

    pub fn address(&self) -> &SocketAddress {
        &self.address
    }

    fn connect(&self) -> io::Result<Box<dyn ReadWrite>> {
        let with = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", self.address));
        Ok(match &self.address {
            SocketAddress::Unix(path) => {
                let s = UnixStream::connect(path).map_err(with)?;
                s.set_read_timeout(Some(self.timeout))?;
                s.set_write_timeout(Some(self.timeout))?;
                Box::new(s)
            }
            SocketAddress::Tcp(addr) => {
                let s = TcpStream::connect(addr.as_str()).map_err(with)?;
                s.set_read_timeout(Some(self.timeout))?;
                s.set_write_timeout(Some(self.timeout))?;
                s.set_nodelay(true)?;
                Box::new(s)
            }
        })
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Writes `command` to `stream` and reads one whole response.
fn exchange(stream: &mut dyn ReadWrite, command: &[u8]) -> io::Result<Vec<u8>> {
    if command.len() < 10 || command.len() > MAX_COMMAND {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a TPM command is 10 to {MAX_COMMAND} bytes, not {}",
                command.len()
            ),
        ));
    }
    stream.write_all(command)?;
    stream.flush()?;
    let mut rsp = vec![0u8; 10];
    stream.read_exact(&mut rsp)?;
    let size = u32::from_be_bytes([rsp[2], rsp[3], rsp[4], rsp[5]]) as usize;
    if !(10..=MAX_RESPONSE).contains(&size) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the TPM announced a response of {size} bytes (10 to {MAX_RESPONSE})"),
        ));
    }
    rsp.resize(size, 0);
    stream.read_exact(&mut rsp[10..])?;
    Ok(rsp)
}

impl TpmTransport for SocketTransport {
    fn transmit(&mut self, command: &[u8]) -> io::Result<Vec<u8>> {
        let mut stream = self.connect()?;
        exchange(stream.as_mut(), command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A one-shot server on a Unix socket that answers the first command with `answer`.
    fn server(answer: Vec<u8>) -> (tempfile::TempDir, PathBuf, std::thread::JoinHandle<Vec<u8>>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tpm.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let t = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut cmd = vec![0u8; 12];
            s.read_exact(&mut cmd).expect("command");
            let _ = s.write_all(&answer);
            cmd
        });
        (dir, path, t)
    }

    #[test]
    fn test_socket_transport_unix_whole_response_returned() {
        let rsp = vec![0x80, 0x01, 0, 0, 0, 12, 0, 0, 0, 0, 0xaa, 0xbb];
        let (_dir, path, t) = server(rsp.clone());
        let mut tpm = SocketTransport::new(SocketAddress::Unix(path));
        let got = tpm
            .transmit(&[0x80, 1, 0, 0, 0, 12, 0, 0, 1, 0x44, 0, 0])
            .expect("transmit");
        assert_eq!(got, rsp);
        assert_eq!(
            t.join().expect("server"),
            [0x80, 1, 0, 0, 0, 12, 0, 0, 1, 0x44, 0, 0]
        );
    }

    #[test]
    fn test_socket_transport_oversized_and_short_responses_refused() {
        let cmd = [0x80, 1, 0, 0, 0, 12, 0, 0, 1, 0x44, 0, 0];
        for rsp in [
            vec![0x80, 0x01, 0, 0, 0x10, 1, 0, 0, 0, 0], // 4097 bytes announced
            vec![0x80, 0x01, 0, 0, 0, 9, 0, 0, 0, 0],    // less than a header
            vec![0x80, 0x01, 0, 0, 0, 20, 0, 0, 0, 0],   // announced 20, sent 10
            vec![0x80, 0x01, 0],                         // connection closed mid-header
        ] {
            let (_dir, path, _t) = server(rsp.clone());
            let mut tpm = SocketTransport::new(SocketAddress::Unix(path));
            assert!(tpm.transmit(&cmd).is_err(), "{rsp:02x?}");
        }
    }

    #[test]
    fn test_socket_transport_connect_error_names_the_address() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("absent.sock");
        let mut tpm = SocketTransport::new(SocketAddress::Unix(path.clone()));
        let e = tpm
            .transmit(&[0x80, 1, 0, 0, 0, 12, 0, 0, 1, 0x44, 0, 0])
            .expect_err("no server");
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        assert!(tpm.transmit(&[0; 4]).is_err());
    }
}
