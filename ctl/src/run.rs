//! `zonectl run`: run one command in a fresh zone.
//!
//! Flow: state dir -> listener for the agent's lifeline -> VMM -> AgentReady -> the agent's
//! gRPC service: CreateContainer, output streams attached, StartProcess, stdin streamed,
//! WaitProcess -> Shutdown(POWER_OFF) -> wait for the VMM -> remove the state dir.
//! The steps (`prepare`, `launch`, `drive`) are shared with detached zones' supervisor
//! (`supervise`), which records the outcome instead of printing it.
//! Every exit path goes through the destructors of the state dir and the VMM process, which
//! remove and kill them.

use std::env;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{bail, Context};
use nix::sys::signal::Signal;
use zone_proto::agent::v1::shutdown_request::Action;
use zone_proto::agent::v1::{
    ContainerRootfs, CreateContainerRequest, ProcessSpec, ShutdownRequest,
};

use crate::agent_client;
use crate::attach::{self, Attach, ProcessEnd, Sink};
use crate::cli::{DiskSpec, RootfsSpec, RunArgs};
use crate::identity_plan::{self, IdentityPlan};
use crate::interrupt::Interrupt;
use crate::lifeline::{Lifeline, AGENT_PORT};
use crate::network::{self, ZoneNetwork};
use crate::timing;
use crate::vmm_process::{VmmConfig, VmmNet, VmmProcess, VmmTpm};
use crate::workload::{self, ImageDigests};
use crate::zone_dir::ZoneDir;
use crate::zone_state::{self, BootRecord, Status, ZoneState};

/// zonectl's exit code when the zone failed (docker's convention).
pub use crate::attach::EXIT_ZONE_FAILED;

const PVM_MODULE: &str = "/sys/module/kvm_pvm";
const AGENT_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
const AGENT_READY_TIMEOUT: Duration = Duration::from_secs(30);
const VMM_EXIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a failed exchange with the agent waits to see whether the VMM is exiting.
const VMM_DEATH_GRACE: Duration = Duration::from_secs(2);
/// Leaves room for the rest of the request in one 16 MiB frame.
const CONSOLE_TAIL_LINES: usize = 40;
/// Where the `--rootfs` image appears in the zone: it is attached as the first disk.
pub const ROOTFS_DEVICE: &str = "/dev/vda";
/// Whether the agent refused a request as asked (rather than failing).
fn is_refusal(status: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(
        status.code(),
        Code::InvalidArgument | Code::NotFound | Code::FailedPrecondition | Code::AlreadyExists
    )
}

/// The id of the one container `zonectl` runs in a zone.
pub const CONTAINER_ID: &str = "main";
/// How long `zonectl` waits for the agent's service once the agent said it is ready.
const AGENT_API_PATIENCE: Duration = Duration::from_secs(10);

/// Everything a zone needs, checked and resolved before anything starts.
#[derive(Debug)]
pub struct Prepared {
    pub create: CreateContainerRequest,
    pub disks: Vec<DiskSpec>,
    pub vmm_binary: PathBuf,
    /// What `ps` shows as the zone's image.
    pub image: String,
    /// What the vTPM measures about the image; `None` for --bare and --rootfs.
    pub image_digests: Option<ImageDigests>,
    /// What the identity authority needs to decide the zone's workload identity.
    pub identity: IdentityPlan,
}

/// How a zone's command went.
#[derive(Debug)]
pub enum Outcome {
    /// The command ended with this result; the zone was powered off.
    Finished(ProcessEnd),
    /// A signal (the user's Ctrl-C, `zonectl stop`) stopped the zone.
    Interrupted(Signal),
    /// The VMM exited before the command's result arrived.
    VmmDied(ExitStatus, anyhow::Error),
    /// The zone could not run the command.
    Failed(anyhow::Error),
}

