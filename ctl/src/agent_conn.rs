//! The host side of the zone agent connection (`zone.agent.v1`, see `agent.proto`).
//!
//! The agent opens a vsock connection to host port 1024; the VMM hands it to the Unix
//! listener at `<vsock socket>_1024`. On it: agent -> `AgentReady`, then host ->
//! `AgentRequest` frames, each `run` answered by one `RunCommandResponse`.

use std::io::{self, BufReader};
use std::os::unix::net::{UnixListener, UnixStream};
use std::thread;
use std::time::{Duration, Instant};

use zone_proto::agent::v1::shutdown_request::Action;
use zone_proto::agent::v1::{
    agent_request, AgentReady, AgentRequest, RunCommandRequest, RunCommandResponse,
    ShutdownRequest, SignalRequest, SignalResponse,
};
use zone_proto::frame::{read_frame, write_frame, FrameError};

/// The host vsock port the agent connects to.
pub const AGENT_PORT: u32 = 1024;

const ACCEPT_POLL: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum AgentConnError {
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
    #[error("sending to the agent")]
    Send(#[source] FrameError),
}

/// An established connection to a zone's agent.
#[derive(Debug)]
pub struct AgentConn {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl AgentConn {
    /// Waits up to `timeout` for the agent to connect. `check` runs between polls; returning
    /// `Some(reason)` gives up at once (the VMM exited, the user interrupted).
    pub fn accept(
        listener: &UnixListener,
        timeout: Duration,
        mut check: impl FnMut() -> Option<String>,
    ) -> Result<Self, AgentConnError> {
        listener
            .set_nonblocking(true)
            .map_err(AgentConnError::Accept)?;
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(AgentConnError::Accept(e)),
            }
            if let Some(reason) = check() {
                return Err(AgentConnError::Aborted(reason));
            }
            if Instant::now() >= deadline {
                return Err(AgentConnError::AcceptTimeout(timeout));
            }
            thread::sleep(ACCEPT_POLL);
        };
        Self::from_stream(stream)
    }

    /// Wraps an already connected stream.
    pub fn from_stream(stream: UnixStream) -> Result<Self, AgentConnError> {
        stream
            .set_nonblocking(false)
            .map_err(AgentConnError::Setup)?;
        let writer = stream.try_clone().map_err(AgentConnError::Setup)?;
        Ok(AgentConn {
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Reads the agent's first message, waiting at most `timeout`.
    pub fn read_ready(&mut self, timeout: Duration) -> Result<AgentReady, AgentConnError> {
        self.set_read_timeout(Some(timeout))?;
        let ready = self.receive::<AgentReady>().map_err(|e| match e {
            AgentConnError::Receive(FrameError::Read(io))
                if matches!(
                    io.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                AgentConnError::ReadTimeout(timeout)
            }
            other => other,
        });
        self.set_read_timeout(None)?;
        ready
    }

    /// Runs a command in the zone and waits, without a time limit, for its result.
    pub fn run(
        &mut self,
        request: RunCommandRequest,
    ) -> Result<RunCommandResponse, AgentConnError> {
        self.send(agent_request::Kind::Run(request))?;
        self.receive()
    }

    /// Sends `signal` to the zone's main command; the agent says whether it could.
    pub fn signal(&mut self, signal: i32) -> Result<SignalResponse, AgentConnError> {
        self.send(agent_request::Kind::Signal(SignalRequest { signal }))?;
        self.receive()
    }

    /// Asks the agent to stop the zone. The agent does not answer.
    pub fn shutdown(&mut self, action: Action) -> Result<(), AgentConnError> {
        self.send(agent_request::Kind::Shutdown(ShutdownRequest {
            action: action as i32,
        }))
    }

    fn send(&mut self, kind: agent_request::Kind) -> Result<(), AgentConnError> {
        write_frame(&mut self.writer, &AgentRequest { kind: Some(kind) })
            .map_err(AgentConnError::Send)
    }

    fn receive<M: prost::Message + Default>(&mut self) -> Result<M, AgentConnError> {
        read_frame(&mut self.reader)
            .map_err(AgentConnError::Receive)?
            .ok_or(AgentConnError::Closed)
    }

    fn set_read_timeout(&self, timeout: Option<Duration>) -> Result<(), AgentConnError> {
        self.reader
            .get_ref()
            .set_read_timeout(timeout)
            .map_err(AgentConnError::Setup)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_accept_check_fails_aborted() {
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(dir.path().join("sock")).unwrap();

        let err = AgentConn::accept(&listener, Duration::from_secs(5), || {
            Some("vmm exited".into())
        })
        .unwrap_err();

        assert!(matches!(err, AgentConnError::Aborted(reason) if reason == "vmm exited"));
    }

    #[test]
    fn test_accept_nobody_connects_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(dir.path().join("sock")).unwrap();

        let err = AgentConn::accept(&listener, Duration::from_millis(50), || None).unwrap_err();

        assert!(matches!(err, AgentConnError::AcceptTimeout(_)));
    }

    #[test]
    fn test_read_ready_silent_agent_timeout() {
        let (host, _agent) = UnixStream::pair().unwrap();
        let mut conn = AgentConn::from_stream(host).unwrap();

        let err = conn.read_ready(Duration::from_millis(50)).unwrap_err();

        assert!(matches!(err, AgentConnError::ReadTimeout(_)), "{err:?}");
    }

    #[test]
    fn test_run_agent_hangs_up_closed() {
        let (host, agent) = UnixStream::pair().unwrap();
        let mut conn = AgentConn::from_stream(host).unwrap();
        let agent = thread::spawn(move || {
            let mut reader = &agent;
            let _: Option<AgentRequest> = read_frame(&mut reader).unwrap();
        });

        let err = conn.run(RunCommandRequest::default()).unwrap_err();

        agent.join().unwrap();
        assert!(matches!(err, AgentConnError::Closed), "{err:?}");
    }
}
