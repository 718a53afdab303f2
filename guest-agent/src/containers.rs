//! The containers of a zone and their processes: what the `Agent` service operates on.
//!
//! Every value in a request is checked here before anything changes; a bad one is refused
//! with a [`RequestError`] that names it, and the zone goes on.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};

use nix::sys::signal::{SigSet, Signal};
use zone_proto::agent::v1::{ContainerRootfs, CreateContainerRequest, ProcessSpec};

use crate::container::rootfs::CONTAINER_ROOT;
use crate::container::{Launch, Placement};
use crate::process::{Process, ProcessPlan};
use crate::reaper::Reaper;
use crate::request_error::{report, RequestError};

/// The exec id of a container's first process.
pub const MAIN_EXEC_ID: &str = "";
const MAX_ID_LEN: usize = 64;

#[derive(Debug)]
struct Container {
    rootfs: Option<ContainerRootfs>,
    processes: Mutex<HashMap<String, Arc<Process>>>,
}

#[derive(Debug)]
pub struct Containers {
    reaper: Arc<Reaper>,
    containers: Mutex<HashMap<String, Arc<Container>>>,
}

impl Containers {
    pub fn new(reaper: Arc<Reaper>) -> Self {
        Self {
            reaper,
            containers: Mutex::new(HashMap::new()),
        }
    }

    /// Creates a container and its first process, not started.
    pub fn create(&self, request: &CreateContainerRequest) -> Result<(), RequestError> {
        let id = &request.container_id;
        check_id("container id", id)?;
        let process = request.process.as_ref().ok_or_else(|| {
            RequestError::InvalidArgument("the request has no process".to_string())
        })?;
        check_unsupported(request, process)?;
        let mut containers = lock(&self.containers);
        if containers.contains_key(id) {
            return Err(RequestError::AlreadyExists(format!(
                "container {id:?} exists already"
            )));
        }
        let placement = Placement {
            rootfs: request.rootfs.as_ref(),
            cwd: &process.cwd,
            user: &process.user,
            hostname: &request.hostname,
        };
        let plan = plan(process, &placement)?;
        let main = Arc::new(Process::new(format!("{id}/main"), plan));
        let container = Container {
            rootfs: request.rootfs.clone(),
            processes: Mutex::new(HashMap::from([(MAIN_EXEC_ID.to_string(), main)])),
        };
        containers.insert(id.clone(), Arc::new(container));
        tracing::info!(container = %id, args = ?process.args, "created");
        Ok(())
    }

    /// Adds a process to a container whose first process runs.
    pub fn exec(
        &self,
        container_id: &str,
        exec_id: &str,
        process: Option<&ProcessSpec>,
    ) -> Result<(), RequestError> {
        check_id("exec id", exec_id)?;
        let process = process.ok_or_else(|| {
            RequestError::InvalidArgument("the request has no process".to_string())
        })?;
        let container = self.container(container_id)?;
        let main = self.process(container_id, MAIN_EXEC_ID)?;
        if main.pid().is_none() {
            return Err(RequestError::FailedPrecondition(format!(
                "container {container_id:?} is not running"
            )));
        }
        let mut processes = lock(&container.processes);
        if processes.contains_key(exec_id) {
            return Err(RequestError::AlreadyExists(format!(
                "exec id {exec_id:?} is taken in container {container_id:?}"
            )));
        }
        let placement = Placement {
            rootfs: container.rootfs.as_ref(),
            cwd: &process.cwd,
            user: &process.user,
            hostname: "",
        };
        let plan = plan(process, &placement)?;
        let name = format!("{container_id}/{exec_id}");
        processes.insert(exec_id.to_string(), Arc::new(Process::new(name, plan)));
        Ok(())
    }

    pub fn start(&self, container_id: &str, exec_id: &str) -> Result<u32, RequestError> {
        self.process(container_id, exec_id)?.start(&self.reaper)
    }

    /// One process of one container.
    pub fn process(&self, container_id: &str, exec_id: &str) -> Result<Arc<Process>, RequestError> {
        let container = self.container(container_id)?;
        let processes = lock(&container.processes);
        processes.get(exec_id).cloned().ok_or_else(|| {
            RequestError::NotFound(format!(
                "container {container_id:?} has no process with exec id {exec_id:?}"
            ))
        })
    }

