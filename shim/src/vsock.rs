//! The agent's gRPC client over the VMM's hybrid vsock socket: connect to the zone's Unix
//! socket, send `CONNECT 1025\n`, read `OK <n>\n`, then speak HTTP/2.
//!
//! Duplicated (in short) from zonectl's `ctl/src/agent_client.rs`: host processes do not link
//! each other's internals (DESIGN.md); a shared host crate can take both later.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};
use zone_proto::agent::v1::agent_client::AgentClient;

/// The agent's gRPC port.
pub const API_PORT: u32 = 1025;
/// The vsock device's answer line is short; a longer one is not the device talking.
const MAX_ANSWER: usize = 64;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const RETRY: Duration = Duration::from_millis(200);

pub type Client = AgentClient<Channel>;

#[derive(Debug, Error)]
pub enum VsockError {
    #[error("connecting to {0}")]
    Connect(PathBuf, #[source] std::io::Error),
    #[error("talking to the vsock device")]
    Io(#[source] std::io::Error),
    #[error("the zone closed the connection: nothing listens on the agent's port yet")]
    Closed,
    #[error("the zone's vsock device refused port {API_PORT}: {0:?}")]
    Refused(String),
    #[error("the zone's vsock device did not answer within {HANDSHAKE_TIMEOUT:?}")]
    Timeout,
    #[error("opening the gRPC channel to the agent")]
    Channel(#[source] tonic::transport::Error),
}

/// Connects to the agent of the zone whose vsock socket is `socket`, retrying for up to
/// `patience` while the agent may still be starting its service.
pub async fn connect(socket: &Path, patience: Duration) -> Result<Client, VsockError> {
    let deadline = Instant::now() + patience;
    loop {
        match handshake(socket.to_path_buf()).await {
            Ok(_) => break,
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(e) => tracing::debug!(error = %e, "agent not reachable yet"),
        }
        tokio::time::sleep(RETRY).await;
    }
    let socket = socket.to_path_buf();
    let channel = Endpoint::from_static("http://zone-agent")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                handshake(socket)
                    .await
                    .map(TokioIo::new)
                    .map_err(std::io::Error::other)
            }
        }))
        .await
        .map_err(VsockError::Channel)?;
    Ok(AgentClient::new(channel))
}

/// Opens one connection to the agent's port through the hybrid vsock socket.
async fn handshake(socket: PathBuf) -> Result<UnixStream, VsockError> {
    let connecting = async {
        let mut stream = UnixStream::connect(&socket)
            .await
            .map_err(|e| VsockError::Connect(socket.clone(), e))?;
        stream
            .write_all(format!("CONNECT {API_PORT}\n").as_bytes())
            .await
            .map_err(VsockError::Io)?;
        let answer = read_line(&mut stream).await?;
        check_answer(&answer)?;
        Ok(stream)
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting)
        .await
        .map_err(|_| VsockError::Timeout)?
}

/// Reads one line byte by byte: what follows it is the agent's, not ours to buffer.
async fn read_line(stream: &mut UnixStream) -> Result<String, VsockError> {
    let mut line = Vec::new();
    loop {
        let byte = match stream.read_u8().await {
            Ok(byte) => byte,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(VsockError::Closed)
            }
            Err(e) => return Err(VsockError::Io(e)),
        };
        if byte == b'\n' {
            return Ok(String::from_utf8_lossy(&line).into_owned());
        }
        if line.len() >= MAX_ANSWER {
            return Err(VsockError::Refused(
                String::from_utf8_lossy(&line).into_owned(),
            ));
        }
        line.push(byte);
    }
}

fn check_answer(answer: &str) -> Result<(), VsockError> {
    match answer.strip_prefix("OK ") {
        Some(rest) if rest.parse::<u32>().is_ok() => Ok(()),
        _ => Err(VsockError::Refused(answer.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_check_answer_ok_and_refusals() {
        assert!(check_answer("OK 1073741824").is_ok());
        for bad in ["", "OK", "OK x", "NO 1"] {
            assert!(
                matches!(check_answer(bad), Err(VsockError::Refused(_))),
                "{bad}"
            );
        }
    }
}
