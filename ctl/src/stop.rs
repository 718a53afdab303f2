//! `zonectl stop ZONE`: power a zone off, forcefully if it does not go.
//!
//! SIGTERM goes to the supervisor, which sends SIGTERM to the VMM (zone-vmm powers the guest
//! off and exits) and records the zone as stopped. Without a live supervisor the VMM gets the
//! SIGTERM directly. Whatever is left after the grace period is killed, and `stop` records the
//! state itself if the supervisor could not.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::cli::ZoneRef;
use crate::zone_dir::ZoneDir;
use crate::zone_proc;
use crate::zone_state::{self, Status, ZoneState};

/// How long a zone gets to power off before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
const KILL_WAIT: Duration = Duration::from_secs(3);

/// Stop a zone: ask it to power off, kill it after 10 seconds.
#[derive(Debug, clap::Args)]
pub struct StopArgs {
    #[command(flatten)]
    pub zone: ZoneRef,
}

pub fn run(args: StopArgs) -> anyhow::Result<()> {
    let state = zone_state::find(&args.zone.state_root, &args.zone.zone)?;
    if !stop_zone(&args.zone.state_root, &state)? {
        eprintln!("zonectl: zone {} is not running", state.id);
    }
    println!("{}", state.id);
    Ok(())
}

/// The zone's recorded processes.
pub fn zone_pids(state: &ZoneState) -> Vec<i32> {
    state
        .supervisor_pid
        .into_iter()
        .chain(state.vmm_pid)
        .collect()
}

/// Stops the zone's processes and makes sure its state no longer says it runs. Returns
/// whether anything was running.
pub fn stop_zone(root: &std::path::Path, state: &ZoneState) -> anyhow::Result<bool> {
    let pids = zone_pids(state);
    let was_running = pids
        .iter()
        .any(|&pid| zone_proc::owned_alive(pid, &state.id));
    if was_running {
        let asked = state
            .supervisor_pid
            .is_some_and(|pid| zone_proc::signal_owned(pid, &state.id, Signal::SIGTERM));
        if !asked {
            if let Some(vmm) = state.vmm_pid {
                zone_proc::signal_owned(vmm, &state.id, Signal::SIGTERM);
            }
        }
        if !zone_proc::wait_gone(&pids, &state.id, STOP_GRACE) {
            tracing::warn!(zone = %state.id, "did not power off in time; killing it");
            eprintln!(
                "zonectl: zone {} did not stop within {STOP_GRACE:?}; killed it",
                state.id
            );
            kill_all(state);
        }
    }
    // The supervisor records the outcome; if it could not (killed, or gone before), do it here.
    let zone = ZoneDir::open(root, &state.id);
    if let Ok(mut current) = ZoneState::load(zone.path()) {
        if current.is_active() {
            current.status = Status::Stopped;
            current.save(zone.path())?;
        }
    }
    Ok(was_running)
}

/// SIGKILLs whatever of the zone's processes is left and waits briefly for them to go.
pub fn kill_all(state: &ZoneState) {
    let pids = zone_pids(state);
    for &pid in &pids {
        zone_proc::signal_owned(pid, &state.id, Signal::SIGKILL);
    }
    if !zone_proc::wait_gone(&pids, &state.id, KILL_WAIT) {
        tracing::warn!(zone = %state.id, ?pids, "zone processes survived SIGKILL");
    }
}
