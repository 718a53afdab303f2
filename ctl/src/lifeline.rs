//! The host end of the agent's lifeline (see `agent.proto`).
//!
//! The agent opens a vsock connection to host port 1024 once its gRPC service listens; the VMM
//! hands it to the Unix listener at `<vsock socket>_1024`. On it the agent sends one
//! `AgentReady` and nothing more; the host keeps it open while the zone should run, and the
//! agent powers the zone off when it closes.

use std::io::{self, BufReader};
use std::os::unix::net::{UnixListener, UnixStream};
use std::thread;
use std::time::{Duration, Instant};

use zone_proto::agent::v1::AgentReady;
use zone_proto::frame::{read_frame, FrameError};

/// The host vsock port the agent connects to.
pub const AGENT_PORT: u32 = 1024;

const ACCEPT_POLL: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum LifelineError {
    #[error("accepting the agent connection")]
    Accept(#[source] io::Error),
    #[error("the agent did not connect within {0:?}")]
    AcceptTimeout(Duration),
    #[error("gave up waiting for the agent: {0}")]
    Aborted(String),
    #[error("setting up the agent connection")]
    Setup(#[source] io::Error),
    #[error("the agent sent nothing within {0:?}")]
    ReadTimeout(Duration),
    #[error("the agent closed the connection")]
    Closed,
    #[error("receiving from the agent")]
    Receive(#[source] FrameError),
}

/// An agent's lifeline; dropping it tells the agent to power the zone off.
#[derive(Debug)]
pub struct Lifeline {
    reader: BufReader<UnixStream>,
}

impl Lifeline {
    /// Waits up to `timeout` for the agent to connect. `check` runs between polls; returning
    /// `Some(reason)` gives up at once (the VMM exited, the user interrupted).
    pub fn accept(
        listener: &UnixListener,
        timeout: Duration,
        mut check: impl FnMut() -> Option<String>,
    ) -> Result<Self, LifelineError> {
        listener
            .set_nonblocking(true)
            .map_err(LifelineError::Accept)?;
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(LifelineError::Accept(e)),
            }
            if let Some(reason) = check() {
                return Err(LifelineError::Aborted(reason));
            }
            if Instant::now() >= deadline {
                return Err(LifelineError::AcceptTimeout(timeout));
            }
            thread::sleep(ACCEPT_POLL);
        };
        Self::from_stream(stream)
    }

    /// Wraps an already connected stream.
    pub fn from_stream(stream: UnixStream) -> Result<Self, LifelineError> {
        stream
            .set_nonblocking(false)
            .map_err(LifelineError::Setup)?;
        Ok(Lifeline {
            reader: BufReader::new(stream),
        })
    }

    /// Reads the agent's first message, waiting at most `timeout`.
    pub fn read_ready(&mut self, timeout: Duration) -> Result<AgentReady, LifelineError> {
        self.set_read_timeout(Some(timeout))?;
        let ready = self.receive::<AgentReady>().map_err(|e| match e {
            LifelineError::Receive(FrameError::Read(io))
                if matches!(
                    io.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                LifelineError::ReadTimeout(timeout)
            }
            other => other,
        });
        self.set_read_timeout(None)?;
        ready
    }

    fn receive<M: prost::Message + Default>(&mut self) -> Result<M, LifelineError> {
        read_frame(&mut self.reader)
            .map_err(LifelineError::Receive)?
            .ok_or(LifelineError::Closed)
    }

    fn set_read_timeout(&self, timeout: Option<Duration>) -> Result<(), LifelineError> {
        self.reader
            .get_ref()
            .set_read_timeout(timeout)
            .map_err(LifelineError::Setup)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_accept_check_fails_aborted() {
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(dir.path().join("sock")).unwrap();

        let err = Lifeline::accept(&listener, Duration::from_secs(5), || {
            Some("vmm exited".into())
        })
        .unwrap_err();

        assert!(matches!(err, LifelineError::Aborted(reason) if reason == "vmm exited"));
    }

    #[test]
    fn test_accept_nobody_connects_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(dir.path().join("sock")).unwrap();

        let err = Lifeline::accept(&listener, Duration::from_millis(50), || None).unwrap_err();

        assert!(matches!(err, LifelineError::AcceptTimeout(_)));
    }

    #[test]
    fn test_read_ready_silent_agent_timeout() {
        let (host, _agent) = UnixStream::pair().unwrap();
        let mut conn = Lifeline::from_stream(host).unwrap();

        let err = conn.read_ready(Duration::from_millis(50)).unwrap_err();

        assert!(matches!(err, LifelineError::ReadTimeout(_)), "{err:?}");
    }
}
