//! A stand-in for `zone-vmm` in zonectl's process-level tests: it takes the VMM's flags and,
//! instead of booting a zone, plays both the VMM's hybrid vsock device and the zone agent on
//! the host: it sends `AgentReady` over `<vsock>_1024`, answers `CONNECT 1025` on `<vsock>`,
//! and serves the agent's real gRPC service there, running commands on the host.
//!
//! `FAKE_VMM_MODE`: `agent` (default) serves until asked to shut down, then exits 0;
//! `fail` writes to the console log and stderr and exits 1; `hang` never connects.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use zone_agent::containers::Containers;
use zone_agent::reaper::Reaper;
use zone_agent::{lifeline, server};
use zone_proto::agent::v1::AgentReady;
use zone_proto::frame::write_frame;

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let vsock = flag(&args, "--vsock").context("--vsock missing")?;
    if let Some(log) = flag(&args, "--serial-log") {
        std::fs::write(&log, "fake console line 1\nfake console line 2\n")?;
    }
    match std::env::var("FAKE_VMM_MODE").as_deref() {
        Ok("fail") => {
            eprintln!("fake-vmm: cannot open /dev/kvm");
            std::process::exit(1)
        }
        Ok("hang") => loop {
            std::thread::sleep(Duration::from_secs(60));
        },
        _ => {}
    }
    let listener = UnixListener::bind(&vsock).with_context(|| format!("binding {vsock}"))?;
    let (connections, incoming) = mpsc::channel(4);
    tokio::spawn(accept_hybrid_vsock(listener, connections));

    let mut stream = std::os::unix::net::UnixStream::connect(format!("{vsock}_1024"))
        .context("connecting to zonectl")?;
    let ready = AgentReady {
        agent_version: "fake".into(),
        kernel_release: "0.0".into(),
        online_cpus: 1,
    };
    write_frame(&mut stream, &ready)?;
    let (shutdown, _) = watch::channel(None);
    let watcher = shutdown.clone();
    std::thread::spawn(move || lifeline::watch_until_closed(stream, &watcher));

    let containers = Arc::new(Containers::new(Arc::new(Reaper::per_child())));
    let served = server::serve(containers, ReceiverStream::new(incoming), shutdown).await;
    let _ = std::fs::remove_file(&vsock);
    served.context("serving the agent")?;
    Ok(())
}

/// Answers each connection's `CONNECT <port>\n` with `OK <port>\n`, as the VMM does, and
/// hands the connection to the agent's server.
async fn accept_hybrid_vsock(
    listener: UnixListener,
    connections: mpsc::Sender<std::io::Result<UnixStream>>,
) {
    while let Ok((mut stream, _)) = listener.accept().await {
        let mut line = Vec::new();
        while let Ok(byte) = stream.read_u8().await {
            if byte == b'\n' {
                break;
            }
            line.push(byte);
        }
        let Some(port) = line.strip_prefix(b"CONNECT ") else {
            continue;
        };
        let answer = format!("OK {}\n", String::from_utf8_lossy(port));
        if stream.write_all(answer.as_bytes()).await.is_ok()
            && connections.send(Ok(stream)).await.is_err()
        {
            return;
        }
    }
}
