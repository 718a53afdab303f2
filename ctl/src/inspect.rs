//! `zonectl inspect ZONE`: print the zone's recorded state (`state.json`).

use anyhow::Context;

use crate::cli::ZoneRef;
use crate::zone_state;

/// Print a zone's state as JSON.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub zone: ZoneRef,
}

pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    let state = zone_state::find(&args.zone.state_root, &args.zone.zone)?;
    let text = serde_json::to_string_pretty(&state).context("formatting the state")?;
    println!("{text}");
    Ok(())
}
