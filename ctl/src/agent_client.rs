//! The host's gRPC client of a zone's agent (`zone.agent.v1.Agent`), over the VMM's hybrid
//! vsock: connect to the zone's Unix socket, ask for the agent's port with `CONNECT <port>\n`,
//! read `OK <n>\n`, and from there speak HTTP/2.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hyper_util::rt::TokioIo;
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

/// A gRPC status as an operator reads it: the agent's message, and the code when that says
/// more than the message (tonic's own formatting lists headers).
pub fn describe(status: &tonic::Status) -> String {
    match status.code() {
        tonic::Code::Unknown => status.message().to_string(),
        code => format!("{} ({code:?})", status.message()),
    }
}

/// The runtime zonectl's agent calls run on: one thread, as zonectl talks to one zone.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Calls the agent until it answers other than "not yet", for up to `patience`: a zone that
/// just started may not have created its container (NOT_FOUND) or started its first process
/// (UNAVAILABLE) yet.
pub async fn while_starting<T, F, Fut>(patience: Duration, mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let deadline = Instant::now() + patience;
    loop {
        match call().await {
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::NotFound | tonic::Code::Unavailable
                ) && Instant::now() < deadline =>
            {
                tokio::time::sleep(RETRY).await;
            }
            answer => return answer,
        }
    }
}

/// Connects to the agent of the zone whose vsock socket is `socket`.
pub async fn connect(socket: &Path) -> anyhow::Result<Client> {
    // Fail here, with the reason, rather than on the first call.
    handshake(socket.to_path_buf(), API_PORT).await?;
    let socket = socket.to_path_buf();
    let channel = Endpoint::from_static("http://zone-agent")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                handshake(socket, API_PORT)
                    .await
                    .map(TokioIo::new)
                    .map_err(std::io::Error::other)
            }
        }))
        .await
        .context("connecting to the zone agent")?;
    Ok(AgentClient::new(channel))
}

/// [`connect`], retrying for up to `patience` while the zone may still be booting.
pub async fn connect_retrying(socket: &Path, patience: Duration) -> anyhow::Result<Client> {
    let deadline = Instant::now() + patience;
    loop {
        match connect(socket).await {
            Ok(client) => return Ok(client),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(e) => tracing::debug!(error = %format!("{e:#}"), "agent not reachable yet"),
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Opens one connection to `port` through the VMM's hybrid vsock socket.
async fn handshake(socket: PathBuf, port: u32) -> anyhow::Result<UnixStream> {
    let connecting = async {
        let mut stream = UnixStream::connect(&socket)
            .await
            .with_context(|| format!("connecting to {}", socket.display()))?;
        stream
            .write_all(format!("CONNECT {port}\n").as_bytes())
            .await
            .context("asking the vsock device for the agent")?;
        let answer = read_line(&mut stream).await?;
        check_answer(&answer, port)?;
        Ok(stream)
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting)
        .await
        .with_context(|| {
            format!("the zone's vsock device did not answer within {HANDSHAKE_TIMEOUT:?}")
        })?
}

/// Reads one line byte by byte: what follows it is the agent's, not ours to buffer.
async fn read_line(stream: &mut UnixStream) -> anyhow::Result<String> {
    let mut line = Vec::new();
    loop {
        let byte = match stream.read_u8().await {
            Ok(byte) => byte,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                bail!("the zone closed the connection: nothing listens on the agent's port yet")
            }
            Err(e) => return Err(e).context("reading the vsock answer"),
        };
        if byte == b'\n' {
            return Ok(String::from_utf8_lossy(&line).into_owned());
        }
        if line.len() >= MAX_ANSWER {
            bail!("the vsock answer is longer than {MAX_ANSWER} bytes: not a zone socket?");
        }
        line.push(byte);
    }
}

fn check_answer(answer: &str, port: u32) -> anyhow::Result<()> {
    match answer.strip_prefix("OK ") {
        Some(rest) if rest.parse::<u32>().is_ok() => Ok(()),
        _ => bail!("the zone's vsock device refused port {port}: {answer:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_check_answer_ok_and_refusals() {
        assert!(check_answer("OK 1073741824", API_PORT).is_ok());
        for bad in ["", "OK", "OK x", "NO 1", "ok 5"] {
            let err = check_answer(bad, API_PORT).unwrap_err().to_string();
            assert!(err.contains("refused port 1025"), "{err}");
        }
    }

    #[tokio::test]
    async fn test_handshake_closed_before_answer_says_nothing_listens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vsock.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 16];
            let _ = stream.read(&mut buf).await;
        });

        let err = handshake(path, API_PORT).await.unwrap_err();

        assert!(format!("{err:#}").contains("nothing listens"), "{err:#}");
    }

    #[tokio::test]
    async fn test_handshake_endless_answer_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vsock.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let _ = stream.write_all(&[b'x'; 200]).await;
        });

        let err = handshake(path, API_PORT).await.unwrap_err();

        assert!(format!("{err:#}").contains("longer than"), "{err:#}");
    }
}
