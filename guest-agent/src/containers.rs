//! The containers of a zone and their processes: what the `Agent` service operates on.
//!
//! Every value in a request is checked ([`crate::wire_spec`], then the container module)
//! before anything changes; a bad one is refused with a [`RequestError`] that names it, and
//! the zone goes on.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use zone_proto::agent::v1::{CreateContainerRequest, ProcessSpec};

use crate::container::zone_userland::zone_command;
use crate::container::{
    CgroupStats, Container, ContainerConfig, ContainerError, ContainerId, Limits, ProcessConfig,
};
use crate::identity::endpoint::{add_endpoint_env, endpoint_uri};
use crate::oom::OomWatch;
use crate::process::{Process, ProcessPlan};
use crate::reaper::Reaper;
use crate::request_error::{report, RequestError};
use crate::wire_spec;

/// The exec id of a container's first process.
pub const MAIN_EXEC_ID: &str = "";

/// Where a container's processes run.
#[derive(Debug)]
enum Isolation {
    /// In the zone's own userland, beside the agent (no rootfs given).
    ZoneUserland,
    /// In a container of their own: root, mounts, namespaces, cgroup.
    Container(Box<Container>),
}

#[derive(Debug)]
struct Entry {
    isolation: Mutex<Isolation>,
    processes: Mutex<HashMap<String, Arc<Process>>>,
}

#[derive(Debug)]
pub struct Containers {
    reaper: Arc<Reaper>,
    containers: Mutex<HashMap<String, Arc<Entry>>>,
    /// `None` when inotify is unavailable: the zone then reports no OOM kills.
    oom: Option<Arc<OomWatch>>,
    /// The zone's resolv.conf once the network is configured with DNS.
    resolv_conf: Mutex<Option<PathBuf>>,
    /// The zone's SPIFFE Workload API directory once the API is served.
    workload_api: Mutex<Option<PathBuf>>,
}

impl Containers {
    pub fn new(reaper: Arc<Reaper>) -> Self {
        let oom = OomWatch::start()
            .inspect_err(|e| tracing::warn!(error = %e, "no OOM events: cannot watch cgroups"))
            .ok();
        Self {
            reaper,
            containers: Mutex::new(HashMap::new()),
            oom,
            resolv_conf: Mutex::new(None),
            workload_api: Mutex::new(None),
        }
    }

    /// Containers created from now on get `path` (the zone's resolv.conf) as their read-only
    /// /etc/resolv.conf, unless their spec mounts something there.
    pub fn use_resolv_conf(&self, path: PathBuf) {
        *lock(&self.resolv_conf) = Some(path);
    }

    /// Containers created from now on see `dir` (the zone's Workload API directory, its
    /// socket inside) read-only at /run/spiffe, and every process the agent starts gets
    /// SPIFFE_ENDPOINT_SOCKET unless its env sets it.
    pub fn use_workload_api(&self, dir: PathBuf) {
        *lock(&self.workload_api) = Some(dir);
    }

    /// The configuration of a container with a root of its own: the request's, with the
    /// zone's resolv.conf and Workload API.
    fn container_config(
        &self,
        request: &CreateContainerRequest,
    ) -> Result<Option<ContainerConfig>, RequestError> {
        let mut config = wire_spec::container_config(request)?;
        if let Some(config) = &mut config {
            config.resolv_conf = lock(&self.resolv_conf).clone();
            config.workload_api = lock(&self.workload_api).clone();
        }
        Ok(config)
    }

    /// The ids of containers with an OOM kill from now on; `None` without OOM events.
    pub fn oom_events(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        self.oom.as_ref().map(|oom| oom.subscribe())
    }

