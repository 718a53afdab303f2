//! The shim's process life: `start` (find or spawn the pod's shim daemon and print its
//! address), the daemon itself (serve the task API on its socket until Shutdown), and
//! `delete` (clean up after a shim that is gone and print a `DeleteResponse`).
//!
//! One daemon serves a pod: its socket is `unix:///run/containerd/s/<sha256 of
//! "<containerd address>/<namespace>/<pod id>">`, so a pod's later containers find it. Every
//! bundle gets an `address` file, which is how containerd 1.6/1.7 reconnect after a restart.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use anyhow::{bail, Context};
use containerd_shim_protos::api::DeleteResponse;
use containerd_shim_protos::protobuf::Message as _;
use containerd_shim_protos::shim_async::create_task;
use containerd_shim_protos::ttrpc::asynchronous::transport::Listener;
use containerd_shim_protos::ttrpc::asynchronous::Server;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::args::Flags;
use crate::bootstrap;
use crate::events::Events;
use crate::process::Exit;
use crate::service::ZoneTasks;
use crate::settings::{Settings, DEFAULT_DISK_ROOT, DEFAULT_STATE_ROOT};
use crate::spec::Spec;

/// Where shims' sockets live (containerd's own convention).
const SOCKET_DIR: &str = "/run/containerd/s";
/// Exit status `delete` reports for a task whose shim is gone (killed).
const EXIT_KILLED: u32 = 128 + 9;

/// The pod (group) a bundle's container belongs to.
fn group_of(bundle: &Path, id: &str) -> String {
    Spec::load(bundle)
        .map(|spec| spec.group_id(id))
        .unwrap_or_else(|_| id.to_string())
}

fn digest(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The daemon socket's address for a pod.
pub fn socket_address(flags: &Flags, group: &str) -> String {
    let key = format!("{}/{}/{}", flags.address, flags.namespace, group);
    format!("unix://{SOCKET_DIR}/{}", digest(&key))
}

/// The zone's id (its state directory's name) for a pod.
pub fn zone_id(namespace: &str, group: &str) -> String {
    digest(&format!("{namespace}/{group}"))[..12].to_string()
}

fn socket_path(address: &str) -> &str {
    address.strip_prefix("unix://").unwrap_or(address)
}

fn bundle_dir(flags: &Flags) -> anyhow::Result<PathBuf> {
    if flags.bundle.is_empty() {
        std::env::current_dir().context("finding the bundle (the working directory)")
    } else {
        Ok(PathBuf::from(&flags.bundle))
    }
}

fn write_address(bundle: &Path, address: &str) -> anyhow::Result<()> {
    std::fs::write(bundle.join("address"), address)
        .with_context(|| format!("writing {}/address", bundle.display()))
}

/// `start`: returns what to print (see [`crate::bootstrap`]).
pub fn start(flags: &Flags) -> anyhow::Result<Vec<u8>> {
    // Stdin holds the runtime options (the first Create has them too) or, from containerd
    // 2.3 on, bootstrap parameters.
    let mut stdin = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut stdin);
    let bootstrap = bootstrap::params_from_stdin(&stdin, &flags.id, &flags.namespace);
    let mut flags = flags.clone();
    let mut ttrpc_address = std::env::var("TTRPC_ADDRESS").unwrap_or_default();
    if let Some(params) = &bootstrap {
        if !params.containerd_grpc_address.is_empty() {
            flags.address = params.containerd_grpc_address.clone();
        }
        if !params.containerd_ttrpc_address.is_empty() {
            ttrpc_address = params.containerd_ttrpc_address.clone();
        }
    }
    let address = start_daemon(&flags, &ttrpc_address)?;
    Ok(bootstrap::start_reply(&address, bootstrap.is_some()))
}

/// Finds the pod's running daemon or spawns it; returns its address.
fn start_daemon(flags: &Flags, ttrpc_address: &str) -> anyhow::Result<String> {
    let bundle = bundle_dir(flags)?;
    let group = group_of(&bundle, &flags.id);
    let address = socket_address(flags, &group);
    let path = socket_path(&address);
    if UnixStream::connect(path).is_ok() {
        write_address(&bundle, &address)?;
        return Ok(address);
    }
    std::fs::create_dir_all(SOCKET_DIR).with_context(|| format!("creating {SOCKET_DIR}"))?;
    let _ = std::fs::remove_file(path);
    let exe = std::env::current_exe().context("finding the shim's own executable")?;
    let mut command = Command::new(exe);
    command
        .args(["-namespace", &flags.namespace, "-id", &flags.id])
        .args([
            "-address",
            &flags.address,
            "-publish-binary",
            &flags.publish_binary,
        ])
        .args(["-socket", &address])
        .current_dir(&bundle)
        .env("TTRPC_ADDRESS", ttrpc_address)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if flags.debug {
        command.arg("-debug");
    }
    // SAFETY: the closure runs in the forked child before exec and only calls setsid(2),
    // which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            // Its own session: containerd stopping or restarting must not take it along.
            nix::unistd::setsid()?;
            Ok(())
        });
    }
    let mut child = command.spawn().context("starting the shim daemon")?;
    let stdout = child.stdout.take().context("the daemon's readiness pipe")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .context("waiting for the shim daemon")?;
    if line.trim() != "ready" {
        let status = child.wait().ok();
        bail!("the shim daemon did not start ({status:?}); see ZONES_SHIM_LOG or containerd's log");
    }
    write_address(&bundle, &address)?;
    let _ = std::fs::write(bundle.join("shim.pid"), child.id().to_string());
    Ok(address)
}

