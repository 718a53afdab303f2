//! `zone-agent`: PID 1 in a zone. Prepares the zone, serves `zone.agent.v1` on vsock, tells
//! the host it is ready, and powers the zone off when the host asks or is gone.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::watch;
use zone_agent::containers::Containers;
use zone_agent::identity::{socket, Identity};
use zone_agent::network::Network;
use zone_agent::power::{power, PowerAction};
use zone_agent::reaper::Reaper;
use zone_agent::request_error::report;
use zone_agent::server::{self, VsockIncoming};
use zone_agent::{lifeline, mounts, network, signals, sysinfo, vsock};

fn main() {
    if nix::unistd::getpid().as_raw() != 1 {
        eprintln!(
            "zone-agent: must run as PID 1 inside a zone; it mounts file systems and powers off"
        );
        std::process::exit(1);
    }
    // A panic in PID 1 would panic the kernel: report it and power off instead.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("zone-agent: fatal: {info}");
        power(PowerAction::PowerOff)
    }));
    // Before any thread exists, so that all threads inherit the mask.
    if let Err(e) = signals::block() {
        fatal(&format!("blocking signals: {e}"));
    }
    let mount_errors = mounts::mount_early_filesystems();
    let console = mounts::attach_console_stdio();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .init();
    for error in &mount_errors {
        tracing::warn!(error = %report(error), "early mount");
    }
    if let Err(e) = console.and_then(|()| mounts::set_hostname("zone")) {
        tracing::warn!(error = %report(&e), "zone setup");
    }
    let reaper = Arc::new(Reaper::init());
    if let Err(e) = signals::spawn_handler(Arc::clone(&reaper)) {
        fatal(&format!("starting the signal thread: {e}"));
    }
    let action = match serve(reaper) {
        Ok(action) => action,
        Err(e) => {
            tracing::error!(error = %e, "agent failed");
            PowerAction::PowerOff
        }
    };
    power(action)
}

/// Listens for the host's requests, says ready over the lifeline, and serves until a
/// shutdown: asked for by the host, or the lifeline closed.
fn serve(reaper: Arc<Reaper>) -> Result<PowerAction, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("agent")
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))?;
    let listener = vsock::listen_on(vsock::API_PORT).map_err(|e| report(&e))?;
    let (shutdown, _) = watch::channel(None);
    let containers = Arc::new(Containers::new(reaper));
    runtime.block_on(async {
        let incoming = VsockIncoming::new(listener)
            .map_err(|e| format!("watching the vsock listener: {e}"))?;
        // Containers share the zone's network namespace: their 127.0.0.1 must work with or
        // without ConfigureNetwork.
        if let Err(e) = network::netlink::bring_up_loopback().await {
            tracing::warn!(error = %report(&e), "loopback");
        }
        let ready = sysinfo::agent_ready();
        let stream = lifeline::connect(&ready).map_err(|e| report(&e))?;
        tracing::info!(kernel = %ready.kernel_release, cpus = ready.online_cpus, "host connected");
        let watcher = shutdown.clone();
        std::thread::Builder::new()
            .name("lifeline".into())
            .spawn(move || lifeline::watch_until_closed(stream, &watcher))
            .map_err(|e| format!("starting the lifeline thread: {e}"))?;
        let identity = Identity::new();
        start_workload_api(&identity, &containers);
        let network = Arc::new(Network::zone());
        server::serve_with_identity(containers, network, identity, incoming, shutdown)
            .await
            .map_err(|e| format!("serving the agent API: {e}"))
    })
}

/// Serves the SPIFFE Workload API to the zone's containers. Without it the zone still runs
/// containers, with no identity: a failure is logged and the agent goes on.
fn start_workload_api(identity: &Identity, containers: &Containers) {
    let dir = Path::new(socket::WORKLOAD_API_DIR);
    match socket::start(identity.workload_api(), dir) {
        Ok(_serving) => containers.use_workload_api(dir.to_path_buf()),
        Err(e) => tracing::error!(error = %report(&e), "no SPIFFE Workload API in this zone"),
    }
}

fn fatal(message: &str) -> ! {
    eprintln!("zone-agent: fatal: {message}");
    power(PowerAction::PowerOff)
}
