//! `zone-agent`: PID 1 in a zone. Prepares the zone, connects to the host over vsock, serves
//! `zone.agent.v1` requests, and powers the zone off when the host is done or gone.

use std::io::BufReader;
use std::sync::Arc;
use std::time::Duration;

use zone_agent::power::{power, PowerAction};
use zone_agent::reaper::Reaper;
use zone_agent::runner::report;
use zone_agent::session::{self, SessionEnd};
use zone_agent::{mounts, signals, sysinfo, vsock};

/// How long to keep trying while the host is not listening yet.
const CONNECT_PATIENCE: Duration = Duration::from_secs(10);

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
    let reaper = Arc::new(Reaper::new());
    if let Err(e) = signals::spawn_handler(Arc::clone(&reaper)) {
        fatal(&format!("starting the signal thread: {e}"));
    }
    let exec_reaper = Arc::clone(&reaper);
    if let Err(e) = std::thread::Builder::new()
        .name("exec".into())
        .spawn(move || serve_exec(&exec_reaper))
    {
        tracing::warn!(error = %e, "no exec listener: zonectl exec will not work");
    }
    let action = match serve_host(&reaper) {
        Ok(SessionEnd::Shutdown(action)) => PowerAction::from(action),
        Ok(SessionEnd::Closed) => {
            tracing::info!("host closed the connection");
            PowerAction::PowerOff
        }
        Err(e) => {
            tracing::error!(error = %e, "host connection failed");
            PowerAction::PowerOff
        }
    };
    power(action)
}

fn serve_host(reaper: &Reaper) -> Result<SessionEnd, String> {
    let stream = vsock::connect_with_retry(vsock::HOST_CID, vsock::AGENT_PORT, CONNECT_PATIENCE)
        .map_err(|e| report(&e))?;
    let mut writer = stream
        .try_clone()
        .map_err(|e| format!("cloning the vsock stream: {e}"))?;
    let ready = sysinfo::agent_ready();
    tracing::info!(kernel = %ready.kernel_release, cpus = ready.online_cpus, "connected to host");
    session::send_ready(&mut writer, &ready).map_err(|e| report(&e))?;
    session::serve(&mut BufReader::new(stream), &mut writer, reaper).map_err(|e| report(&e))
}

/// Serves `zonectl exec`: each connection on the exec port runs its commands beside the main
/// one. A shutdown request there is ignored: only the main connection stops the zone.
fn serve_exec(reaper: &Arc<Reaper>) {
    let listener = match vsock::listen_on(vsock::EXEC_PORT) {
        Ok(listener) => listener,
        Err(e) => return tracing::warn!(error = %report(&e), "exec listener"),
    };
    loop {
        let stream = match vsock::accept_one(&listener) {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %report(&e), "exec accept");
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            }
        };
        let reaper = Arc::clone(reaper);
        let spawned = std::thread::Builder::new()
            .name("exec-session".into())
            .spawn(move || {
                let Ok(mut writer) = stream.try_clone() else {
                    return;
                };
                let end = session::serve(&mut BufReader::new(stream), &mut writer, &*reaper);
                tracing::info!(?end, "exec session ended");
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "exec session thread");
        }
    }
}

fn fatal(message: &str) -> ! {
    eprintln!("zone-agent: fatal: {message}");
    power(PowerAction::PowerOff)
}
