//! A live container: its mounts, cgroup and UTS namespace, from [`Container::create`] to
//! [`Container::destroy`], and the commands that run in it.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, PoisonError};

use nix::errno::Errno;

use super::caps::{default_capabilities, kernel_last_cap, CapError};
use super::cgroup::{Cgroup, CgroupError, CgroupPlace, CgroupStats, Limits};
use super::config::{ConfigError, ContainerConfig, ContainerId, ProcessConfig, RootfsSource};
use super::process::{ChildSteps, StepsInput};
use super::rootfs::{
    is_dir_in_root, make_root_readonly, mount_root, read_in_root, ContainerDirs, MountStack,
    RootfsError, CONTAINERS_DIR,
};
use super::spec::parse_cwd;
use super::users::{resolve_user, Identity, UserError};
use super::volumes::{
    mount_extra, mount_zone_dir, mount_zone_file, VolumeError, RESOLV_CONF_DESTINATION,
    WORKLOAD_API_DESTINATION,
};
use super::CONTAINER_PATH;
use crate::identity::endpoint::{endpoint_uri, ENDPOINT_ENV};

/// Most bytes read from a root's /etc/passwd or /etc/group.
const ACCOUNT_FILE_LIMIT: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("container {0} already exists")]
    AlreadyExists(ContainerId),
    #[error("{device} is already the rootfs of container {owner}")]
    DeviceInUse { device: String, owner: ContainerId },
    #[error("container {0} has been destroyed")]
    Destroyed(ContainerId),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("making the container's UTS namespace")]
    Hostname(#[source] io::Error),
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Capability(#[from] CapError),
    #[error("reading the kernel's last capability")]
    LastCap(#[source] io::Error),
    #[error("cwd {0:?} is not a directory in the container")]
    CwdNotDirectory(String),
}

/// Where a zone keeps its containers: directories and cgroups. [`Layout::zone`] in a zone;
/// tests use their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// One directory per container: `/run/zone/containers`.
    pub containers_dir: PathBuf,
    pub cgroup: CgroupPlace,
}

impl Layout {
    pub fn zone() -> Self {
        Layout {
            containers_dir: PathBuf::from(CONTAINERS_DIR),
            cgroup: CgroupPlace {
                mount: PathBuf::from("/sys/fs/cgroup"),
                parent: "containers".to_string(),
            },
        }
    }
}

/// The containers of this process, by directory: the mount table is global, so is this.
static REGISTRY: Mutex<Option<HashMap<PathBuf, Registered>>> = Mutex::new(None);

#[derive(Debug)]
struct Registered {
    id: ContainerId,
    /// The block device (its number) the container's root comes from.
    device: Option<u64>,
}

/// A container of the zone. Dropping it destroys it (see [`Container::destroy`]).
#[derive(Debug)]
pub struct Container {
    id: ContainerId,
    dirs: ContainerDirs,
    cgroup: Cgroup,
    uts: Option<OwnedFd>,
    /// The zone's Workload API is at /run/spiffe: processes get SPIFFE_ENDPOINT_SOCKET.
    workload_api: bool,
    destroyed: bool,
}

/// A process ready to be spawned: its environment and the steps its child runs.
#[derive(Debug)]
pub struct PreparedProcess {
    env: Vec<(String, String)>,
    home: String,
    steps: ChildSteps,
}

impl PreparedProcess {
    /// The environment: the config's entries, then PATH, HOME and (with a terminal) TERM
    /// defaults for those it lacks.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// The user's home directory in the container ("/" without a passwd entry).
    pub fn home(&self) -> &str {
        &self.home
    }

    /// Adds the child-side steps to `command` (after its existing `pre_exec` closures).
    pub fn apply(self, command: &mut Command) {
        self.steps.install(command);
    }
}

impl Container {
    /// Creates `config`'s container in the zone ([`Layout::zone`]).
    pub fn create(config: &ContainerConfig) -> Result<Container, ContainerError> {
        Container::create_in(&Layout::zone(), config)
    }

    /// Checks `config`, mounts the container's root with everything in it, makes its cgroup
    /// and, with a hostname, its UTS namespace. On failure nothing is left behind.
    pub fn create_in(
        layout: &Layout,
        config: &ContainerConfig,
    ) -> Result<Container, ContainerError> {
        config.check()?;
        let device = match &config.rootfs {
            RootfsSource::Device(spec) => Some(
                spec.check_device()
                    .map_err(|e| ContainerError::Rootfs(RootfsError::Spec(e)))?,
            ),
            RootfsSource::Directory(_) => None,
        };
        let dirs = ContainerDirs::new(&layout.containers_dir, config.id.as_str());
        let reservation = Reservation::take(&dirs.dir, &config.id, device, &config.rootfs)?;
        if dirs.dir.exists() {
            return Err(ContainerError::AlreadyExists(config.id.clone()));
        }
        let cgroup = Cgroup::create(&layout.cgroup, config.id.as_str(), config.memory_limit)?;
        let built = build(&dirs, config);
        let uts = built.and_then(|()| match &config.hostname {
            Some(name) => new_uts_namespace(name).map(Some),
            None => Ok(None),
        });
        let uts = match uts {
            Ok(uts) => uts,
            Err(e) => {
                if let Err(undo) = cgroup.remove() {
                    tracing::warn!(error = %undo, "removing the cgroup of a failed container");
                }
                if let Err(undo) = dirs.unmount_and_remove() {
                    tracing::warn!(error = %undo, "removing the directory of a failed container");
                }
                return Err(e);
            }
        };
        reservation.keep();
        tracing::info!(id = %config.id, root = %dirs.root.display(), "container created");
        Ok(Container {
            id: config.id.clone(),
            dirs,
            cgroup,
            uts,
            workload_api: config.zone_workload_api().is_some(),
            destroyed: false,
        })
    }

    pub fn id(&self) -> &ContainerId {
        &self.id
    }

    /// The container's root directory as the agent sees it.
    pub fn root(&self) -> &Path {
        &self.dirs.root
    }

    /// The container's own `/dev/pts/ptmx`: open a terminal for a process there (see
    /// `crate::tty::Pty`) so the process can name it.
    pub fn ptmx(&self) -> PathBuf {
        self.dirs.root.join("dev/pts/ptmx")
    }

    /// Checks `process` against the container (user, cwd, capabilities) and builds what its
    /// child will do; nothing is changed yet.
    pub fn prepare(&self, process: &ProcessConfig) -> Result<PreparedProcess, ContainerError> {
        self.live()?;
        process.check()?;
        let capabilities = process.capabilities.unwrap_or_else(default_capabilities);
        let last_cap = kernel_last_cap().map_err(ContainerError::LastCap)?;
        capabilities.check(last_cap)?;
        let root = &self.dirs.root;
        let cwd = parse_cwd(&process.cwd).map_err(ConfigError::from)?;
        let cwd_text = cwd.to_string_lossy();
        if !is_dir_in_root(root, &cwd_text) {
            return Err(ContainerError::CwdNotDirectory(cwd_text.into_owned()));
        }
        let identity = identity_in(root, &process.user)?;
        let env = environment(process, &identity, self.workload_api);
        let uts = self
            .uts
            .as_ref()
            .map(|fd| fd.try_clone())
            .transpose()
            .map_err(ContainerError::Hostname)?;
        let steps = ChildSteps::new(StepsInput {
            cgroup_procs: Some(self.cgroup.procs_for_join()?),
            root: CString::new(root.as_os_str().as_bytes())
                .map_err(|_| ConfigError::Destination(root.display().to_string()))?,
            uts,
            rlimits: &process.rlimits,
            identity: &identity,
            additional_gids: &process.additional_gids,
            capabilities,
            last_cap,
            cwd,
            no_new_privileges: process.no_new_privileges,
        });
        Ok(PreparedProcess {
            env,
            home: identity.home,
            steps,
        })
    }

    /// A `Command` running `process` in the container; the caller sets stdio and spawns it.
    pub fn command(&self, process: &ProcessConfig) -> Result<Command, ContainerError> {
        let prepared = self.prepare(process)?;
        let mut command = Command::new(&process.args[0]);
        command.args(&process.args[1..]).env_clear();
        command.envs(prepared.env().iter().map(|(k, v)| (k, v)));
        prepared.apply(&mut command);
        Ok(command)
    }

    /// Moves a running process (and so its later children) into the container's cgroup.
    pub fn add_process(&self, pid: u32) -> Result<(), ContainerError> {
        self.live()?;
        Ok(self.cgroup.add_process(pid)?)
    }

    /// The pids of the container's processes.
    pub fn pids(&self) -> Result<Vec<u32>, ContainerError> {
        self.live()?;
        Ok(self.cgroup.pids()?)
    }

    /// The container's cgroup directory.
    pub fn cgroup_dir(&self) -> &Path {
        self.cgroup.path()
    }

    /// Changes the limits of the container's cgroup.
    pub fn update(&self, limits: &Limits) -> Result<(), ContainerError> {
        self.live()?;
        Ok(self.cgroup.set_limits(limits)?)
    }

    pub fn stats(&self) -> Result<CgroupStats, ContainerError> {
        self.live()?;
        Ok(self.cgroup.stats()?)
    }

    fn live(&self) -> Result<(), ContainerError> {
        if self.destroyed {
            return Err(ContainerError::Destroyed(self.id.clone()));
        }
        Ok(())
    }

    /// Kills the container's processes, removes its cgroup, unmounts everything mounted for
    /// it and removes its directory. Safe to call again after an error.
    pub fn destroy(&mut self) -> Result<(), ContainerError> {
        if self.destroyed {
            return Ok(());
        }
        let cgroup = self.cgroup.remove();
        let mounts = self.dirs.unmount_and_remove();
        cgroup?;
        mounts?;
        self.uts = None;
        self.destroyed = true;
        let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
        registry
            .get_or_insert_with(HashMap::new)
            .remove(&self.dirs.dir);
        tracing::info!(id = %self.id, "container destroyed");
        Ok(())
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if let Err(e) = self.destroy() {
            tracing::warn!(id = %self.id, error = %e, "destroying a dropped container");
        }
    }
}

/// Mounts the root, the extra mounts, the zone's resolv.conf and Workload API directory, and
/// makes the root read-only if asked; undoes its mounts on failure.
fn build(dirs: &ContainerDirs, config: &ContainerConfig) -> Result<(), ContainerError> {
    let mut stack = MountStack::default();
    mount_root(dirs, &config.rootfs, &mut stack)?;
    mount_extra(&dirs.root, &config.mounts, &mut stack)?;
    if let Some(resolv_conf) = config.zone_resolv_conf() {
        mount_zone_file(&dirs.root, resolv_conf, RESOLV_CONF_DESTINATION, &mut stack)?;
    }
    if let Some(workload_api) = config.zone_workload_api() {
        mount_zone_dir(
            &dirs.root,
            workload_api,
            WORKLOAD_API_DESTINATION,
            &mut stack,
        )?;
    }
    if config.readonly_rootfs {
        make_root_readonly(&dirs.root)?;
    }
    stack.keep();
    Ok(())
}

/// A container's place in [`REGISTRY`], given back unless kept.
#[derive(Debug)]
struct Reservation {
    dir: Option<PathBuf>,
}

impl Reservation {
    fn take(
        dir: &Path,
        id: &ContainerId,
        device: Option<u64>,
        rootfs: &RootfsSource,
    ) -> Result<Reservation, ContainerError> {
        let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
        let registry = registry.get_or_insert_with(HashMap::new);
        if registry.contains_key(dir) {
            return Err(ContainerError::AlreadyExists(id.clone()));
        }
        if let (Some(device), RootfsSource::Device(spec)) = (device, rootfs) {
            if let Some(owner) = registry.values().find(|r| r.device == Some(device)) {
                return Err(ContainerError::DeviceInUse {
                    device: spec.device.display().to_string(),
                    owner: owner.id.clone(),
                });
            }
        }
        registry.insert(
            dir.to_path_buf(),
            Registered {
                id: id.clone(),
                device,
            },
        );
        Ok(Reservation {
            dir: Some(dir.to_path_buf()),
        })
    }

    fn keep(mut self) {
        self.dir = None;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
            registry.get_or_insert_with(HashMap::new).remove(&dir);
        }
    }
}

