//! `cri-client`: drives a container runtime's CRI service (`runtime.v1.RuntimeService`, the
//! API the kubelet speaks) over its Unix socket, one RPC per command, so that shell scripts in
//! the KVM testbed can play the kubelet's part against containerd's CRI plugin.
//!
//! Pods are host-network pods (`NamespaceMode::NODE`: no CNI is needed) unless `--pod-network`
//! asks for their own network (CNI); a pod's name also names its uid and its Kubernetes
//! namespace is `default`. Ids go to stdout, one per line,
//! errors to stderr with a non-zero status.
//!
//! ```text
//! cri-client -e unix:///tmp/ctrd/containerd.sock run-pod --handler zone --log-dir /tmp/logs p1
//! cri-client create --pod ID --pod-name p1 --log-dir /tmp/logs --image busybox c1 -- sh -c 'echo hi'
//! cri-client start ID; cri-client exec-sync ID -- echo hi; cri-client stats ID
//! cri-client update --memory 33554432 --cpu-quota 50000 --cpu-period 100000 ID
//! cri-client stop ID; cri-client rm ID; cri-client stop-pod ID; cri-client rm-pod ID
//! ```

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerStatsRequest, ContainerStatusRequest,
    CreateContainerRequest, ExecSyncRequest, ImageSpec, LinuxContainerConfig,
    LinuxContainerResources, LinuxContainerSecurityContext, LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption, PodSandboxConfig,
    PodSandboxMetadata, PodSandboxStatusRequest, RemoveContainerRequest, RemovePodSandboxRequest,
    RunPodSandboxRequest, StartContainerRequest, StopContainerRequest, StopPodSandboxRequest,
    UpdateContainerResourcesRequest, VersionRequest,
};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

#[derive(Debug, Parser)]
#[command(about = "Drive a CRI runtime service (containerd's CRI plugin) from a shell")]
struct Cli {
    /// The runtime's CRI socket (`unix:///path` or a path).
    #[arg(
        short,
        long,
        env = "CRI_ENDPOINT",
        default_value = "unix:///run/containerd/containerd.sock"
    )]
    endpoint: String,
    /// How long one RPC may take, in seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the runtime's name and version.
    Version,
    /// RunPodSandbox: start a host-network pod (with --pod-network, a pod with its own network
    /// from the runtime's CNI plugins); prints its id.
    RunPod {
        /// The pod gets its own network namespace, set up by CNI.
        #[arg(long)]
        pod_network: bool,
        /// The runtime handler (containerd's `runtimes.<name>`, a RuntimeClass's `handler`).
        #[arg(long, default_value = "")]
        handler: String,
        /// Where the pod's container logs go (`log_directory`).
        #[arg(long)]
        log_dir: PathBuf,
        /// The pod's name (also its uid).
        name: String,
    },
    /// CreateContainer in a pod; prints the container's id.
    Create {
        /// The pod's id (from run-pod).
        #[arg(long)]
        pod: String,
        /// The pod's name and log directory, as given to run-pod (CRI repeats the pod's config).
        #[arg(long)]
        pod_name: String,
        #[arg(long)]
        log_dir: PathBuf,
        /// The pod was started with --pod-network.
        #[arg(long)]
        pod_network: bool,
        /// The image, by name or id (it must be in the runtime's image store already).
        #[arg(long)]
        image: String,
        /// The log file, relative to the pod's log directory (default NAME.log).
        #[arg(long)]
        log_path: Option<String>,
        /// The container's name.
        name: String,
        /// The command (default: the image's).
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// StartContainer.
    Start { id: String },
    /// ExecSync: run a command in a container; prints its stdout (its stderr to stderr) and
    /// exits with its exit code.
    ExecSync {
        /// Seconds the command may run (0: no limit).
        #[arg(long, default_value_t = 60)]
        timeout: i64,
        id: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// UpdateContainerResources: new memory, CPU and pids limits (Linux).
    Update {
        /// memory.max, bytes.
        #[arg(long, default_value_t = 0)]
        memory: i64,
        /// CPU time (µs) per period.
        #[arg(long, default_value_t = 0)]
        cpu_quota: i64,
        #[arg(long, default_value_t = 0)]
        cpu_period: i64,
        id: String,
    },
    /// ContainerStats: prints `cpu-nanos=N`, `memory-working-set=N` and `memory-usage=N`.
    Stats { id: String },
    /// ContainerStatus: prints `state=...`, `exit-code=N` and `log-path=...`.
    Status { id: String },
    /// PodSandboxStatus: prints `state=...` and `ip=...` (empty for a host-network pod).
    PodStatus { id: String },
    /// StopContainer (SIGTERM, SIGKILL after the timeout).
    Stop {
        #[arg(long, default_value_t = 10)]
        timeout: i64,
        id: String,
    },
    /// RemoveContainer.
    Rm { id: String },
    /// StopPodSandbox: stops the pod's containers and its sandbox.
    StopPod { id: String },
    /// RemovePodSandbox.
    RmPod { id: String },
}

type Client = RuntimeServiceClient<Channel>;

/// Connects to the runtime's Unix socket (tonic needs a URI; the connector ignores it).
async fn connect(endpoint: &str, timeout: Duration) -> anyhow::Result<Client> {
    let path = PathBuf::from(endpoint.strip_prefix("unix://").unwrap_or(endpoint));
    let socket = path.clone();
    let channel = Endpoint::from_static("http://cri")
        .timeout(timeout)
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move { UnixStream::connect(socket).await.map(TokioIo::new) }
        }))
        .await
        .with_context(|| format!("connecting to {} (is the runtime running?)", path.display()))?;
    Ok(RuntimeServiceClient::new(channel))
}

