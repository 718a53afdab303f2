//! `zonectl rm [-f] ZONE...`: remove zones' state directories.
//!
//! A zone whose VMM still runs needs `-f`, which stops it first (as `zonectl stop`). Anything
//! left of a broken zone (a supervisor whose VMM was killed) is killed; then the directory goes
//! with its sockets, logs and state.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::network;
use crate::stop;
use crate::zone_dir::{ZoneDir, DEFAULT_STATE_ROOT};
use crate::zone_proc;
use crate::zone_state::{self, Status};

/// Remove zones that are not running (-f: stop them first).
#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// Stop a zone first if it is running.
    #[arg(short = 'f', long)]
    pub force: bool,

    /// The zones' names, ids or unique id prefixes.
    #[arg(value_name = "ZONE", required = true)]
    pub zones: Vec<String>,

    /// Directory holding zones' state directories.
    #[arg(long, value_name = "DIR", env = "ZONES_STATE_ROOT", default_value = DEFAULT_STATE_ROOT)]
    pub state_root: PathBuf,
}

/// Removes each zone; a zone that cannot be removed is reported and the others still go.
pub fn run(args: RmArgs) -> anyhow::Result<()> {
    let mut failed = 0;
    for zone in &args.zones {
        if let Err(e) = remove(&args.state_root, zone, args.force) {
            eprintln!("zonectl: error: {e:#}");
            failed += 1;
        }
    }
    if failed > 0 {
        bail!("{failed} of {} zones not removed", args.zones.len());
    }
    Ok(())
}

fn remove(root: &Path, reference: &str, force: bool) -> anyhow::Result<()> {
    let state = zone_state::find(root, reference)?;
    let vmm_alive = state
        .vmm_pid
        .is_some_and(|pid| zone_proc::owned_alive(pid, &state.id));
    let starting = state.status == Status::Starting
        && state
            .supervisor_pid
            .is_some_and(|pid| zone_proc::owned_alive(pid, &state.id));
    if vmm_alive || starting {
        if !force {
            bail!(
                "zone {} is running: stop it first with `zonectl stop {reference}`, or use \
                 `zonectl rm -f {reference}`",
                state.id
            );
        }
        stop::stop_zone(root, &state)?;
    }
    // A supervisor outliving its VMM, or a VMM that ignored SIGTERM: nothing may stay behind.
    stop::kill_all(&state);
    // The owner undoes the network as the zone ends; after a crash (its supervisor killed)
    // that is left to us. Undoing twice is harmless.
    if let Some(record) = &state.network {
        network::tear_down(record, root, &state.id);
    }
    let zone = ZoneDir::open(root, &state.id);
    zone.remove()
        .with_context(|| format!("removing {}", zone.path().display()))?;
    println!("{}", state.id);
    Ok(())
}