/// Runs the verb; returns zonectl's exit code.
pub fn run(args: RunArgs) -> anyhow::Result<i32> {
    if args.detach {
        return crate::supervise::start_detached(&args);
    }
    timing::start();
    check_name_free(&args)?;
    let prepared = prepare(&args)?;
    timing::mark("image lookup and root file system");
    let interrupt = Interrupt::install().context("installing signal handling")?;

    let _armed = interrupt.arm();
    let zone = ZoneDir::create(&args.state_root).context("creating the zone's state directory")?;
    let span = tracing::info_span!("zone", zone = %zone.id());
    let _entered = span.enter();
    let mut state = new_state(&zone, &args, &prepared);
    state.save(zone.path())?;
    // Before the VMM: dropped after it, when the tap has gone with the VMM.
    let mut network = set_up_network(&zone, &args, &mut state)?;
    let (listener, mut vmm) = launch(&zone, &args, &prepared, &mut state, network.as_mut())?;
    timing::mark("VMM spawned");
    interrupt.set_vmm(Some(vmm.pid()));
    let attach = Attach {
        stdin: args.interactive,
        tty: args.tty,
        sink: Sink::Terminal,
    };
    let outcome = drive(
        &zone,
        &listener,
        &mut vmm,
        &interrupt,
        prepared.create,
        &attach,
        network.as_ref(),
        &prepared.identity,
    );
    interrupt.set_vmm(None);
    match outcome {
        Outcome::Finished(end) => {
            if !end.error.is_empty() {
                eprintln!("zonectl: {}", end.error);
            }
            Ok(end.status())
        }
        Outcome::Interrupted(signal) => {
            eprintln!(
                "zonectl: interrupted by {signal}; zone {} stopped",
                zone.id()
            );
            Ok(128 + signal as i32)
        }
        Outcome::VmmDied(status, e) => {
            report_zone_failure(&zone, &mut vmm, Some(status));
            Err(e.context(format!("zone {} failed", zone.id())))
        }
        Outcome::Failed(e) => {
            report_zone_failure(&zone, &mut vmm, None);
            Err(e.context(format!("zone {} failed", zone.id())))
        }
    }
}

/// Refuses a `--name` another zone under the state root already has.
pub fn check_name_free(args: &RunArgs) -> anyhow::Result<()> {
    let Some(name) = &args.name else {
        return Ok(());
    };
    let zones = zone_state::list(&args.state_root)?;
    if let Some(other) = zones.iter().find(|z| z.name.as_deref() == Some(name)) {
        bail!(
            "the name {name:?} is taken by zone {}: remove it with `zonectl rm -f {name}` or \
             choose another --name",
            other.id
        );
    }
    Ok(())
}

/// Checks the files, resolves the workload (building the image's root file system) and reads
/// stdin for `-i`.
pub fn prepare(args: &RunArgs) -> anyhow::Result<Prepared> {
    network::check_args(&args.network, &args.publish)?;
    if !args.force && Path::new(PVM_MODULE).exists() {
        bail!(
            "this host's /dev/kvm is PVM nested virtualization that cannot boot a stock Linux \
             guest; run zones inside the KVM testbed: hack/testbed run -- zonectl run ... \
             (or pass --force to try anyway)"
        );
    }
    check_file(&args.kernel, "kernel (--kernel or ZONES_KERNEL)")?;
    check_file(&args.initrd, "initrd (--initrd or ZONES_INITRD)")?;
    if let Some(rootfs) = &args.rootfs {
        check_file(&rootfs.path, "rootfs image (--rootfs)")?;
    }
    if !args.no_tpm {
        check_swtpm()?;
    }
    let workload = workload::resolve(args)?;
    for disk in &args.shape.disks {
        check_file(&disk.path, "disk image (--disk)")?;
    }
    let image = if args.bare {
        "(bare)".to_string()
    } else if let Some(rootfs) = &args.rootfs {
        rootfs.path.display().to_string()
    } else {
        args.args.first().cloned().unwrap_or_default()
    };
    let disks = zone_disks(workload.rootfs.as_ref(), &args.shape.disks);
    let vmm_binary = args.vmm.clone().unwrap_or_else(default_vmm);
    let identity = IdentityPlan::new(args);
    Ok(Prepared {
        disks,
        create: CreateContainerRequest {
            container_id: CONTAINER_ID.to_string(),
            rootfs: workload.rootfs.as_ref().map(|rootfs| ContainerRootfs {
                device: ROOTFS_DEVICE.to_string(),
                fstype: rootfs.fstype.clone(),
            }),
            hostname: args.hostname.clone().unwrap_or_default(),
            process: Some(ProcessSpec {
                args: workload.command,
                env: workload.env,
                cwd: workload.cwd,
                user: workload.user,
                terminal: args.tty,
                stdin: args.interactive,
                rlimits: args.isolation.ulimits.clone(),
                no_new_privileges: args.isolation.no_new_privileges(),
                capabilities: args.isolation.capabilities(),
                ..Default::default()
            }),
            readonly_rootfs: args.isolation.read_only,
            mounts: args.isolation.tmpfs.clone(),
            ..Default::default()
        },
        vmm_binary,
        image,
        image_digests: workload.image.clone(),
        identity,
    })
}