    /// Creates a container and its first process, not started.
    pub fn create(&self, request: &CreateContainerRequest) -> Result<(), RequestError> {
        let config = self.container_config(request)?;
        let spec = request.process.as_ref().ok_or_else(|| {
            RequestError::InvalidArgument("the request has no process".to_string())
        })?;
        let process = wire_spec::process_config(spec)?;
        let id = &request.container_id;
        let mut containers = lock(&self.containers);
        if containers.contains_key(id) {
            return Err(RequestError::AlreadyExists(format!(
                "container {id:?} exists already"
            )));
        }
        let isolation = match &config {
            Some(config) => Isolation::Container(Box::new(
                Container::create(config).map_err(container_error)?,
            )),
            None => {
                if !request.hostname.is_empty() {
                    crate::container::spec::check_hostname(&request.hostname)
                        .map_err(|e| RequestError::InvalidArgument(report(&e)))?;
                    nix::unistd::sethostname(&request.hostname).map_err(|e| {
                        RequestError::Internal(format!("setting the hostname: {e}"))
                    })?;
                }
                Isolation::ZoneUserland
            }
        };
        // A bad process (unknown user, missing directory) must not leave the container made.
        let plan = self.plan(&isolation, &process, spec.stdin)?;
        if let (Isolation::Container(container), Some(oom)) = (&isolation, &self.oom) {
            // Without a memory controller there is no memory.events and nothing to report.
            if let Err(e) = oom.watch(id, container.cgroup_dir()) {
                tracing::warn!(container = %id, error = %e, "not watching for OOM kills");
            }
        }
        let main = Arc::new(Process::new(format!("{id}/main"), plan));
        let entry = Entry {
            isolation: Mutex::new(isolation),
            processes: Mutex::new(HashMap::from([(MAIN_EXEC_ID.to_string(), main)])),
        };
        containers.insert(id.clone(), Arc::new(entry));
        tracing::info!(container = %id, args = ?spec.args, "created");
        Ok(())
    }

    /// Adds a process to a container whose first process runs.
    pub fn exec(
        &self,
        container_id: &str,
        exec_id: &str,
        spec: Option<&ProcessSpec>,
    ) -> Result<(), RequestError> {
        ContainerId::new(exec_id).map_err(|_| {
            RequestError::InvalidArgument(format!(
                "exec id {exec_id:?} is not 1-64 of [A-Za-z0-9_.-] starting with a letter or digit"
            ))
        })?;
        let spec = spec.ok_or_else(|| {
            RequestError::InvalidArgument("the request has no process".to_string())
        })?;
        let process = wire_spec::process_config(spec)?;
        let entry = self.entry(container_id)?;
        let main = self.process(container_id, MAIN_EXEC_ID)?;
        if main.exit().is_some() {
            return Err(RequestError::FailedPrecondition(format!(
                "container {container_id:?} has exited"
            )));
        }
        if main.pid().is_none() {
            return Err(RequestError::Unavailable(format!(
                "container {container_id:?} has not started yet"
            )));
        }
        let plan = self.plan(&lock(&entry.isolation), &process, spec.stdin)?;
        let mut processes = lock(&entry.processes);
        if processes.contains_key(exec_id) {
            return Err(RequestError::AlreadyExists(format!(
                "exec id {exec_id:?} is taken in container {container_id:?}"
            )));
        }
        let name = format!("{container_id}/{exec_id}");
        processes.insert(exec_id.to_string(), Arc::new(Process::new(name, plan)));
        Ok(())
    }

    pub fn start(&self, container_id: &str, exec_id: &str) -> Result<u32, RequestError> {
        self.process(container_id, exec_id)?.start(&self.reaper)
    }

    /// One process of one container.
    pub fn process(&self, container_id: &str, exec_id: &str) -> Result<Arc<Process>, RequestError> {
        let entry = self.entry(container_id)?;
        let processes = lock(&entry.processes);
        processes.get(exec_id).cloned().ok_or_else(|| {
            RequestError::NotFound(format!(
                "container {container_id:?} has no process with exec id {exec_id:?}"
            ))
        })
    }

