//! `zonectl logs ZONE`: the command's output of a detached zone.
//!
//! The agent returns a command's output when it ends, so the logs appear then; `-f` (follow)
//! is not offered yet.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use anyhow::Context;

use crate::cli::ZoneRef;
use crate::zone_dir::ZoneDir;
use crate::zone_state::{self, Status};

/// Print a detached zone's stdout and stderr (saved when its command ends).
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub zone: ZoneRef,
}

pub fn run(args: LogsArgs) -> anyhow::Result<()> {
    let state = zone_state::find(&args.zone.state_root, &args.zone.zone)?;
    let zone = ZoneDir::open(&args.zone.state_root, &state.id);
    let stdout = read_log(&zone.stdout_log())?;
    let stderr = read_log(&zone.stderr_log())?;
    io::stdout()
        .write_all(&stdout)
        .and_then(|()| io::stdout().flush())
        .context("writing stdout")?;
    io::stderr().write_all(&stderr).context("writing stderr")?;
    if state.is_active() {
        eprintln!(
            "zonectl: zone {} is still running; its output is saved when its command ends",
            state.id
        );
    } else if let (Status::Failed | Status::VmmDied, Some(error)) = (state.status, &state.error) {
        eprintln!("zonectl: zone {} failed: {error}", state.id);
    }
    Ok(())
}

fn read_log(path: &Path) -> anyhow::Result<Vec<u8>> {
    match fs::read(path) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}