/// The daemon: serves the task API until Shutdown.
pub fn serve(flags: &Flags) -> anyhow::Result<()> {
    let bundle = bundle_dir(flags)?;
    let path = socket_path(&flags.socket).to_string();
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).with_context(|| format!("listening on {path}"))?;
    // Tell `start` we listen, then let go of its pipe: containerd waits for its end of file.
    println!("ready");
    std::io::stdout().flush().context("answering start")?;
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
    nix::unistd::dup2_stdout(&null).context("detaching stdout")?;
    nix::unistd::dup2_stderr(&null).context("detaching stderr")?;
    crate::logging::init(&bundle, flags.debug);
    let group = group_of(&bundle, &flags.id);
    let zone_id = zone_id(&flags.namespace, &group);
    tracing::info!(pod = %group, zone = %zone_id, socket = %path, "shim serving");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(async {
        let ttrpc_address = std::env::var("TTRPC_ADDRESS").unwrap_or_default();
        let events = Events::to_containerd(ttrpc_address, flags.namespace.clone());
        let exit = Arc::new(Notify::new());
        let tasks = Arc::new(ZoneTasks::new(zone_id, events, Arc::clone(&exit)));
        let listener = Listener::try_from(listener).context("serving the socket")?;
        let mut server = Server::new()
            .add_listener(listener)
            .register_service(create_task(tasks));
        server.start().await.context("starting the ttrpc server")?;
        exit.notified().await;
        // Let the Shutdown answer and the last events go out.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let _ = server.shutdown().await;
        anyhow::Ok(())
    });
    let _ = std::fs::remove_file(&path);
    tracing::info!("shim exits");
    result
}

/// `delete`: cleans up after the task's shim and returns the `DeleteResponse` bytes.
pub fn delete(flags: &Flags) -> anyhow::Result<Vec<u8>> {
    let bundle = bundle_dir(flags)?;
    crate::logging::init(&bundle, flags.debug);
    crate::rootfs::unmount(&bundle.join("rootfs"));
    let group = group_of(&bundle, &flags.id);
    let address = socket_address(flags, &group);
    let path = socket_path(&address);
    if UnixStream::connect(path).is_err() {
        // The pod's shim is gone: nothing else will stop its zone.
        let (state_root, disk_root) = match Settings::load(None) {
            Ok(s) => (s.state_root, s.disk_root),
            Err(_) => (DEFAULT_STATE_ROOT.into(), DEFAULT_DISK_ROOT.into()),
        };
        crate::zone::clean_up_orphan(&state_root, &disk_root, &zone_id(&flags.namespace, &group));
        let _ = std::fs::remove_file(path);
        tracing::info!(id = %flags.id, "cleaned up after a shim that is gone");
    }
    let exit = Exit::now(EXIT_KILLED);
    let response = DeleteResponse {
        pid: 0,
        exit_status: exit.status,
        exited_at: Some(exit.timestamp()).into(),
        ..Default::default()
    };
    response
        .write_to_bytes()
        .context("encoding the DeleteResponse")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> Flags {
        Flags {
            namespace: "k8s.io".into(),
            address: "/run/containerd/containerd.sock".into(),
            id: "c1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn test_socket_address_same_pod_same_socket() {
        let a = socket_address(&flags(), "sb1");
        let b = socket_address(
            &Flags {
                id: "c2".into(),
                ..flags()
            },
            "sb1",
        );
        let other = socket_address(&flags(), "sb2");

        assert_eq!(a, b);
        assert_ne!(a, other);
        assert!(a.starts_with("unix:///run/containerd/s/"), "{a}");
        assert_eq!(a.len(), "unix:///run/containerd/s/".len() + 64);
    }

    #[test]
    fn test_zone_id_12_hex_per_namespace() {
        let id = zone_id("default", "t1");
        assert_eq!(id.len(), 12);
        assert_ne!(id, zone_id("other", "t1"));
    }

    #[test]
    fn test_delete_response_decodes() {
        let dir = tempfile::tempdir().unwrap();
        let flags = Flags {
            bundle: dir.path().display().to_string(),
            address: dir.path().join("none.sock").display().to_string(),
            ..flags()
        };
        std::env::set_var("ZONES_SHIM_CONFIG", dir.path().join("absent.toml"));

        let bytes = delete(&flags).unwrap();

        let response = DeleteResponse::parse_from_bytes(&bytes).unwrap();
        assert_eq!(response.exit_status, 137);
        assert!(response.exited_at.seconds > 0);
    }
}