    /// Signals one process, or with `all` every process in the container.
    pub fn signal(
        &self,
        container_id: &str,
        exec_id: &str,
        signal: i32,
        all: bool,
    ) -> Result<(), RequestError> {
        let signal = Signal::try_from(signal)
            .map_err(|_| RequestError::InvalidArgument(format!("{signal} is not a signal")))?;
        if !all {
            return self.process(container_id, exec_id)?.signal(signal);
        }
        for pid in self.pids(container_id)? {
            // It may exit meanwhile: not an error for `all`.
            let _ = kill(Pid::from_raw(pid as i32), signal);
        }
        Ok(())
    }

    /// The pids of every process in the container: its cgroup's, which includes what its
    /// processes started; in the zone's userland, the processes the agent started.
    pub fn pids(&self, container_id: &str) -> Result<Vec<u32>, RequestError> {
        let entry = self.entry(container_id)?;
        let mut pids = match &*lock(&entry.isolation) {
            Isolation::Container(container) => container.pids().map_err(container_error)?,
            Isolation::ZoneUserland => lock(&entry.processes)
                .values()
                .filter_map(|process| process.pid())
                .collect(),
        };
        pids.sort_unstable();
        Ok(pids)
    }

    /// CPU, memory and pids of the container's cgroup.
    pub fn stats(&self, container_id: &str) -> Result<CgroupStats, RequestError> {
        let entry = self.entry(container_id)?;
        let isolation = lock(&entry.isolation);
        match &*isolation {
            Isolation::Container(container) => container.stats().map_err(container_error),
            Isolation::ZoneUserland => Err(RequestError::FailedPrecondition(format!(
                "container {container_id:?} runs in the zone's own userland and has no cgroup"
            ))),
        }
    }

    /// Changes the limits of the container's cgroup.
    pub fn update(&self, container_id: &str, limits: &Limits) -> Result<(), RequestError> {
        let entry = self.entry(container_id)?;
        let isolation = lock(&entry.isolation);
        match &*isolation {
            Isolation::Container(container) => container.update(limits).map_err(container_error),
            Isolation::ZoneUserland => Err(RequestError::FailedPrecondition(format!(
                "container {container_id:?} runs in the zone's own userland and has no cgroup"
            ))),
        }
    }

    /// Kills what still runs in the container, waits for the processes the agent started,
    /// unmounts and removes it.
    pub async fn remove(&self, container_id: &str) -> Result<(), RequestError> {
        let entry = self.entry(container_id)?;
        for pid in self.pids(container_id)? {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        let processes: Vec<Arc<Process>> = lock(&entry.processes).values().cloned().collect();
        for process in processes.iter().filter(|p| p.pid().is_some()) {
            process.wait().await;
        }
        if let Some(oom) = &self.oom {
            oom.unwatch(container_id);
        }
        if let Isolation::Container(container) = &mut *lock(&entry.isolation) {
            container.destroy().map_err(container_error)?;
        }
        lock(&self.containers).remove(container_id);
        tracing::info!(container = %container_id, "removed");
        Ok(())
    }

    fn entry(&self, id: &str) -> Result<Arc<Entry>, RequestError> {
        lock(&self.containers)
            .get(id)
            .cloned()
            .ok_or_else(|| RequestError::NotFound(format!("no container {id:?} in this zone")))
    }

    /// Builds the command of a process where its container runs it. A container's
    /// processes get SPIFFE_ENDPOINT_SOCKET from the container (the API is at /run/spiffe
    /// there); those in the zone's userland see the agent's own directory.
    fn plan(
        &self,
        isolation: &Isolation,
        process: &ProcessConfig,
        stdin: bool,
    ) -> Result<ProcessPlan, RequestError> {
        let (command, ptmx) = match isolation {
            Isolation::Container(container) => (
                container.command(process).map_err(container_error)?,
                container.ptmx(),
            ),
            Isolation::ZoneUserland => {
                let mut process = process.clone();
                if let Some(dir) = lock(&self.workload_api).as_deref() {
                    add_endpoint_env(&mut process.env, &endpoint_uri(dir));
                }
                (
                    zone_command(&process).map_err(container_error)?,
                    PathBuf::from("/dev/ptmx"),
                )
            }
        };
        Ok(ProcessPlan {
            command,
            program: process.args[0].clone(),
            terminal: process.terminal,
            stdin,
            ptmx,
        })
    }
}

/// The gRPC-facing kind of a container error: the caller's mistake, the zone's state, or
/// the agent failing.
fn container_error(error: ContainerError) -> RequestError {
    let message = report(&error);
    match error {
        ContainerError::Config(_)
        | ContainerError::User(_)
        | ContainerError::Capability(_)
        | ContainerError::CwdNotDirectory(_)
        | ContainerError::Volume(_)
        | ContainerError::Rootfs(_) => RequestError::InvalidArgument(message),
        ContainerError::AlreadyExists(_) => RequestError::AlreadyExists(message),
        ContainerError::DeviceInUse { .. } => RequestError::FailedPrecondition(message),
        ContainerError::Destroyed(_) => RequestError::NotFound(message),
        ContainerError::Cgroup(_) | ContainerError::Hostname(_) | ContainerError::LastCap(_) => {
            RequestError::Internal(message)
        }
    }
}

/// Locks `mutex`; a panic elsewhere while it was held does not make the data unusable here.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use zone_proto::agent::v1::{ContainerRootfs, Mount};