    /// Signals one process, or with `all` every running process of the container.
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
        for process in self.processes(container_id)? {
            if process.pid().is_some() {
                // It may exit meanwhile: not an error for `all`.
                let _ = process.signal(signal);
            }
        }
        Ok(())
    }

    /// The pids of the container's running processes.
    pub fn pids(&self, container_id: &str) -> Result<Vec<u32>, RequestError> {
        let mut pids: Vec<u32> = self
            .processes(container_id)?
            .iter()
            .filter_map(|process| process.pid())
            .collect();
        pids.sort_unstable();
        Ok(pids)
    }

    /// Kills what still runs in the container, waits for it, and forgets the container.
    pub async fn remove(&self, container_id: &str) -> Result<(), RequestError> {
        let processes = self.processes(container_id)?;
        for process in &processes {
            if process.pid().is_some() {
                let _ = process.signal(Signal::SIGKILL);
            }
        }
        for process in &processes {
            if process.pid().is_some() {
                process.wait().await;
            }
        }
        lock(&self.containers).remove(container_id);
        tracing::info!(container = %container_id, "removed");
        Ok(())
    }

    fn container(&self, id: &str) -> Result<Arc<Container>, RequestError> {
        lock(&self.containers)
            .get(id)
            .cloned()
            .ok_or_else(|| RequestError::NotFound(format!("no container {id:?} in this zone")))
    }

    fn processes(&self, container_id: &str) -> Result<Vec<Arc<Process>>, RequestError> {
        let container = self.container(container_id)?;
        let processes = lock(&container.processes);
        Ok(processes.values().cloned().collect())
    }
}

/// Checks an id: `[A-Za-z0-9][A-Za-z0-9_.-]{0,63}`.
pub fn check_id(what: &str, id: &str) -> Result<(), RequestError> {
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok && id.len() <= MAX_ID_LEN {
        return Ok(());
    }
    Err(RequestError::InvalidArgument(format!(
        "{what} {id:?} is not 1 to {MAX_ID_LEN} letters, digits, '_', '.' or '-' starting \
         with a letter or digit"
    )))
}

/// Settings this agent does not apply yet are refused rather than ignored.
fn check_unsupported(
    request: &CreateContainerRequest,
    process: &ProcessSpec,
) -> Result<(), RequestError> {
    let unsupported = [
        (request.readonly_rootfs, "readonly_rootfs"),
        (!request.mounts.is_empty(), "mounts"),
        (request.memory_limit_bytes != 0, "memory_limit_bytes"),
        (!process.rlimits.is_empty(), "rlimits"),
        (process.no_new_privileges, "no_new_privileges"),
        (process.capabilities.is_some(), "capabilities"),
        (!process.additional_gids.is_empty(), "additional_gids"),
    ];
    match unsupported.iter().find(|(set, _)| *set) {
        Some((_, field)) => Err(RequestError::InvalidArgument(format!(
            "{field} is not supported by this agent yet"
        ))),
        None => Ok(()),
    }
}

/// Checks a process spec and turns it into a command placed as asked.
fn plan(process: &ProcessSpec, placement: &Placement<'_>) -> Result<ProcessPlan, RequestError> {
    let Some((program, args)) = process.args.split_first() else {
        return Err(RequestError::InvalidArgument(
            "process.args is empty: nothing to run".to_string(),
        ));
    };
    if program.is_empty() {
        return Err(RequestError::InvalidArgument(
            "process.args[0] is empty: nothing to run".to_string(),
        ));
    }
    let env = parse_env(&process.env)?;
    let launch =
        Launch::prepare(placement).map_err(|e| RequestError::InvalidArgument(report(&e)))?;
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .env("PATH", launch.default_path());
    if let Some(home) = launch.home() {
        command.env("HOME", home);
    }
    command.envs(env);
    // SAFETY: runs in the forked child before exec and only calls sigprocmask(2), which is
    // async-signal-safe; the agent blocks signals it takes with sigwait, children must not.
    unsafe {
        command.pre_exec(|| SigSet::empty().thread_set_mask().map_err(io::Error::from));
    }
    launch.configure(&mut command);
    let ptmx = match placement.rootfs {
        Some(_) => Path::new(CONTAINER_ROOT).join("dev/pts/ptmx"),
        None => PathBuf::from("/dev/ptmx"),
    };
    Ok(ProcessPlan {
        command,
        program: program.clone(),
        terminal: process.terminal,
        stdin: process.stdin,
        ptmx,
    })
}

fn parse_env(entries: &[String]) -> Result<Vec<(OsString, OsString)>, RequestError> {
    entries
        .iter()
        .map(|entry| match entry.split_once('=') {
            Some((key, value)) if !key.is_empty() && !key.contains('\0') => {
                Ok((key.into(), value.into()))
            }
            _ => Err(RequestError::InvalidArgument(format!(
                "env entry {entry:?} is not KEY=VALUE"
            ))),
        })
        .collect()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_check_id_good_and_bad() {
        for good in ["main", "a", "web-1.2_x", &"x".repeat(64)] {
            assert!(check_id("id", good).is_ok(), "{good}");
        }
        for bad in ["", "-a", ".a", "a/b", "a b", "ä", &"x".repeat(65), "../x"] {
            let err = check_id("exec id", bad).unwrap_err();
            assert!(err.to_string().contains("exec id"), "{err}");
        }
    }

    #[test]
    fn test_parse_env_rejects_missing_equals_and_empty_key() {
        assert!(parse_env(&["A=1".into(), "B=".into()]).is_ok());
        for bad in ["NOEQUALS", "=value"] {
            let err = parse_env(&[bad.to_string()]).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }
}