/// The zone's first recorded state, owned by this process.
pub fn new_state(zone: &ZoneDir, args: &RunArgs, prepared: &Prepared) -> ZoneState {
    ZoneState {
        id: zone.id().to_string(),
        name: args.name.clone(),
        image: prepared.image.clone(),
        rootfs_fstype: prepared.create.rootfs.as_ref().map(|r| r.fstype.clone()),
        command: prepared
            .create
            .process
            .as_ref()
            .map(|p| p.args.clone())
            .unwrap_or_default(),
        env: prepared
            .create
            .process
            .as_ref()
            .map(|p| p.env.clone())
            .unwrap_or_default(),
        created: zone_state::now(),
        supervisor_pid: i32::try_from(std::process::id()).ok(),
        vmm_pid: None,
        status: Status::Starting,
        exit_code: None,
        error: None,
        auto_remove: args.auto_remove,
        network: None,
        boot: Some(BootRecord {
            vmm: prepared.vmm_binary.clone(),
            kernel: args.kernel.clone(),
            initrd: args.initrd.clone(),
            tpm: !args.no_tpm,
            image_manifest_digest: prepared.image_digests.as_ref().map(|d| d.manifest.clone()),
            oci_config_digest: prepared.image_digests.as_ref().map(|d| d.config.clone()),
        }),
    }
}

/// Sets up the zone's network (`--network`) and records it in the zone's state.
pub fn set_up_network(
    zone: &ZoneDir,
    args: &RunArgs,
    state: &mut ZoneState,
) -> anyhow::Result<Option<ZoneNetwork>> {
    let network = network::set_up(&args.network, &args.publish, &args.state_root, zone.id())?;
    if let Some(network) = &network {
        state.network = Some(network.record.clone());
        state.save(zone.path())?;
        timing::mark("network");
    }
    Ok(network)
}

/// Listens for the agent and starts the VMM (with the zone's tap, which it takes); records
/// the zone as running.
pub fn launch(
    zone: &ZoneDir,
    args: &RunArgs,
    prepared: &Prepared,
    state: &mut ZoneState,
    network: Option<&mut ZoneNetwork>,
) -> anyhow::Result<(UnixListener, VmmProcess)> {
    let listener_path = zone.vsock_listener(AGENT_PORT);
    let listener = UnixListener::bind(&listener_path)
        .with_context(|| format!("listening on {}", listener_path.display()))?;
    let mut config = VmmConfig {
        kernel: args.kernel.clone(),
        initrd: args.initrd.clone(),
        memory: args.shape.memory,
        cpus: args.shape.cpus,
        disks: prepared.disks.clone(),
        vsock_socket: zone.vsock_socket(),
        serial_log: (!args.keep_console).then(|| zone.console_log()),
        tpm: (!args.no_tpm).then(|| zone_tpm(zone, prepared.image_digests.as_ref())),
        net: None,
    };
    // The VMM inherits the tap; ours closes once it runs, so the tap lives as long as the VMM.
    let tap = network.and_then(|network| {
        let tap = network.tap.take()?;
        Some((tap, network.mac, network.mtu))
    });
    if let Some((tap, mac, mtu)) = &tap {
        config.net = Some(VmmNet {
            fd: tap.as_raw_fd(),
            mac: *mac,
            mtu: *mtu,
        });
    }
    let vmm = VmmProcess::spawn(&prepared.vmm_binary, &config, args.keep_console)
        .context("starting the VMM (is zone-vmm built? pass --vmm PATH)")?;
    drop(tap);
    tracing::debug!(pid = vmm.pid().as_raw(), "VMM started");
    state.vmm_pid = Some(vmm.pid().as_raw());
    state.status = Status::Running;
    state.save(zone.path())?;
    Ok((listener, vmm))
}

