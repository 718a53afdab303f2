//! `zonectl rm [-f] ZONE`: remove a zone's state directory.
//!
//! A zone whose VMM still runs needs `-f`, which stops it first (as `zonectl stop`). Anything
//! left of a broken zone (a supervisor whose VMM was killed) is killed; then the directory goes
//! with its sockets, logs and state.

use anyhow::{bail, Context};

use crate::cli::ZoneRef;
use crate::stop;
use crate::zone_dir::ZoneDir;
use crate::zone_proc;
use crate::zone_state::{self, Status};

/// Remove a zone that is not running (-f: stop it first).
#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// Stop the zone first if it is running.
    #[arg(short = 'f', long)]
    pub force: bool,

    #[command(flatten)]
    pub zone: ZoneRef,
}

pub fn run(args: RmArgs) -> anyhow::Result<()> {
    let root = &args.zone.state_root;
    let state = zone_state::find(root, &args.zone.zone)?;
    let vmm_alive = state
        .vmm_pid
        .is_some_and(|pid| zone_proc::owned_alive(pid, &state.id));
    let starting = state.status == Status::Starting
        && state
            .supervisor_pid
            .is_some_and(|pid| zone_proc::owned_alive(pid, &state.id));
    if vmm_alive || starting {
        if !args.force {
            bail!(
                "zone {} is running: stop it first with `zonectl stop {}`, or use `zonectl rm -f {}`",
                state.id,
                args.zone.zone,
                args.zone.zone
            );
        }
        stop::stop_zone(root, &state)?;
    }
    // A supervisor outliving its VMM, or a VMM that ignored SIGTERM: nothing may stay behind.
    stop::kill_all(&state);
    let zone = ZoneDir::open(root, &state.id);
    zone.remove()
        .with_context(|| format!("removing {}", zone.path().display()))?;
    println!("{}", state.id);
    Ok(())
}
