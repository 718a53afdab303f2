//! The containerd task API (`containerd.task.v2.Task`) for one pod's zone.
//!
//! Every RPC is implemented (the generated defaults answer NOT_FOUND, which containerd
//! misreads). Pause, Resume and Checkpoint answer UNIMPLEMENTED; Update changes a container's
//! memory, CPU and pids limits in the zone. The first Create boots the zone with the
//! container's root file system; later ones (a pod's containers) go into the zone's spare
//! disks. Deleting the last container powers the zone off; Shutdown then ends the shim.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim_protos::api::{
    CheckpointTaskRequest, CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest,
    CreateTaskResponse, DeleteRequest, DeleteResponse, Empty, ExecProcessRequest, KillRequest,
    PauseRequest, PidsRequest, PidsResponse, ProcessInfo, ResizePtyRequest, ResumeRequest,
    ShutdownRequest, StartRequest, StartResponse, StateRequest, StateResponse, StatsRequest,
    StatsResponse, Status as TaskStatus, UpdateTaskRequest, WaitRequest, WaitResponse,
};
use containerd_shim_protos::cgroups_v2::metrics::{CPUStat, MemoryStat, Metrics, PidsStat};
use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskStart,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message as _;
use containerd_shim_protos::shim_async::Task;
use containerd_shim_protos::topics::{
    TASK_CREATE_EVENT_TOPIC, TASK_DELETE_EVENT_TOPIC, TASK_EXEC_ADDED_EVENT_TOPIC,
    TASK_EXEC_STARTED_EVENT_TOPIC, TASK_START_EVENT_TOPIC,
};
use containerd_shim_protos::ttrpc::{self, r#async::TtrpcContext, Code};
use thiserror::Error;
use tokio::sync::{Mutex, Notify};
use zone_proto::agent::v1::{
    ContainerStatsRequest, ExecProcessRequest as AgentExec, ListProcessesRequest,
    RemoveContainerRequest, ResizePtyRequest as AgentResize, SignalProcessRequest,
    StartProcessRequest,
};

use crate::process::{Process, Status, Watch};
use crate::rootfs::{self, RootfsError};
use crate::settings::{Settings, SettingsError};
use crate::spec::{self, Resources, Spec, SpecError};
use crate::stdio::{self, StdioPaths};
use crate::zone::{PodNetwork, Zone, ZoneError, ZoneSize};

/// containerd's type URL for cgroup v2 metrics (`ctr task metrics` decodes it).
const METRICS_V2_TYPE_URL: &str = "io.containerd.cgroups.v2.Metrics";
/// CRI's runtime options (`runtimeoptions.v1.Options`), carrying the config file path.
const RUNTIME_OPTIONS_TYPE_URL: &str = "runtimeoptions.v1.Options";

#[derive(Debug, Error)]
pub enum TaskError {
    #[error("container {0} not found")]
    ContainerNotFound(String),
    #[error("process {exec:?} of container {container} not found")]
    ProcessNotFound { container: String, exec: String },
    #[error("process already finished")]
    AlreadyFinished,
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    Precondition(String),
    #[error("{0}")]
    Unimplemented(&'static str),
    #[error("the zone is not running")]
    NoZone,
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    Zone(#[from] ZoneError),
    #[error("opening the FIFO")]
    Fifo(#[source] std::io::Error),
    #[error("the zone agent: {}", .0.message())]
    Agent(Box<tonic::Status>),
}

impl From<TaskError> for ttrpc::Error {
    fn from(e: TaskError) -> ttrpc::Error {
        let code = match &e {
            TaskError::ContainerNotFound(_)
            | TaskError::ProcessNotFound { .. }
            | TaskError::AlreadyFinished => Code::NOT_FOUND,
            TaskError::AlreadyExists(_) => Code::ALREADY_EXISTS,
            TaskError::Precondition(_) | TaskError::NoZone => Code::FAILED_PRECONDITION,
            TaskError::Unimplemented(_) => Code::UNIMPLEMENTED,
            TaskError::Spec(_) | TaskError::Settings(_) => Code::INVALID_ARGUMENT,
            TaskError::Rootfs(_) | TaskError::Zone(_) | TaskError::Fifo(_) => Code::INTERNAL,
            TaskError::Agent(status) => match status.code() {
                tonic::Code::InvalidArgument => Code::INVALID_ARGUMENT,
                tonic::Code::NotFound => Code::NOT_FOUND,
                tonic::Code::AlreadyExists => Code::ALREADY_EXISTS,
                tonic::Code::FailedPrecondition => Code::FAILED_PRECONDITION,
                tonic::Code::Unavailable => Code::UNAVAILABLE,
                tonic::Code::DeadlineExceeded => Code::DEADLINE_EXCEEDED,
                _ => Code::INTERNAL,
            },
        };
        // The whole chain: containerd shows only this message.
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        tracing::info!(?code, %message, "request failed");
        ttrpc::Error::RpcStatus(ttrpc::get_status(code, message))
    }
}

type TaskResult<T> = Result<T, TaskError>;

fn agent_error(status: tonic::Status) -> TaskError {
    TaskError::Agent(Box::new(status))
}

#[derive(Debug)]
struct Container {
    bundle: String,
    /// Its root file system's disk in the zone (`/dev/vdb`).
    device: String,
    processes: HashMap<String, Process>,
}

#[derive(Debug, Default)]
struct State {
    zone: Option<Zone>,
    containers: HashMap<String, Container>,
}

impl State {
    fn container(&mut self, id: &str) -> TaskResult<&mut Container> {
        self.containers
            .get_mut(id)
            .ok_or_else(|| TaskError::ContainerNotFound(id.to_string()))
    }

    fn process(&mut self, id: &str, exec: &str) -> TaskResult<&mut Process> {
        self.container(id)?
            .processes
            .get_mut(exec)
            .ok_or_else(|| TaskError::ProcessNotFound {
                container: id.to_string(),
                exec: exec.to_string(),
            })
    }

    fn zone(&self) -> TaskResult<&Zone> {
        self.zone.as_ref().ok_or(TaskError::NoZone)
    }
}

/// The task service of one shim (one pod, one zone).
#[derive(Debug)]
pub struct ZoneTasks {
    /// The zone's id: its state directory's name.
    zone_id: String,
    events: crate::events::Events,
    state: Mutex<State>,
    /// Notified when the shim should exit (Shutdown with no container left).
    exit: Arc<Notify>,
}

impl ZoneTasks {
    pub fn new(zone_id: String, events: crate::events::Events, exit: Arc<Notify>) -> ZoneTasks {
        ZoneTasks {
            zone_id,
            events,
            state: Mutex::new(State::default()),
            exit,
        }
    }

    async fn do_create(&self, req: CreateTaskRequest) -> TaskResult<CreateTaskResponse> {
        let bundle = PathBuf::from(&req.bundle);
        let spec = Spec::load(&bundle)?;
        let mut state = self.state.lock().await;
        if state.containers.contains_key(&req.id) {
            return Err(TaskError::AlreadyExists(format!("container {}", req.id)));
        }
        let target = bundle.join("rootfs");
        let mounted = rootfs::mount(&req.rootfs, &target).await?;
        let placed = self.place_rootfs(&mut state, &spec, &req, &target).await;
        if mounted {
            rootfs::unmount(&target);
        }
        let device = placed?;
        let stdio = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let mut create = spec.create_request(&req.id, &device, !req.stdin.is_empty())?;
        if let Some(process) = create.process.as_mut() {
            process.terminal = req.terminal;
        }
        let client = state.zone()?.client();
        let created = client.clone().create_container(create).await;
        if let Err(status) = created {
            if state.containers.is_empty() {
                if let Some(zone) = state.zone.take() {
                    zone.shut_down().await;
                }
            }
            return Err(agent_error(status));
        }
        let outputs = stdio::copy_output(&client, &req.id, "", &stdio).map_err(TaskError::Fifo)?;
        let mut processes = HashMap::new();
        processes.insert(String::new(), Process::new(stdio.clone(), outputs));
        state.containers.insert(
            req.id.clone(),
            Container {
                bundle: req.bundle.clone(),
                device: device.clone(),
                processes,
            },
        );
        self.events.publish(
            TASK_CREATE_EVENT_TOPIC,
            TaskCreate {
                container_id: req.id.clone(),
                bundle: req.bundle.clone(),
                rootfs: req.rootfs.clone(),
                io: Some(TaskIO {
                    stdin: stdio.stdin,
                    stdout: stdio.stdout,
                    stderr: stdio.stderr,
                    terminal: stdio.terminal,
                    ..Default::default()
                })
                .into(),
                ..Default::default()
            },
        );
        tracing::info!(container = %req.id, %device, "container created");
        Ok(CreateTaskResponse::default())
    }

    /// Boots the zone with this container's root file system, or writes it into a spare disk
    /// of the running zone; returns its device in the zone.
    async fn place_rootfs(
        &self,
        state: &mut State,
        spec: &Spec,
        req: &CreateTaskRequest,
        rootfs_dir: &Path,
    ) -> TaskResult<String> {
        if let Some(zone) = state.zone.as_mut() {
            return Ok(zone.add_rootfs(rootfs_dir).await?);
        }
        let settings = Settings::load(config_path(req).as_deref())?;
        let memory_mib = spec
            .sandbox_memory()
            .map(|bytes| (bytes >> 20).max(settings.memory_mib))
            .unwrap_or(settings.memory_mib);
        let size = ZoneSize {
            memory_mib,
            cpus: settings.cpus,
            // Only a pod sandbox can be joined by later containers.
            spare_disks: if spec.is_cri_sandbox() {
                settings.spare_disks
            } else {
                0
            },
        };
        let network = pod_network(spec);
        let pod = spec.pod_facts();
        let zone = Zone::boot(
            &settings,
            &self.zone_id,
            size,
            rootfs_dir,
            network.as_ref(),
            &pod,
        )
        .await?;
        crate::oom::forward(zone.client(), self.events.clone());
        state.zone = Some(zone);
        Ok(crate::zone::device_name(0))
    }

    async fn do_start(&self, req: StartRequest) -> TaskResult<StartResponse> {
        let mut state = self.state.lock().await;
        let client = state.zone()?.client();
        let process = state.process(&req.id, &req.exec_id)?;
        if process.status() != Status::Created {
            return Err(TaskError::Precondition(format!(
                "process {:?} of {} was started already",
                req.exec_id, req.id
            )));
        }
        let pid = client
            .clone()
            .start_process(StartProcessRequest {
                container_id: req.id.clone(),
                exec_id: req.exec_id.clone(),
            })
            .await
            .map_err(agent_error)?
            .into_inner()
            .pid;
        if req.exec_id.is_empty() {
            self.events.publish(
                TASK_START_EVENT_TOPIC,
                TaskStart {
                    container_id: req.id.clone(),
                    pid,
                    ..Default::default()
                },
            );
        } else {
            self.events.publish(
                TASK_EXEC_STARTED_EVENT_TOPIC,
                TaskExecStarted {
                    container_id: req.id.clone(),
                    exec_id: req.exec_id.clone(),
                    pid,
                    ..Default::default()
                },
            );
        }
        if !process.stdio.stdin.is_empty() {
            stdio::copy_stdin(
                &client,
                &req.id,
                &req.exec_id,
                &process.stdio.stdin,
                Arc::clone(&process.stdin_close),
            )
            .map_err(TaskError::Fifo)?;
        }
        process.started(
            pid,
            Watch {
                client,
                events: self.events.clone(),
                container: req.id.clone(),
                exec: req.exec_id.clone(),
            },
        );
        tracing::info!(container = %req.id, exec = %req.exec_id, pid, "process started");
        Ok(StartResponse {
            pid,
            ..Default::default()
        })
    }

    async fn do_exec(&self, req: ExecProcessRequest) -> TaskResult<Empty> {
        let mut state = self.state.lock().await;
        let client = state.zone()?.client();
        let container = state.container(&req.id)?;
        if container.processes.contains_key(&req.exec_id) {
            return Err(TaskError::AlreadyExists(format!("exec {}", req.exec_id)));
        }
        let process = spec::parse_process(&req.spec.value)?;
        let mut process = spec::process_spec(&process, !req.stdin.is_empty());
        process.terminal = req.terminal;
        client
            .clone()
            .exec_process(AgentExec {
                container_id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                process: Some(process),
            })
            .await
            .map_err(agent_error)?;
        let stdio = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let outputs =
            stdio::copy_output(&client, &req.id, &req.exec_id, &stdio).map_err(TaskError::Fifo)?;
        container
            .processes
            .insert(req.exec_id.clone(), Process::new(stdio, outputs));
        self.events.publish(
            TASK_EXEC_ADDED_EVENT_TOPIC,
            TaskExecAdded {
                container_id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                ..Default::default()
            },
        );
        Ok(Empty::default())
    }

    async fn do_kill(&self, req: KillRequest) -> TaskResult<Empty> {
        let mut state = self.state.lock().await;
        let client = state.zone()?.client();
        let process = state.process(&req.id, &req.exec_id)?;
        match process.status() {
            Status::Stopped => return Err(TaskError::AlreadyFinished),
            Status::Created => {
                // Nothing runs yet: the process ends here, as a killed one would.
                if let Some(exit) = process.exit_unstarted(128 + req.signal) {
                    self.events.publish(
                        containerd_shim_protos::topics::TASK_EXIT_EVENT_TOPIC,
                        TaskExit {
                            container_id: req.id.clone(),
                            id: if req.exec_id.is_empty() {
                                req.id.clone()
                            } else {
                                req.exec_id.clone()
                            },
                            exit_status: exit.status,
                            exited_at: Some(exit.timestamp()).into(),
                            ..Default::default()
                        },
                    );
                }
                return Ok(Empty::default());
            }
            Status::Running => {}
        }
        client
            .clone()
            .signal_process(SignalProcessRequest {
                container_id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                signal: i32::try_from(req.signal).unwrap_or(0),
                all: req.all,
            })
            .await
            .map_err(agent_error)?;
        Ok(Empty::default())
    }

    async fn do_delete(&self, req: DeleteRequest) -> TaskResult<DeleteResponse> {
        let mut state = self.state.lock().await;
        let process = state.process(&req.id, &req.exec_id)?;
        if process.status() == Status::Running {
            return Err(TaskError::Precondition(format!(
                "process {:?} of {} is running: kill it first",
                req.exec_id, req.id
            )));
        }
        let exit = process
            .exit()
            .unwrap_or_else(|| crate::process::Exit::now(0));
        let pid = process.pid;
        let response = DeleteResponse {
            pid,
            exit_status: exit.status,
            exited_at: Some(exit.timestamp()).into(),
            ..Default::default()
        };
        if !req.exec_id.is_empty() {
            state.container(&req.id)?.processes.remove(&req.exec_id);
            return Ok(response);
        }
        let removed = match state.zone.as_ref() {
            Some(zone) => zone
                .client()
                .remove_container(RemoveContainerRequest {
                    container_id: req.id.clone(),
                })
                .await
                .map(|_| ()),
            None => Ok(()),
        };
        if let Err(status) = &removed {
            tracing::warn!(container = %req.id, error = %status.message(), "removing the container in the zone");
        }
        if let Some(container) = state.containers.remove(&req.id) {
            rootfs::unmount(&Path::new(&container.bundle).join("rootfs"));
            // Its disk is free again once the zone no longer has it mounted.
            if let (Ok(()), Some(zone)) = (&removed, state.zone.as_mut()) {
                zone.release_rootfs(&container.device);
            }
        }
        self.events.publish(
            TASK_DELETE_EVENT_TOPIC,
            TaskDelete {
                container_id: req.id.clone(),
                pid,
                exit_status: exit.status,
                exited_at: Some(exit.timestamp()).into(),
                ..Default::default()
            },
        );
        if state.containers.is_empty() {
            if let Some(zone) = state.zone.take() {
                zone.shut_down().await;
            }
        }
        tracing::info!(container = %req.id, "container deleted");
        Ok(response)
    }

    async fn do_wait(&self, req: WaitRequest) -> TaskResult<WaitResponse> {
        let mut exit = {
            let mut state = self.state.lock().await;
            state.process(&req.id, &req.exec_id)?.exit_receiver()
        };
        let exit = exit
            .wait_for(Option::is_some)
            .await
            .map_err(|_| TaskError::ProcessNotFound {
                container: req.id.clone(),
                exec: req.exec_id.clone(),
            })?
            .unwrap_or_else(|| crate::process::Exit::now(0));
        Ok(WaitResponse {
            exit_status: exit.status,
            exited_at: Some(exit.timestamp()).into(),
            ..Default::default()
        })
    }

    async fn do_state(&self, req: StateRequest) -> TaskResult<StateResponse> {
        let mut state = self.state.lock().await;
        let bundle = state.container(&req.id)?.bundle.clone();
        let process = state.process(&req.id, &req.exec_id)?;
        let status = match process.status() {
            Status::Created => TaskStatus::CREATED,
            Status::Running => TaskStatus::RUNNING,
            Status::Stopped => TaskStatus::STOPPED,
        };
        let exit = process.exit();
        Ok(StateResponse {
            id: req.id.clone(),
            bundle,
            pid: process.pid,
            status: status.into(),
            stdin: process.stdio.stdin.clone(),
            stdout: process.stdio.stdout.clone(),
            stderr: process.stdio.stderr.clone(),
            terminal: process.stdio.terminal,
            exit_status: exit.map(|e| e.status).unwrap_or(0),
            exited_at: exit.map(|e| e.timestamp()).into(),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        })
    }

    async fn do_pids(&self, req: PidsRequest) -> TaskResult<PidsResponse> {
        let client = {
            let mut state = self.state.lock().await;
            state.container(&req.id)?;
            state.zone()?.client()
        };
        let pids = client
            .clone()
            .list_processes(ListProcessesRequest {
                container_id: req.id.clone(),
            })
            .await
            .map_err(agent_error)?
            .into_inner()
            .pids;
        Ok(PidsResponse {
            processes: pids
                .into_iter()
                .map(|pid| ProcessInfo {
                    pid,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    async fn do_stats(&self, req: StatsRequest) -> TaskResult<StatsResponse> {
        let client = {
            let mut state = self.state.lock().await;
            state.container(&req.id)?;
            state.zone()?.client()
        };
        let stats = client
            .clone()
            .container_stats(ContainerStatsRequest {
                container_id: req.id.clone(),
            })
            .await
            .map_err(agent_error)?
            .into_inner();
        let metrics = Metrics {
            pids: Some(PidsStat {
                current: stats.pids_current,
                ..Default::default()
            })
            .into(),
            cpu: Some(CPUStat {
                usage_usec: stats.cpu_usage_usec,
                user_usec: stats.cpu_user_usec,
                system_usec: stats.cpu_system_usec,
                ..Default::default()
            })
            .into(),
            memory: Some(MemoryStat {
                usage: stats.memory_current_bytes,
                usage_limit: stats.memory_limit_bytes,
                anon: stats.memory_anon_bytes,
                file: stats.memory_file_bytes,
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        let value = metrics
            .write_to_bytes()
            .map_err(|e| TaskError::Precondition(format!("encoding metrics: {e}")))?;
        Ok(StatsResponse {
            stats: Some(Any {
                type_url: METRICS_V2_TYPE_URL.to_string(),
                value,
                ..Default::default()
            })
            .into(),
            ..Default::default()
        })
    }

    async fn do_close_io(&self, req: CloseIORequest) -> TaskResult<Empty> {
        let mut state = self.state.lock().await;
        let process = state.process(&req.id, &req.exec_id)?;
        if req.stdin {
            process.stdin_close.notify_one();
        }
        Ok(Empty::default())
    }

    async fn do_resize_pty(&self, req: ResizePtyRequest) -> TaskResult<Empty> {
        let client = {
            let mut state = self.state.lock().await;
            state.process(&req.id, &req.exec_id)?;
            state.zone()?.client()
        };
        client
            .clone()
            .resize_pty(AgentResize {
                container_id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                rows: req.height,
                columns: req.width,
            })
            .await
            .map_err(agent_error)?;
        Ok(Empty::default())
    }

    async fn do_connect(&self, req: ConnectRequest) -> TaskResult<ConnectResponse> {
        let mut state = self.state.lock().await;
        let task_pid = state.process(&req.id, "").map(|p| p.pid).unwrap_or(0);
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    async fn do_shutdown(&self) -> TaskResult<Empty> {
        let state = self.state.lock().await;
        if state.containers.is_empty() {
            tracing::info!("no container left: the shim exits");
            self.exit.notify_one();
        }
        Ok(Empty::default())
    }

    async fn do_update(&self, req: UpdateTaskRequest) -> TaskResult<Empty> {
        let state = self.state.lock().await;
        if !state.containers.contains_key(&req.id) {
            return Err(TaskError::ContainerNotFound(req.id));
        }
        let resources = Resources::from_update(&req.resources.type_url, &req.resources.value)?;
        let update = resources.update_request(&req.id);
        let mut client = state.zone()?.client();
        drop(state);
        client.update_container(update).await.map_err(agent_error)?;
        tracing::info!(container = %req.id, "resources updated");
        Ok(Empty::new())
    }
}

/// The config file path in CRI's runtime options, if any.
/// The pod network a zone joins: the namespace CNI prepared (named in the sandbox's spec) and
/// the pod's DNS settings (the resolv.conf CRI binds into its containers). `None`: loopback
/// only.
fn pod_network(spec: &Spec) -> Option<PodNetwork> {
    let netns = spec.network_namespace()?.to_path_buf();
    let dns = match spec.resolv_conf_source().map(std::fs::read_to_string) {
        Some(Ok(text)) => zone_net::dns::parse_resolv_conf(&text).dns,
        Some(Err(e)) => {
            tracing::warn!(error = %e, "cannot read the pod's resolv.conf; the zone gets no DNS");
            zone_net::DnsConfig::default()
        }
        None => zone_net::DnsConfig::default(),
    };
    Some(PodNetwork { netns, dns })
}

fn config_path(req: &CreateTaskRequest) -> Option<PathBuf> {
    #[derive(Clone, PartialEq, prost::Message)]
    struct RuntimeOptions {
        #[prost(string, tag = "1")]
        type_url: String,
        #[prost(string, tag = "2")]
        config_path: String,
    }
    let options = req.options.as_ref()?;
    if !options.type_url.ends_with(RUNTIME_OPTIONS_TYPE_URL) {
        return None;
    }
    let decoded = <RuntimeOptions as prost::Message>::decode(options.value.as_slice()).ok()?;
    (!decoded.config_path.is_empty()).then(|| PathBuf::from(decoded.config_path))
}

#[async_trait]
impl Task for ZoneTasks {
    async fn create(
        &self,
        _: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> ttrpc::Result<CreateTaskResponse> {
        tracing::info!(id = %req.id, "create");
        Ok(self.do_create(req).await?)
    }

    async fn start(&self, _: &TtrpcContext, req: StartRequest) -> ttrpc::Result<StartResponse> {
        Ok(self.do_start(req).await?)
    }

    async fn delete(&self, _: &TtrpcContext, req: DeleteRequest) -> ttrpc::Result<DeleteResponse> {
        Ok(self.do_delete(req).await?)
    }

    async fn pids(&self, _: &TtrpcContext, req: PidsRequest) -> ttrpc::Result<PidsResponse> {
        Ok(self.do_pids(req).await?)
    }

    async fn pause(&self, _: &TtrpcContext, _: PauseRequest) -> ttrpc::Result<Empty> {
        Err(TaskError::Unimplemented("Pause: a zone's containers cannot be paused").into())
    }

    async fn resume(&self, _: &TtrpcContext, _: ResumeRequest) -> ttrpc::Result<Empty> {
        Err(TaskError::Unimplemented("Resume: a zone's containers cannot be paused").into())
    }

    async fn checkpoint(&self, _: &TtrpcContext, _: CheckpointTaskRequest) -> ttrpc::Result<Empty> {
        Err(TaskError::Unimplemented("Checkpoint: zones do not checkpoint containers").into())
    }

    async fn kill(&self, _: &TtrpcContext, req: KillRequest) -> ttrpc::Result<Empty> {
        Ok(self.do_kill(req).await?)
    }

    async fn exec(&self, _: &TtrpcContext, req: ExecProcessRequest) -> ttrpc::Result<Empty> {
        Ok(self.do_exec(req).await?)
    }

    async fn resize_pty(&self, _: &TtrpcContext, req: ResizePtyRequest) -> ttrpc::Result<Empty> {
        Ok(self.do_resize_pty(req).await?)
    }

    async fn close_io(&self, _: &TtrpcContext, req: CloseIORequest) -> ttrpc::Result<Empty> {
        Ok(self.do_close_io(req).await?)
    }

    async fn update(&self, _: &TtrpcContext, req: UpdateTaskRequest) -> ttrpc::Result<Empty> {
        Ok(self.do_update(req).await?)
    }

    async fn wait(&self, _: &TtrpcContext, req: WaitRequest) -> ttrpc::Result<WaitResponse> {
        Ok(self.do_wait(req).await?)
    }

    async fn stats(&self, _: &TtrpcContext, req: StatsRequest) -> ttrpc::Result<StatsResponse> {
        Ok(self.do_stats(req).await?)
    }

    async fn connect(
        &self,
        _: &TtrpcContext,
        req: ConnectRequest,
    ) -> ttrpc::Result<ConnectResponse> {
        Ok(self.do_connect(req).await?)
    }

    async fn shutdown(&self, _: &TtrpcContext, _: ShutdownRequest) -> ttrpc::Result<Empty> {
        Ok(self.do_shutdown().await?)
    }

    async fn state(&self, _: &TtrpcContext, req: StateRequest) -> ttrpc::Result<StateResponse> {
        Ok(self.do_state(req).await?)
    }
}
