//! `zonectl exec ZONE CMD...`: another process in a running zone's container, attached to
//! this terminal like `run`: the agent's ExecProcess, then StartProcess with the output
//! streamed back, stdin streamed in (`-i`) and a terminal (`-t`). The process gets the
//! container's environment, with `-e` on top.

use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use zone_proto::agent::v1::{ExecProcessRequest, ProcessSpec};

use crate::agent_client;
use crate::attach::{self, Attach, Sink};
use crate::cli::ZoneRef;
use crate::run::CONTAINER_ID;
use crate::zone_dir::ZoneDir;
use crate::zone_state;

/// How long to wait for a zone that is still booting or starting its command.
pub const BOOT_PATIENCE: Duration = Duration::from_secs(60);

/// Run a command in a running zone (in its container, as the main command runs).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  zonectl run -d --name web busybox sleep 1000\n  \
                        zonectl exec web sh -c 'hostname; ls /'"
)]
pub struct ExecArgs {
    #[command(flatten)]
    pub zone: ZoneRef,
    /// Send zonectl's standard input to the command.
    #[arg(short = 'i', long = "interactive")]
    pub interactive: bool,
    /// Give the command a terminal.
    #[arg(short = 't', long = "tty")]
    pub tty: bool,
    /// Set an environment variable (repeatable).
    #[arg(short = 'e', long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Working directory (absolute).
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// Run as USER[:GROUP].
    #[arg(short = 'u', long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// The command and its arguments.
    #[arg(
        value_name = "CMD",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

pub fn run(args: ExecArgs) -> anyhow::Result<i32> {
    let state = zone_state::find(&args.zone.state_root, &args.zone.zone)?;
    if !state.is_active() {
        bail!(
            "zone {} is not running ({}): exec needs a running zone",
            state.id,
            state.status_text()
        );
    }
    let zone = ZoneDir::open(&args.zone.state_root, &state.id);
    let exec_id = new_exec_id();
    let process = ProcessSpec {
        args: args.command,
        env: state.env.iter().chain(&args.env).cloned().collect(),
        cwd: args.workdir.unwrap_or_default(),
        user: args.user.unwrap_or_default(),
        terminal: args.tty,
        stdin: args.interactive,
        ..Default::default()
    };
    let attach = Attach {
        stdin: args.interactive,
        tty: args.tty,
        sink: Sink::Terminal,
    };
    let runtime = agent_client::runtime()?;
    let end = runtime.block_on(async {
        let client = agent_client::connect_retrying(&zone.vsock_socket(), BOOT_PATIENCE)
            .await
            .with_context(|| {
                format!(
                    "cannot reach the agent of zone {} (is it still starting?)",
                    state.id
                )
            })?;
        agent_client::while_starting(BOOT_PATIENCE, || {
            let mut client = client.clone();
            let request = ExecProcessRequest {
                container_id: CONTAINER_ID.to_string(),
                exec_id: exec_id.clone(),
                process: Some(process.clone()),
            };
            async move { client.exec_process(request).await }
        })
        .await
        .map_err(|status| {
            anyhow::anyhow!("zone {}: {}", state.id, agent_client::describe(&status))
        })?;
        attach::start_attached(&client, CONTAINER_ID, &exec_id, &attach).await
    })?;
    if !end.error.is_empty() {
        eprintln!("zonectl: {}", end.error);
    }
    Ok(end.status())
}

/// An exec id no other zonectl uses at the same time: this process's id and the time.
fn new_exec_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("exec-{}-{nanos}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_new_exec_id_is_a_valid_agent_id() {
        let id = new_exec_id();
        assert!(id.len() <= 64);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')));
    }
}