/// A new UTS namespace named `hostname`, held by a descriptor: made by a short-lived thread
/// so the agent's own stays as it is.
fn new_uts_namespace(hostname: &str) -> Result<OwnedFd, ContainerError> {
    let name = hostname.to_string();
    let made = std::thread::spawn(move || -> io::Result<OwnedFd> {
        // SAFETY: unshare with a flag; it changes only this thread's namespaces.
        if unsafe { libc::unshare(libc::CLONE_NEWUTS) } != 0 {
            return Err(io::Error::last_os_error());
        }
        nix::unistd::sethostname(&name).map_err(io::Error::from)?;
        Ok(File::open("/proc/thread-self/ns/uts")?.into())
    })
    .join()
    .unwrap_or_else(|_| Err(io::Error::from_raw_os_error(Errno::EIO as i32)));
    made.map_err(ContainerError::Hostname)
}

/// Resolves `user` against `root`'s /etc/passwd and /etc/group.
pub(super) fn identity_in(root: &Path, user: &str) -> Result<Identity, ContainerError> {
    let passwd = read_in_root(root, "/etc/passwd", ACCOUNT_FILE_LIMIT)?.unwrap_or_default();
    let group = read_in_root(root, "/etc/group", ACCOUNT_FILE_LIMIT)?.unwrap_or_default();
    Ok(resolve_user(user, &passwd, &group)?)
}