    fn request(mounts: Vec<Mount>) -> CreateContainerRequest {
        CreateContainerRequest {
            container_id: "c1".into(),
            rootfs: Some(ContainerRootfs {
                device: "/dev/vdb".into(),
                fstype: "ext4".into(),
            }),
            mounts,
            process: Some(ProcessSpec {
                args: vec!["true".into()],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn test_container_config_gets_resolv_conf_once_configured() {
        let containers = Containers::new(Arc::new(Reaper::per_child()));
        let before = containers.container_config(&request(vec![])).unwrap();
        assert_eq!(before.unwrap().resolv_conf, None);

        containers.use_resolv_conf(PathBuf::from("/run/zone/resolv.conf"));
        let after = containers
            .container_config(&request(vec![]))
            .unwrap()
            .unwrap();

        assert_eq!(
            after.zone_resolv_conf(),
            Some(std::path::Path::new("/run/zone/resolv.conf"))
        );
        let spec_mount = Mount {
            destination: "/etc/resolv.conf".into(),
            r#type: "bind".into(),
            source: "/volumes/dns/resolv.conf".into(),
            options: vec!["ro".into()],
        };
        let own = containers
            .container_config(&request(vec![spec_mount]))
            .unwrap();
        assert_eq!(own.unwrap().zone_resolv_conf(), None);
    }

    #[test]
    fn test_container_config_gets_workload_api_once_served() {
        let containers = Containers::new(Arc::new(Reaper::per_child()));
        let before = containers.container_config(&request(vec![])).unwrap();
        assert_eq!(before.unwrap().zone_workload_api(), None);

        containers.use_workload_api(PathBuf::from("/run/zone/spiffe"));
        let after = containers
            .container_config(&request(vec![]))
            .unwrap()
            .unwrap();

        assert_eq!(
            after.zone_workload_api(),
            Some(std::path::Path::new("/run/zone/spiffe"))
        );
    }

    #[test]
    fn test_zone_userland_process_gets_agent_endpoint_unless_set() {
        let containers = Containers::new(Arc::new(Reaper::per_child()));
        containers.use_workload_api(PathBuf::from("/run/zone/spiffe"));
        let env_of = |env: Vec<String>| {
            let mut process = ProcessConfig::new(&["true"]);
            process.env = env;
            let plan = containers
                .plan(&Isolation::ZoneUserland, &process, false)
                .unwrap();
            plan.command
                .get_envs()
                .filter(|(k, _)| *k == "SPIFFE_ENDPOINT_SOCKET")
                .filter_map(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()))
                .collect::<Vec<_>>()
        };

        assert_eq!(env_of(vec![]), ["unix:///run/zone/spiffe/workload.sock"]);
        assert_eq!(
            env_of(vec!["SPIFFE_ENDPOINT_SOCKET=unix:///elsewhere.sock".into()]),
            ["unix:///elsewhere.sock"]
        );
    }
}