/// A pod's config; `create` sends the same one again.
fn pod_config(name: &str, log_dir: &std::path::Path, pod_network: bool) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.to_string(),
            uid: name.to_string(),
            namespace: "default".to_string(),
            attempt: 0,
        }),
        // None for a host-network pod, as the kubelet gives it: it has the host's UTS
        // namespace (runc refuses to set a hostname there).
        hostname: if pod_network {
            name.to_string()
        } else {
            String::new()
        },
        log_directory: log_dir.display().to_string(),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces(pod_network)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn namespaces(pod_network: bool) -> NamespaceOption {
    NamespaceOption {
        network: if pod_network {
            NamespaceMode::Pod.into()
        } else {
            NamespaceMode::Node.into()
        },
        pid: NamespaceMode::Container.into(),
        ipc: NamespaceMode::Pod.into(),
        ..Default::default()
    }
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    let mut client = connect(&cli.endpoint, Duration::from_secs(cli.timeout)).await?;
    match cli.command {
        Command::Version => {
            let v = client
                .version(VersionRequest::default())
                .await?
                .into_inner();
            println!(
                "{} {} (CRI {})",
                v.runtime_name, v.runtime_version, v.runtime_api_version
            );
        }
        Command::RunPod {
            pod_network,
            handler,
            log_dir,
            name,
        } => {
            let response = client
                .run_pod_sandbox(RunPodSandboxRequest {
                    config: Some(pod_config(&name, &log_dir, pod_network)),
                    runtime_handler: handler,
                })
                .await
                .context("RunPodSandbox")?;
            println!("{}", response.into_inner().pod_sandbox_id);
        }
        Command::Create {
            pod,
            pod_name,
            log_dir,
            pod_network,
            image,
            log_path,
            name,
            command,
        } => {
            let config = ContainerConfig {
                metadata: Some(ContainerMetadata {
                    name: name.clone(),
                    attempt: 0,
                }),
                image: Some(ImageSpec {
                    image,
                    ..Default::default()
                }),
                command,
                log_path: log_path.unwrap_or_else(|| format!("{name}.log")),
                linux: Some(LinuxContainerConfig {
                    security_context: Some(LinuxContainerSecurityContext {
                        namespace_options: Some(namespaces(pod_network)),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let response = client
                .create_container(CreateContainerRequest {
                    pod_sandbox_id: pod,
                    config: Some(config),
                    sandbox_config: Some(pod_config(&pod_name, &log_dir, pod_network)),
                })
                .await
                .context("CreateContainer")?;
            println!("{}", response.into_inner().container_id);
        }
        Command::Start { id } => {
            client
                .start_container(StartContainerRequest { container_id: id })
                .await
                .context("StartContainer")?;
        }
        Command::ExecSync {
            timeout,
            id,
            command,
        } => {
            let response = client
                .exec_sync(ExecSyncRequest {
                    container_id: id,
                    cmd: command,
                    timeout,
                })
                .await
                .context("ExecSync")?
                .into_inner();
            use std::io::Write as _;
            std::io::stdout().write_all(&response.stdout)?;
            std::io::stderr().write_all(&response.stderr)?;
            return Ok(response.exit_code);
        }
        Command::Update {
            memory,
            cpu_quota,
            cpu_period,
            id,
        } => {
            let resources = LinuxContainerResources {
                memory_limit_in_bytes: memory,
                cpu_quota,
                cpu_period,
                ..Default::default()
            };
            client
                .update_container_resources(UpdateContainerResourcesRequest {
                    container_id: id,
                    linux: Some(resources),
                    ..Default::default()
                })
                .await
                .context("UpdateContainerResources")?;
        }
        Command::Stats { id } => {
            let stats = client
                .container_stats(ContainerStatsRequest { container_id: id })
                .await
                .context("ContainerStats")?
                .into_inner()
                .stats
                .context("ContainerStats answered without stats")?;
            let cpu = stats.cpu.and_then(|c| c.usage_core_nano_seconds);
            let memory = stats.memory.unwrap_or_default();
            println!("cpu-nanos={}", cpu.map_or(0, |v| v.value));
            println!(
                "memory-working-set={}",
                memory.working_set_bytes.map_or(0, |v| v.value)
            );
            println!("memory-usage={}", memory.usage_bytes.map_or(0, |v| v.value));
        }
        Command::Status { id } => {
            let status = client
                .container_status(ContainerStatusRequest {
                    container_id: id,
                    verbose: false,
                })
                .await
                .context("ContainerStatus")?
                .into_inner()
                .status
                .context("ContainerStatus answered without a status")?;
            println!("state={}", status.state().as_str_name());
            println!("exit-code={}", status.exit_code);
            println!("log-path={}", status.log_path);
        }
        Command::PodStatus { id } => {
            let status = client
                .pod_sandbox_status(PodSandboxStatusRequest {
                    pod_sandbox_id: id,
                    verbose: false,
                })
                .await
                .context("PodSandboxStatus")?
                .into_inner()
                .status
                .context("PodSandboxStatus answered without a status")?;
            println!("state={}", status.state().as_str_name());
            let ip = status.network.map(|n| n.ip).unwrap_or_default();
            println!("ip={ip}");
        }
        Command::Stop { timeout, id } => {
            client
                .stop_container(StopContainerRequest {
                    container_id: id,
                    timeout,
                })
                .await
                .context("StopContainer")?;
        }
        Command::Rm { id } => {
            client
                .remove_container(RemoveContainerRequest { container_id: id })
                .await
                .context("RemoveContainer")?;
        }
        Command::StopPod { id } => {
            client
                .stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: id })
                .await
                .context("StopPodSandbox")?;
        }
        Command::RmPod { id } => {
            client
                .remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id })
                .await
                .context("RemovePodSandbox")?;
        }
    }
    Ok(0)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.endpoint.is_empty() {
        bail!("--endpoint is empty: give the runtime's CRI socket");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let code = runtime.block_on(run(cli))?;
    std::process::exit(code);
}