/// The process's environment: its own entries, then defaults for the variables it lacks
/// (PATH, HOME, TERM with a terminal, SPIFFE_ENDPOINT_SOCKET with the zone's Workload API).
fn environment(
    process: &ProcessConfig,
    identity: &Identity,
    workload_api: bool,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = process
        .env
        .iter()
        .filter_map(|entry| entry.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut defaults = vec![("PATH", CONTAINER_PATH), ("HOME", identity.home.as_str())];
    if process.terminal {
        defaults.push(("TERM", "xterm"));
    }
    let endpoint = endpoint_uri(Path::new(WORKLOAD_API_DESTINATION));
    if workload_api {
        defaults.push((ENDPOINT_ENV, endpoint.as_str()));
    }
    for (key, value) in defaults {
        if !env.iter().any(|(k, _)| k == key) {
            env.push((key.to_string(), value.to_string()));
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_environment_defaults_only_when_missing() {
        let identity = Identity {
            uid: 1,
            gid: 1,
            groups: vec![1],
            home: "/home/a".into(),
        };
        let mut process = ProcessConfig::new(&["sh"]);
        process.env = vec!["PATH=/opt/bin".into(), "A=b=c".into()];

        let env = environment(&process, &identity, false);
        assert_eq!(
            env,
            [
                ("PATH".to_string(), "/opt/bin".to_string()),
                ("A".into(), "b=c".into()),
                ("HOME".into(), "/home/a".into()),
            ]
        );

        process.terminal = true;
        process.env.clear();
        let env = environment(&process, &identity, false);
        assert!(env.contains(&("TERM".into(), "xterm".into())));
        assert!(env.contains(&("PATH".into(), CONTAINER_PATH.into())));
        assert!(!env.iter().any(|(k, _)| k == "SPIFFE_ENDPOINT_SOCKET"));
    }

    #[test]
    fn test_environment_spiffe_endpoint_added_unless_set() {
        let identity = Identity {
            uid: 0,
            gid: 0,
            groups: vec![0],
            home: "/root".into(),
        };
        let mut process = ProcessConfig::new(&["sh"]);

        let env = environment(&process, &identity, true);
        process.env = vec!["SPIFFE_ENDPOINT_SOCKET=unix:///run/spire/agent.sock".into()];
        let own = environment(&process, &identity, true);

        assert!(env.contains(&(
            "SPIFFE_ENDPOINT_SOCKET".into(),
            "unix:///run/spiffe/workload.sock".into()
        )));
        let values: Vec<&str> = own
            .iter()
            .filter(|(k, _)| k == "SPIFFE_ENDPOINT_SOCKET")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(values, ["unix:///run/spire/agent.sock"]);
    }

    #[test]
    fn test_container_create_bad_config_rejected_before_anything() {
        let layout = Layout {
            containers_dir: PathBuf::from("/nonexistent/containers"),
            cgroup: CgroupPlace {
                mount: PathBuf::from("/nonexistent/cgroup"),
                parent: "c".into(),
            },
        };
        let id = ContainerId::new("bad").unwrap();
        let mut config = ContainerConfig::new(id, RootfsSource::Directory("/".into()));
        config.mounts.push(super::super::config::MountSpec {
            destination: "../x".into(),
            kind: super::super::config::MountKind::Proc,
            options: Default::default(),
        });

        let err = Container::create_in(&layout, &config).unwrap_err();

        assert!(
            matches!(err, ContainerError::Config(ConfigError::Destination(_))),
            "{err}"
        );
        assert!(!Path::new("/nonexistent").exists());
    }

    #[test]
    fn test_container_create_non_block_device_rejected() {
        let id = ContainerId::new("dev").unwrap();
        let spec = super::super::spec::RootfsSpec::new("/dev/null", "ext4").unwrap();
        let config = ContainerConfig::new(id, RootfsSource::Device(spec));

        let err = Container::create(&config).unwrap_err();

        assert!(err.to_string().contains("not a block device"), "{err}");
    }
}
