//! One pod's zone: its state directory, disk slots, `zone-vmm` process, the agent's lifeline
//! and a gRPC client of the agent.
//!
//! Boot follows zonectl (`ctl/src/run.rs`): bind `<state>/vsock.sock_1024`, spawn
//! `zone-vmm --kernel K --initrd I --cmdline C --memory M --cpus N --disk IMG,ro...
//! --vsock <state>/vsock.sock --serial-log <state>/console.log`, accept the agent's lifeline and
//! read its `AgentReady` (a length-delimited frame), then connect to the agent's service. The
//! lifeline stays open while the zone should run: when the shim goes away, even killed, the
//! agent powers the zone off. The spawn and the lifeline are a small duplicate of zonectl's
//! `vmm_process.rs` and `lifeline.rs`.

use std::os::fd::AsRawFd as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use thiserror::Error;
use tokio::net::UnixListener;
use tokio::sync::watch;
use zone_identity::{ZoneFacts, ZoneFiles, ZoneIdentity, EK_PUBLIC_FILE, EVENT_LOG_FILE};
use zone_proto::agent::v1::shutdown_request::Action;
use zone_proto::agent::v1::{AgentReady, ShutdownRequest};
use zone_proto::frame::{read_frame, FrameError};

use crate::rootfs::{self, RootfsError};
use crate::settings::Settings;
use crate::vsock::{self, Client, VsockError};

/// Kernel command line of every zone (as zonectl's).
pub const ZONE_CMDLINE: &str = "console=ttyS0 quiet panic=-1";
/// The host vsock port the agent's lifeline connects to.
const LIFELINE_PORT: u32 = 1024;
const AGENT_CONNECT_TIMEOUT: Duration = Duration::from_secs(90);
const AGENT_READY_TIMEOUT: Duration = Duration::from_secs(30);
const AGENT_API_PATIENCE: Duration = Duration::from_secs(15);
const POWER_OFF_TIMEOUT: Duration = Duration::from_secs(10);
const CONSOLE_TAIL_LINES: usize = 25;
/// The vTPM's state in the zone's state directory, as zonectl names it.
const VTPM_DIR: &str = "vtpm";
/// The smallest first-container image.
const MIN_IMAGE_MIB: u64 = 16;

