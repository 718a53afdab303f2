//! The lifeline: the agent's own connection to the host (port 1024). It carries one
//! `AgentReady` and then only tells, by closing, that the host process running the zone is
//! gone, so that the zone powers off instead of running on unsupervised.

use std::io::{self, Read};
use std::time::Duration;

use tokio::sync::watch;
use zone_proto::agent::v1::AgentReady;
use zone_proto::frame::{write_frame, FrameError};

use crate::power::PowerAction;
use crate::vsock::{self, VsockError};

/// How long to keep trying while the host is not listening yet.
const CONNECT_PATIENCE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum LifelineError {
    #[error(transparent)]
    Connect(#[from] VsockError),
    #[error("sending AgentReady")]
    SendReady(#[source] FrameError),
}

/// Connects to the host and says the agent is ready; call this only once the `Agent`
/// service listens, since the host connects to it as soon as it reads this.
pub fn connect(ready: &AgentReady) -> Result<std::fs::File, LifelineError> {
    let mut stream =
        vsock::connect_with_retry(vsock::HOST_CID, vsock::AGENT_PORT, CONNECT_PATIENCE)?;
    write_frame(&mut stream, ready).map_err(LifelineError::SendReady)?;
    Ok(stream)
}

/// Reads (and ignores) until the host closes the lifeline, then asks for a power-off unless
/// another action was asked for first.
pub fn watch_until_closed(mut stream: impl Read, shutdown: &watch::Sender<Option<PowerAction>>) {
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!(error = %e, "lifeline read failed");
                break;
            }
        }
    }
    tracing::info!("host closed the lifeline");
    shutdown.send_if_modified(|action| {
        if action.is_some() {
            return false;
        }
        *action = Some(PowerAction::PowerOff);
        true
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_watch_until_closed_asks_power_off() {
        let (shutdown, requested) = watch::channel(None);

        watch_until_closed(&b"ignored bytes"[..], &shutdown);

        assert_eq!(*requested.borrow(), Some(PowerAction::PowerOff));
    }

    #[test]
    fn test_watch_until_closed_keeps_earlier_reboot() {
        let (shutdown, requested) = watch::channel(Some(PowerAction::Reboot));

        watch_until_closed(&b""[..], &shutdown);

        assert_eq!(*requested.borrow(), Some(PowerAction::Reboot));
    }
}