/// Waits for the agent, runs the command, powers the zone off and waits for the VMM. Every
/// outcome leaves the VMM exited.
#[allow(clippy::too_many_arguments)]
pub fn drive(
    zone: &ZoneDir,
    listener: &UnixListener,
    vmm: &mut VmmProcess,
    interrupt: &Interrupt,
    create: CreateContainerRequest,
    attach: &Attach,
    network: Option<&ZoneNetwork>,
    identity: &IdentityPlan,
) -> Outcome {
    match talk_to_agent(
        zone, listener, vmm, interrupt, create, attach, network, identity,
    ) {
        Ok(end) => {
            finish_vmm(vmm, zone);
            Outcome::Finished(end)
        }
        Err(e) => {
            // A zone that died (a guest triple fault, say) closes the agent's connection a
            // few milliseconds before its VMM exits: give the VMM a moment, so that the
            // report says what happened rather than "transport error".
            let exited_first = vmm.wait_timeout(VMM_DEATH_GRACE).ok().flatten();
            let stopped = vmm.kill();
            if let Some(signal) = interrupt.received() {
                return Outcome::Interrupted(signal);
            }
            match exited_first.or_else(|| stopped.ok()) {
                Some(status) if exited_first.is_some() => Outcome::VmmDied(status, e),
                _ => Outcome::Failed(e),
            }
        }
    }
}

/// The zone's disks in attach order: the rootfs image first (read-only), then `--disk`s.
pub fn zone_disks(rootfs: Option<&RootfsSpec>, disks: &[DiskSpec]) -> Vec<DiskSpec> {
    let rootfs = rootfs.into_iter().map(|rootfs| DiskSpec {
        path: rootfs.path.clone(),
        read_only: true,
    });
    rootfs.chain(disks.iter().cloned()).collect()
}

/// Waits for the agent's lifeline, starts deciding the zone's workload identity, creates the
/// container, runs its process attached, and asks the zone to power off.
#[allow(clippy::too_many_arguments)]
pub fn talk_to_agent(
    zone: &ZoneDir,
    listener: &UnixListener,
    vmm: &mut VmmProcess,
    interrupt: &Interrupt,
    create: CreateContainerRequest,
    attach: &Attach,
    network: Option<&ZoneNetwork>,
    identity: &IdentityPlan,
) -> anyhow::Result<ProcessEnd> {
    let mut lifeline = Lifeline::accept(listener, AGENT_CONNECT_TIMEOUT, || {
        if let Some(signal) = interrupt.received() {
            return Some(format!("interrupted by {signal}"));
        }
        match vmm.try_status() {
            Ok(Some(status)) => Some(format!("the VMM exited first ({status})")),
            Ok(None) => None,
            Err(e) => Some(format!("{e:#}")),
        }
    })?;
    timing::mark("VMM start, kernel boot, agent connects");
    let ready = lifeline.read_ready(AGENT_READY_TIMEOUT)?;
    timing::mark("agent ready");
    tracing::info!(
        agent = %ready.agent_version,
        kernel = %ready.kernel_release,
        cpus = ready.online_cpus,
        "agent ready"
    );
    // Until the command ends: the zone's workloads may ask for their identity at any time.
    let identity = identity_plan::start(zone, identity);
    let runtime = agent_client::runtime()?;
    let end = runtime.block_on(async {
        let mut client = agent_client::connect_retrying(&zone.vsock_socket(), AGENT_API_PATIENCE)
            .await
            .context("reaching the agent's service")?;
        // Held until the command ends: the proxies of `-p`.
        let _published = match network {
            Some(network) => Some(configure_network(&mut client, network).await?),
            None => None,
        };
        let end = match client.create_container(create).await {
            Ok(_) => {
                timing::mark("container created");
                attach::start_attached(&client, CONTAINER_ID, "", attach).await?
            }
            // The zone is fine; the container cannot be made as asked (a bad user, a
            // directory that is not there, an image that does not mount): as `docker run`
            // does, that is the command failing to start.
            Err(status) if is_refusal(&status) => ProcessEnd {
                exit_code: attach::EXIT_CANNOT_RUN,
                signal: 0,
                error: status.message().to_string(),
            },
            Err(status) => bail!(
                "creating the container: {}",
                agent_client::describe(&status)
            ),
        };
        // Stopped first, so that the power-off does not read as a failure to it.
        drop(identity);
        client
            .shutdown(ShutdownRequest {
                action: Action::PowerOff as i32,
            })
            .await
            .map_err(|status| {
                anyhow::anyhow!(
                    "asking the zone to power off: {}",
                    agent_client::describe(&status)
                )
            })?;
        anyhow::Ok(end)
    })?;
    drop(lifeline);
    Ok(end)
}

