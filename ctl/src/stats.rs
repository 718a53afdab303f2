//! `zonectl stats ZONE`: CPU time, memory and process count of a running zone's container,
//! from its cgroup in the zone (the agent's ContainerStats).

use anyhow::{bail, Context};
use zone_proto::agent::v1::ContainerStatsRequest;

use crate::agent_client;
use crate::cli::ZoneRef;
use crate::exec::BOOT_PATIENCE;
use crate::run::CONTAINER_ID;
use crate::zone_dir::ZoneDir;
use crate::zone_state;

/// Show a running zone's container resource use.
#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub zone: ZoneRef,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: StatsArgs) -> anyhow::Result<()> {
    let state = zone_state::find(&args.zone.state_root, &args.zone.zone)?;
    if !state.is_active() {
        bail!("zone {} is not running ({})", state.id, state.status_text());
    }
    let zone = ZoneDir::open(&args.zone.state_root, &state.id);
    let runtime = agent_client::runtime()?;
    let stats = runtime.block_on(async {
        let client = agent_client::connect_retrying(&zone.vsock_socket(), BOOT_PATIENCE)
            .await
            .with_context(|| format!("cannot reach the agent of zone {}", state.id))?;
        let request = ContainerStatsRequest {
            container_id: CONTAINER_ID.to_string(),
        };
        agent_client::while_starting(BOOT_PATIENCE, || {
            let (mut client, request) = (client.clone(), request.clone());
            async move { client.container_stats(request).await }
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| anyhow::anyhow!("zone {}: {}", state.id, agent_client::describe(&status)))
    })?;
    if args.json {
        let json = serde_json::json!({
            "zone": state.id,
            "cpu_usage_usec": stats.cpu_usage_usec,
            "cpu_user_usec": stats.cpu_user_usec,
            "cpu_system_usec": stats.cpu_system_usec,
            "memory_current_bytes": stats.memory_current_bytes,
            "memory_limit_bytes": stats.memory_limit_bytes,
            "memory_anon_bytes": stats.memory_anon_bytes,
            "memory_file_bytes": stats.memory_file_bytes,
            "pids": stats.pids_current,
        });
        println!("{json}");
        return Ok(());
    }
    let limit = match stats.memory_limit_bytes {
        0 => "no limit".to_string(),
        bytes => mib(bytes),
    };
    println!("ZONE           CPU        MEMORY                 PIDS");
    println!(
        "{:<14} {:<10} {:<22} {}",
        state.id,
        format!("{:.2}s", stats.cpu_usage_usec as f64 / 1e6),
        format!("{} / {limit}", mib(stats.memory_current_bytes)),
        stats.pids_current
    );
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{:.1}MiB", bytes as f64 / (1u64 << 20) as f64)
}
