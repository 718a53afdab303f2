//! `zonectl kill [-s SIGNAL] ZONE`: signal a running zone's main command, through its agent.
//! The zone ends when that command does, as with `docker kill`.

use std::time::Duration;

use anyhow::{bail, Context};
use nix::sys::signal::Signal;
use zone_proto::agent::v1::SignalProcessRequest;

use crate::agent_client;
use crate::cli::ZoneRef;
use crate::exec::BOOT_PATIENCE;
use crate::run::CONTAINER_ID;
use crate::zone_dir::ZoneDir;
use crate::zone_state;

/// How long to wait for a starting zone to start its command.
const COMMAND_PATIENCE: Duration = Duration::from_secs(30);

/// Send a signal to a running zone's main command.
#[derive(Debug, clap::Args)]
pub struct KillArgs {
    #[command(flatten)]
    pub zone: ZoneRef,
    /// The signal, by name (KILL, SIGTERM, hup...) or number.
    #[arg(short = 's', long, default_value = "KILL", value_parser = parse_signal)]
    pub signal: Signal,
}

/// Parses `TERM`, `SIGTERM`, `term` or `15`.
pub fn parse_signal(text: &str) -> Result<Signal, String> {
    if let Ok(n) = text.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| format!("{n} is not a signal number"));
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>()
        .map_err(|_| format!("unknown signal {text:?} (try TERM, KILL, HUP, INT or a number)"))
}

pub fn run(args: KillArgs) -> anyhow::Result<()> {
    let state = zone_state::find(&args.zone.state_root, &args.zone.zone)?;
    if !state.is_active() {
        bail!("zone {} is not running ({})", state.id, state.status_text());
    }
    let zone = ZoneDir::open(&args.zone.state_root, &state.id);
    let runtime = agent_client::runtime()?;
    runtime.block_on(async {
        let client = agent_client::connect_retrying(&zone.vsock_socket(), BOOT_PATIENCE)
            .await
            .with_context(|| format!("cannot reach the agent of zone {}", state.id))?;
        let request = SignalProcessRequest {
            container_id: CONTAINER_ID.to_string(),
            exec_id: String::new(),
            signal: args.signal as i32,
            all: false,
        };
        agent_client::while_starting(COMMAND_PATIENCE, || {
            let (mut client, request) = (client.clone(), request.clone());
            async move { client.signal_process(request).await }
        })
        .await
        .map_err(|status| {
            anyhow::anyhow!("zone {}: {}", state.id, agent_client::describe(&status))
        })?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_signal_names_and_numbers() {
        assert_eq!(parse_signal("TERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("sigkill"), Ok(Signal::SIGKILL));
        assert_eq!(parse_signal("1"), Ok(Signal::SIGHUP));
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("99").is_err());
    }
}