#[derive(Debug, Error)]
pub enum ZoneError {
    #[error("creating {0}")]
    StateDir(PathBuf, #[source] std::io::Error),
    #[error("building a root file system image")]
    Disk(#[from] RootfsError),
    #[error("listening on {0}")]
    Listen(PathBuf, #[source] std::io::Error),
    #[error("starting {0} (set ZONES_VMM or `vmm` in the shim's config)")]
    Spawn(PathBuf, #[source] std::io::Error),
    #[error("the VMM exited before the zone's agent connected ({status}); {console}")]
    VmmExited { status: String, console: String },
    #[error("the zone's agent did not connect within {AGENT_CONNECT_TIMEOUT:?}; {console}")]
    AgentTimeout { console: String },
    #[error("accepting the agent's lifeline")]
    Accept(#[source] std::io::Error),
    #[error("reading the agent's AgentReady")]
    Ready(#[source] FrameError),
    #[error("the agent closed its lifeline before saying it was ready")]
    ReadyClosed,
    #[error("reaching the agent's service")]
    Agent(#[from] VsockError),
    #[error("the zone has no free disk left for another container (spare_disks = {0})")]
    NoFreeDisk(u32),
    #[error("joining the pod network in {0}")]
    Network(PathBuf, #[source] zone_net::netns::NetnsError),
    #[error("configuring the zone's network: {0}")]
    ConfigureNetwork(String),
}

/// The pod network a zone joins: a namespace CNI prepared (its veth), and the pod's DNS.
#[derive(Debug, Clone)]
pub struct PodNetwork {
    pub netns: PathBuf,
    pub dns: zone_net::DnsConfig,
}

/// How big a zone is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneSize {
    pub memory_mib: u64,
    pub cpus: u32,
    pub spare_disks: u32,
}

#[derive(Debug)]
pub struct Zone {
    id: String,
    dir: PathBuf,
    disk_dir: PathBuf,
    slots: Vec<(PathBuf, bool)>,
    slot_bytes: u64,
    vmm_pid: Pid,
    vmm_exit: watch::Receiver<Option<String>>,
    lifeline: Option<std::os::unix::net::UnixStream>,
    client: Client,
    /// The pod network's namespace, whose redirect is removed at shutdown.
    netns: Option<PathBuf>,
    /// This host's identity authority deciding the zone's SPIFFE identity, while it runs.
    identity: Option<ZoneIdentity>,
}

/// What the host knows about the pod a zone runs, from CRI's annotations (never from the
/// guest): facts the identity policy's path template may use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodFacts {
    pub name: Option<String>,
    pub namespace: Option<String>,
}

impl Zone {
    /// Boots a zone whose first container's root file system is the tree at `rootfs_dir`
    /// (it becomes `/dev/vda`).
    #[tracing::instrument(skip_all, fields(zone = %id))]
    pub async fn boot(
        settings: &Settings,
        id: &str,
        size: ZoneSize,
        rootfs_dir: &Path,
        network: Option<&PodNetwork>,
        pod: &PodFacts,
    ) -> Result<Zone, ZoneError> {
        let dir = settings.state_root.join(id);
        let disk_dir = settings.disk_root.join(id);
        let mut vmm_pid = None;
        let result = boot_inner(
            settings,
            id,
            size,
            rootfs_dir,
            network,
            (&dir, &disk_dir),
            &mut vmm_pid,
        )
        .await;
        if result.is_err() {
            if let Some(pid) = vmm_pid {
                let _ = kill(pid, Signal::SIGKILL);
            }
            if let Some(network) = network {
                detach_network(&network.netns).await;
            }
            remove_dirs(&dir, &disk_dir);
        }
        let mut zone = result?;
        zone.identity = Some(start_identity(settings, &zone, pod));
        Ok(zone)
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Writes the tree at `dir` into a free spare disk; returns the device it is in the zone.
    /// A spare disk given back by [`Zone::release_rootfs`] is written over: the zone has
    /// unmounted it, and Linux dropped its page cache when the last user closed it.
    pub async fn add_rootfs(&mut self, dir: &Path) -> Result<String, ZoneError> {
        let spare = u32::try_from(self.slots.len().saturating_sub(1)).unwrap_or(u32::MAX);
        let index = self
            .slots
            .iter()
            .position(|(_, used)| !used)
            .ok_or(ZoneError::NoFreeDisk(spare))?;
        rootfs::check_fits(dir, self.slot_bytes)?;
        rootfs::make_ext4(dir, &self.slots[index].0).await?;
        self.slots[index].1 = true;
        Ok(device_name(index))
    }

    /// Gives back the spare disk of a container the zone has removed, for a later container
    /// of the pod (a restarted one, say). The first disk, the zone's boot container's, is
    /// never reused. Other devices are ignored (logged).
    pub fn release_rootfs(&mut self, device: &str) {
        match device_index(device) {
            Some(0) => {}
            Some(index) if index < self.slots.len() => self.slots[index].1 = false,
            _ => tracing::warn!(device, "not a spare disk of this zone; not released"),
        }
    }

    /// Asks the agent to power off, closes the lifeline, waits for the VMM (killing it after
    /// a while) and removes the zone's directories.
    #[tracing::instrument(skip_all, fields(zone = %self.id))]
    pub async fn shut_down(mut self) {
        // Stopped first, so that the power-off does not read as a failure to it.
        self.identity.take();
        let asked = tokio::time::timeout(
            Duration::from_secs(5),
            self.client.shutdown(ShutdownRequest {
                action: Action::PowerOff as i32,
            }),
        )
        .await;
        if !matches!(asked, Ok(Ok(_))) {
            tracing::info!("the agent did not take the power-off request; closing the lifeline");
        }
        self.lifeline.take();
        let mut exit = self.vmm_exit.clone();
        let exited = tokio::time::timeout(POWER_OFF_TIMEOUT, exit.wait_for(Option::is_some))
            .await
            .is_ok();
        if !exited {
            tracing::warn!(
                "the zone did not power off within {POWER_OFF_TIMEOUT:?}; killing the VMM"
            );
            let _ = kill(self.vmm_pid, Signal::SIGKILL);
            let _ = tokio::time::timeout(POWER_OFF_TIMEOUT, exit.wait_for(Option::is_some)).await;
        }
        if let Some(netns) = self.netns.take() {
            detach_network(&netns).await;
        }
        remove_dirs(&self.dir, &self.disk_dir);
        tracing::info!("zone shut down");
    }
}

/// `/dev/vda` for slot 0, `/dev/vdb` for slot 1...
pub fn device_name(index: usize) -> String {
    let letter = char::from(b'a' + u8::try_from(index % 26).expect("index % 26 fits u8"));
    format!("/dev/vd{letter}")
}

/// The slot of a [`device_name`]: 0 for `/dev/vda`; `None` for anything else.
pub fn device_index(device: &str) -> Option<usize> {
    match device.strip_prefix("/dev/vd")?.as_bytes() {
        [letter @ b'a'..=b'z'] => Some(usize::from(letter - b'a')),
        _ => None,
    }
}

async fn boot_inner(
    settings: &Settings,
    id: &str,
    size: ZoneSize,
    rootfs_dir: &Path,
    network: Option<&PodNetwork>,
    (dir, disk_dir): (&Path, &Path),
    vmm_pid: &mut Option<Pid>,
) -> Result<Zone, ZoneError> {
    // A directory left by a shim that died is stale: this shim owns the pod now.
    remove_dirs(dir, disk_dir);
    for d in [dir, disk_dir] {
        std::fs::create_dir_all(d).map_err(|e| ZoneError::StateDir(d.to_path_buf(), e))?;
    }
    let first = disk_dir.join("disk0.img");
    rootfs::create_sparse(&first, rootfs::image_size(rootfs_dir, MIN_IMAGE_MIB))?;
    rootfs::make_ext4(rootfs_dir, &first).await?;
    let slot_bytes = settings.spare_disk_mib << 20;
    let mut slots = vec![(first, true)];
    for n in 1..=size.spare_disks {
        let path = disk_dir.join(format!("disk{n}.img"));
        rootfs::create_sparse(&path, slot_bytes)?;
        slots.push((path, false));
    }

    let vsock = dir.join("vsock.sock");
    let lifeline_path = dir.join(format!("vsock.sock_{LIFELINE_PORT}"));
    let listener = UnixListener::bind(&lifeline_path)
        .map_err(|e| ZoneError::Listen(lifeline_path.clone(), e))?;
    let console = dir.join("console.log");
    let vmm_log = std::fs::File::create(dir.join("vmm.log"))
        .map_err(|e| ZoneError::StateDir(dir.to_path_buf(), e))?;
    let mut command = std::process::Command::new(&settings.vmm);
    command
        .arg("--kernel")
        .arg(&settings.kernel)
        .arg("--initrd")
        .arg(&settings.initrd)
        .args(["--cmdline", ZONE_CMDLINE])
        .args(["--memory", &format!("{}M", size.memory_mib)])
        .args(["--cpus", &size.cpus.to_string()]);
    for (path, _) in &slots {
        let mut disk = path.clone().into_os_string();
        disk.push(",ro");
        command.arg("--disk").arg(disk);
    }
    if settings.tpm {
        // Measured into PCR 15: the zone id; a pod's images come later, so none here.
        command
            .arg("--tpm")
            .arg(dir.join(VTPM_DIR))
            .arg("--tpm-event-log")
            .arg(dir.join(EVENT_LOG_FILE))
            .arg("--tpm-ek-public")
            .arg(dir.join(EK_PUBLIC_FILE))
            .arg("--zone-claim")
            .arg(format!("zone-id={id}"))
            .args(["--zone-claim", "image-manifest-digest="])
            .args(["--zone-claim", "oci-config-digest="]);
    }
    command
        .arg("--vsock")
        .arg(&vsock)
        .arg("--serial-log")
        .arg(&console)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(vmm_log);
    // The tap next to the pod's veth, which the VMM inherits; ours closes once it runs.
    let attached = match network {
        Some(network) => Some(attach_network(&network.netns).await?),
        None => None,
    };
    let tap_fd = attached.as_ref().map(|a| a.tap.as_raw_fd());
    if let Some(attached) = &attached {
        let interface = attached.guest.interfaces.first();
        let (mac, mtu) = interface.map(|i| (i.mac, i.mtu)).unzip();
        if let (Some(fd), Some(mac), Some(mtu)) = (tap_fd, mac, mtu) {
            command
                .arg("--net")
                .arg(format!("fd={fd},mac={mac},mtu={mtu}"));
        }
    }
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2) and
    // fcntl(2), which are async-signal-safe; it shares no memory with the parent (the
    // descriptor number is copied in).
    unsafe {
        command.pre_exec(move || {
            // If the shim dies, the VMM goes too (the lifeline closing powers it off anyway).
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            if let Some(fd) = tap_fd {
                zone_net::netns::tap::keep_open_across_exec(fd)?;
            }
            Ok(())
        });
    }
    let spawned = tokio::process::Command::from(command).spawn();
    let guest_network = attached.map(|a| a.guest);
    let mut child = spawned.map_err(|e| ZoneError::Spawn(settings.vmm.clone(), e))?;
    let pid = Pid::from_raw(child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0));
    *vmm_pid = Some(pid);
    let _ = std::fs::write(dir.join("vmm.pid"), pid.as_raw().to_string());
    tracing::info!(pid = pid.as_raw(), "VMM started");
    let (exit_tx, exit_rx) = watch::channel(None);
    tokio::spawn(async move {
        let status = match child.wait().await {
            Ok(status) => status.to_string(),
            Err(e) => format!("wait failed: {e}"),
        };
        tracing::info!(%status, "VMM exited");
        let _ = exit_tx.send(Some(status));
    });

    let mut exit = exit_rx.clone();
    let stream = tokio::select! {
        accepted = listener.accept() => accepted.map_err(ZoneError::Accept)?.0,
        status = exit.wait_for(Option::is_some) => {
            let status = status.map(|s| s.clone().unwrap_or_default()).unwrap_or_default();
            return Err(ZoneError::VmmExited { status, console: console_tail(dir) });
        }
        _ = tokio::time::sleep(AGENT_CONNECT_TIMEOUT) => {
            return Err(ZoneError::AgentTimeout { console: console_tail(dir) });
        }
    };
    let stream = stream.into_std().map_err(ZoneError::Accept)?;
    stream.set_nonblocking(false).map_err(ZoneError::Accept)?;
    stream
        .set_read_timeout(Some(AGENT_READY_TIMEOUT))
        .map_err(ZoneError::Accept)?;
    let (stream, ready) = tokio::task::spawn_blocking(move || {
        let ready = read_frame::<AgentReady>(&mut &stream);
        (stream, ready)
    })
    .await
    .map_err(|e| ZoneError::Accept(std::io::Error::other(e)))?;
    let ready = ready
        .map_err(ZoneError::Ready)?
        .ok_or(ZoneError::ReadyClosed)?;
    let _ = stream.set_read_timeout(None);
    tracing::info!(agent = %ready.agent_version, kernel = %ready.kernel_release, "agent ready");
    let mut client = vsock::connect(&vsock, AGENT_API_PATIENCE).await?;
    if let (Some(mut guest), Some(network)) = (guest_network, network) {
        guest.dns = network.dns.clone();
        client
            .configure_network(guest.to_request())
            .await
            .map_err(|status| ZoneError::ConfigureNetwork(status.message().to_string()))?;
        tracing::info!("pod network configured");
    }
    Ok(Zone {
        id: id.to_string(),
        dir: dir.to_path_buf(),
        disk_dir: disk_dir.to_path_buf(),
        slots,
        slot_bytes,
        vmm_pid: pid,
        vmm_exit: exit_rx,
        lifeline: Some(stream),
        client,
        netns: network.map(|n| n.netns.clone()),
        identity: None,
    })
}

/// Starts this host's identity authority for the zone (see zone-identity).
fn start_identity(settings: &Settings, zone: &Zone, pod: &PodFacts) -> ZoneIdentity {
    let facts = ZoneFacts {
        zone_id: zone.id.clone(),
        zone_name: pod.name.clone(),
        pod_namespace: pod.namespace.clone(),
        service_account: None,
        tpm: settings.tpm,
    };
    let socket = zone.dir.join("vsock.sock");
    zone_identity::start(
        settings.authority.clone(),
        facts,
        ZoneFiles::in_state_dir(&zone.dir),
        Box::new(move || {
            Box::pin(async move { Ok(vsock::connect(&socket, AGENT_API_PATIENCE).await?) })
        }),
    )
}

async fn attach_network(netns: &Path) -> Result<zone_net::netns::NetnsTap, ZoneError> {
    let path = netns.to_path_buf();
    tokio::task::spawn_blocking(move || zone_net::netns::attach(&path))
        .await
        .map_err(|e| ZoneError::StateDir(netns.to_path_buf(), std::io::Error::other(e)))?
        .map_err(|e| ZoneError::Network(netns.to_path_buf(), e))
}

/// Removes the redirect from the pod's veth (the tap went with the VMM). CNI deletes the
/// veth and containerd the namespace later; a failure is logged, not fatal.
async fn detach_network(netns: &Path) {
    let path = netns.to_path_buf();
    match tokio::task::spawn_blocking(move || zone_net::netns::detach(&path)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(netns = %netns.display(), error = %e, "removing the pod network redirect")
        }
        Err(e) => tracing::warn!(error = %e, "removing the pod network redirect"),
    }
}

fn remove_dirs(dir: &Path, disk_dir: &Path) {
    for d in [dir, disk_dir] {
        match std::fs::remove_dir_all(d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(dir = %d.display(), error = %e, "removing"),
        }
    }
}

/// The last lines of the zone's serial console, for error messages.
fn console_tail(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("console.log")).unwrap_or_default();
    let vmm = std::fs::read_to_string(dir.join("vmm.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(CONSOLE_TAIL_LINES)..].join("\n");
    format!("VMM stderr: {}\nlast console lines:\n{tail}", vmm.trim())
}

/// Kills the VMM recorded in a zone directory left by a shim that is gone and removes the
/// zone's directories (used by `delete`). The pid counts only while its command line names
/// the directory, so a reused pid is never killed.
pub fn clean_up_orphan(settings_state_root: &Path, disk_root: &Path, id: &str) {
    let dir = settings_state_root.join(id);
    if let Ok(text) = std::fs::read_to_string(dir.join("vmm.pid")) {
        if let Ok(pid) = text.trim().parse::<i32>() {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let needle = dir.join("vsock.sock");
            let needle = needle.to_string_lossy();
            if String::from_utf8_lossy(&cmdline).contains(needle.as_ref()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
    remove_dirs(&dir, &disk_root.join(id));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_device_name_slots_in_attach_order() {
        assert_eq!(device_name(0), "/dev/vda");
        assert_eq!(device_name(3), "/dev/vdd");
    }

    #[test]
    fn test_device_index_inverts_device_name() {
        for index in [0, 1, 4, 25] {
            assert_eq!(device_index(&device_name(index)), Some(index));
        }
    }

    #[test]
    fn test_device_index_other_devices_none() {
        for device in [
            "",
            "/dev/vd",
            "/dev/vdaa",
            "/dev/sda",
            "/dev/vdA",
            "vdb",
            "/dev/vd1",
        ] {
            assert_eq!(device_index(device), None, "{device:?}");
        }
    }
}
