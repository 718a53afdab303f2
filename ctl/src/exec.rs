//! `zonectl exec ZONE CMD...`: run another command in a running zone, beside its main one.
//!
//! The agent listens on vsock port [`EXEC_PORT`]; we reach it through the zone's hybrid vsock
//! socket (`CONNECT <port>\n`, answered `OK <host port>\n`) and send one `RunCommandRequest`
//! in the zone's container root file system, if it has one.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::{bail, Context};
use zone_proto::agent::v1::{ContainerRootfs, RunCommandRequest};

use crate::agent_conn::AgentConn;
use crate::cli::ZoneRef;
use crate::run::{exit_code, print_output, read_stdin, ROOTFS_DEVICE};
use crate::zone_dir::ZoneDir;
use crate::zone_state;

/// The agent's port for further commands.
pub const EXEC_PORT: u32 = 1025;
/// How long a zone that is still booting may take until its agent listens.
const BOOT_PATIENCE: Duration = Duration::from_secs(60);
/// How long the zone's vsock device may take to reach the agent.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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
    let stream = connect_retrying(&zone.vsock_socket(), EXEC_PORT).with_context(|| {
        format!(
            "cannot reach the agent of zone {} (is it still starting?)",
            state.id
        )
    })?;
    let stdin = if args.interactive {
        read_stdin()?
    } else {
        Vec::new()
    };
    let request = RunCommandRequest {
        args: args.command,
        env: args.env,
        stdin,
        cwd: args.workdir.unwrap_or_default(),
        rootfs: state.rootfs_fstype.map(|fstype| ContainerRootfs {
            device: ROOTFS_DEVICE.to_string(),
            fstype,
        }),
        user: args.user.unwrap_or_default(),
        hostname: String::new(),
        tty: args.tty,
    };
    let response = AgentConn::from_stream(stream)?.run(request)?;
    print_output(&response)?;
    Ok(exit_code(&response))
}

/// Connects to guest `port`, retrying while the zone boots and its agent is not listening yet.
pub fn connect_retrying(socket: &std::path::Path, port: u32) -> anyhow::Result<UnixStream> {
    let deadline = std::time::Instant::now() + BOOT_PATIENCE;
    loop {
        match connect(socket, port) {
            Ok(stream) => return Ok(stream),
            Err(e) if std::time::Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Opens a stream to guest `port` through the zone's hybrid vsock socket.
fn connect(socket: &std::path::Path, port: u32) -> anyhow::Result<UnixStream> {
    let mut stream = UnixStream::connect(socket)
        .with_context(|| format!("connecting to {}", socket.display()))?;
    stream.set_read_timeout(Some(CONNECT_TIMEOUT))?;
    stream.write_all(format!("CONNECT {port}\n").as_bytes())?;
    let mut line = String::new();
    // Read the answer byte by byte: what follows it belongs to the agent's stream.
    let mut reader = BufReader::with_capacity(1, &stream);
    reader
        .read_line(&mut line)
        .context("reading the vsock answer")?;
    if !line.starts_with("OK ") {
        bail!(
            "the zone's vsock device refused port {port}: {:?}",
            line.trim()
        );
    }
    stream.set_read_timeout(None)?;
    Ok(stream)
}