/// Gives the zone its addresses, routes and DNS, then publishes its ports on the host.
async fn configure_network(
    client: &mut agent_client::Client,
    network: &ZoneNetwork,
) -> anyhow::Result<Option<zone_net::ports::PortPublisher>> {
    client
        .configure_network(network.guest.to_request())
        .await
        .map_err(|status| {
            anyhow::anyhow!(
                "configuring the zone's network: {}",
                agent_client::describe(&status)
            )
        })?;
    timing::mark("network configured");
    if network.publish.is_empty() {
        return Ok(None);
    }
    let zone_ip = network
        .zone_ip
        .context("-p needs the zone's address, and the zone has none")?;
    let publisher = zone_net::ports::publish(&network.publish, zone_ip)
        .await
        .context("publishing the zone's ports")?;
    Ok(Some(publisher))
}

fn finish_vmm(vmm: &mut VmmProcess, zone: &ZoneDir) {
    match vmm.wait_timeout(VMM_EXIT_TIMEOUT) {
        Ok(Some(status)) if status.success() => timing::mark("zone powered off"),
        Ok(Some(status)) => {
            eprintln!("zonectl: warning: the VMM exited with {status} after the command finished");
            eprint!("{}", vmm.stderr_tail());
        }
        Ok(None) => {
            eprintln!(
                "zonectl: warning: zone {} did not power off within {VMM_EXIT_TIMEOUT:?}; killed it",
                zone.id()
            );
            let _ = vmm.kill();
        }
        Err(e) => eprintln!("zonectl: warning: {e:#}"),
    }
}

pub fn report_zone_failure(
    zone: &ZoneDir,
    vmm: &mut VmmProcess,
    status: Option<std::process::ExitStatus>,
) {
    if let Some(status) = status {
        eprintln!("zonectl: VMM {status}");
    }
    let stderr = vmm.stderr_tail();
    if !stderr.trim().is_empty() {
        eprintln!("zonectl: VMM stderr:\n{}", stderr.trim_end());
    }
    if let Ok(console) = fs::read_to_string(zone.console_log()) {
        let lines: Vec<&str> = console.lines().collect();
        let tail = &lines[lines.len().saturating_sub(CONSOLE_TAIL_LINES)..];
        eprintln!("zonectl: last {} lines of the zone's console:", tail.len());
        for line in tail {
            eprintln!("  {line}");
        }
    }
}

/// The vTPM of a zone: its files in the state directory, and the claims measured into PCR 15.
fn zone_tpm(zone: &ZoneDir, image: Option<&ImageDigests>) -> VmmTpm {
    let (manifest, config) = image.map_or(("", ""), |d| (d.manifest.as_str(), d.config.as_str()));
    VmmTpm {
        state_dir: zone.vtpm_dir(),
        event_log: zone.tpm_event_log(),
        ek_public: zone.tpm_ek_public(),
        claims: [
            ("zone-id", zone.id()),
            ("image-manifest-digest", manifest),
            ("oci-config-digest", config),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec(),
    }
}

/// The VMM starts swtpm for the zone's vTPM: say so now if it is not there.
fn check_swtpm() -> anyhow::Result<()> {
    let found = env::var_os("PATH")
        .is_some_and(|path| env::split_paths(&path).any(|dir| dir.join("swtpm").is_file()));
    if !found {
        bail!(
            "swtpm not found on PATH: every zone gets a vTPM run by swtpm (apt-get install \
             swtpm; hack/setup installs it), or pass --no-tpm for a zone without one"
        );
    }
    Ok(())
}

fn check_file(path: &Path, what: &str) -> anyhow::Result<()> {
    if !path.is_file() {
        bail!("{what} not found: {}", path.display());
    }
    Ok(())
}

/// `zone-vmm` next to zonectl's executable, else whatever `zone-vmm` is on PATH.
pub fn default_vmm() -> PathBuf {
    env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("zone-vmm")))
        .filter(|candidate| candidate.is_file())
        .unwrap_or_else(|| PathBuf::from("zone-vmm"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_zone_disks_rootfs_first_read_only() {
        use clap::Parser;
        let argv = [
            "zonectl",
            "run",
            "--kernel",
            "/k",
            "--initrd",
            "/i",
            "--disk",
            "/data.img",
            "--rootfs",
            "/root.ext4",
            "--",
            "true",
        ];
        let crate::cli::Command::Run(args) = crate::cli::Cli::parse_from(argv).command else {
            panic!("parsed as another verb");
        };

        let disks = zone_disks(args.rootfs.as_ref(), &args.shape.disks);

        let args: Vec<String> = disks.iter().map(DiskSpec::to_vmm_arg).collect();
        assert_eq!(args, ["/root.ext4,ro", "/data.img"]);
    }
}
