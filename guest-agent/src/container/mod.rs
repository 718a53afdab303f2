//! Containers in a zone: several per zone (a Kubernetes pod is one zone), each with its own
//! root, mounts, cgroup and optional hostname, and processes run in them with the OCI
//! runtime-spec process settings.
//!
//! - [`config`]: the agent's own types for a container ([`ContainerConfig`]) and a process
//!   ([`ProcessConfig`]), with every check that needs no file system; [`caps`] and
//!   [`rlimits`] name capabilities and limits as the runtime spec does.
//! - [`Container::create`] mounts the root ([`rootfs`]) and the extra mounts ([`volumes`]),
//!   makes the cgroup ([`cgroup`]); [`Container::command`] resolves the user ([`users`]) and
//!   builds the child-side steps (`process.rs`: mount namespace, pivot_root, rlimits, ids,
//!   capabilities); [`Container::destroy`] undoes it all.
//! - [`Launch`] adapts today's `RunCommandRequest` onto that: a request with a rootfs runs in
//!   the container "main", one per zone; one without runs in the zone's own userland.

pub mod caps;
pub mod cgroup;
pub mod config;
mod instance;
mod process;
pub mod rlimits;
pub mod rootfs;
pub mod spec;
pub mod users;
pub mod volumes;

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, PoisonError};

use nix::errno::Errno;
use nix::unistd::{chdir, setgid, setgroups, setuid, Gid, Uid};
use zone_proto::agent::v1::RunCommandRequest;

pub use caps::{default_capabilities, CapError, CapSet, Capability, CapabilitySets};
pub use cgroup::{CgroupError, CgroupPlace, CgroupStats, CpuStats, MemoryStats, PidsStats};
pub use config::{
    ConfigError, ContainerConfig, ContainerId, MountKind, MountOptions, MountSpec, ProcessConfig,
    RootfsSource,
};
pub use instance::{Container, ContainerError, Layout, PreparedProcess};
pub use rlimits::{Rlimit, RlimitError, RlimitResource};
pub use spec::{FsType, RootfsSpec, SpecError};
pub use volumes::VolumeError;

use crate::runner::DEFAULT_PATH;
use rootfs::{read_in_root, RootfsError};
use spec::{check_hostname, parse_cwd};
use users::{resolve_user, Identity, UserError};

/// PATH given to a command in a container unless the request's env sets its own.
pub const CONTAINER_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// The id of the container [`Launch`] runs `RunCommandRequest`s with a rootfs in.
pub const MAIN_CONTAINER: &str = "main";

/// Most bytes read from a root's /etc/passwd or /etc/group.
const ACCOUNT_FILE_LIMIT: u64 = 1 << 20;

/// The container requests with a rootfs run in, and the rootfs it was made from.
static MAIN: Mutex<Option<(RootfsSpec, Container)>> = Mutex::new(None);

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error(
        "this zone's container rootfs is already {device} ({fstype}); a zone runs one container"
    )]
    OtherRootfs {
        device: String,
        fstype: &'static str,
    },
    #[error("cwd {0:?} is not a directory")]
    CwdNotDirectory(String),
    #[error("setting the hostname")]
    Hostname(#[source] Errno),
}

/// How a command is placed: worked out in the agent, applied in the child.
#[derive(Debug)]
pub struct Launch {
    placement: Placement,
    home: Option<String>,
    path: &'static str,
}

#[derive(Debug)]
enum Placement {
    /// The zone's own userland: chdir, then the user if one was asked for.
    Zone {
        cwd: CString,
        identity: Option<Identity>,
    },
    /// The container "main".
    Container(PreparedProcess),
}

impl Launch {
    /// Checks the request's placement fields, creates the container "main" from the rootfs
    /// the first time one is asked for, resolves the user and sets the zone's hostname.
    /// Nothing is changed when a value is bad.
    pub fn prepare(request: &RunCommandRequest) -> Result<Self, LaunchError> {
        if !request.hostname.is_empty() {
            check_hostname(&request.hostname)?;
        }
        let launch = match &request.rootfs {
            Some(rootfs) => {
                let spec = RootfsSpec::parse(rootfs)?;
                parse_cwd(&request.cwd)?;
                let process = ProcessConfig {
                    args: request.args.clone(),
                    cwd: request.cwd.clone(),
                    user: request.user.clone(),
                    ..Default::default()
                };
                let mut main = MAIN.lock().unwrap_or_else(PoisonError::into_inner);
                let container = match &*main {
                    Some((current, container)) if *current == spec => container,
                    Some((current, _)) => {
                        return Err(LaunchError::OtherRootfs {
                            device: current.device.display().to_string(),
                            fstype: current.fstype.as_str(),
                        })
                    }
                    None => {
                        let id = ContainerId::new(MAIN_CONTAINER).map_err(ContainerError::from)?;
                        let config = ContainerConfig::new(id, RootfsSource::Device(spec.clone()));
                        let container = Container::create(&config)?;
                        &main.insert((spec, container)).1
                    }
                };
                let prepared = container.prepare(&process)?;
                Launch {
                    home: Some(prepared.home().to_string()),
                    placement: Placement::Container(prepared),
                    path: CONTAINER_PATH,
                }
            }
            None => {
                let cwd = if request.cwd.is_empty() {
                    "/"
                } else {
                    &request.cwd
                };
                if !Path::new(cwd).is_dir() {
                    return Err(LaunchError::CwdNotDirectory(cwd.to_string()));
                }
                let identity = match request.user.as_str() {
                    "" => None,
                    user => Some(identity_in(Path::new("/"), user)?),
                };
                Launch {
                    home: identity.as_ref().map(|id| id.home.clone()),
                    placement: Placement::Zone {
                        cwd: CString::new(cwd).map_err(|_| SpecError::Cwd(cwd.to_string()))?,
                        identity,
                    },
                    path: DEFAULT_PATH,
                }
            }
        };
        if !request.hostname.is_empty() {
            nix::unistd::sethostname(&request.hostname).map_err(LaunchError::Hostname)?;
        }
        Ok(launch)
    }

    /// The PATH to give the command unless its env sets one.
    pub fn default_path(&self) -> &'static str {
        self.path
    }

    /// The HOME to give the command unless its env sets one.
    pub fn home(&self) -> Option<&str> {
        self.home.as_deref()
    }

    /// Adds the child-side steps to `command`: in the container, those of `process.rs`; in
    /// the zone, chdir, then groups, gid and uid.
    pub fn configure(self, command: &mut Command) {
        let (cwd, identity) = match self.placement {
            Placement::Container(prepared) => {
                prepared.apply(command);
                return;
            }
            Placement::Zone { cwd, identity } => (cwd, identity),
        };
        let Some(identity) = identity else {
            command.current_dir(OsStr::from_bytes(cwd.as_bytes()));
            return;
        };
        let groups: Vec<Gid> = identity.groups.iter().copied().map(Gid::from_raw).collect();
        let (uid, gid) = (Uid::from_raw(identity.uid), Gid::from_raw(identity.gid));
        let child_steps = move || -> io::Result<()> {
            chdir(cwd.as_c_str())?;
            setgroups(&groups)?;
            setgid(gid)?;
            setuid(uid)?;
            Ok(())
        };
        // SAFETY: the closure runs in the forked child before exec. It only makes the
        // chdir(2), setgroups(2), setgid(2) and setuid(2) system calls, which are
        // async-signal-safe, on a C string and a group list built in the parent: it neither
        // allocates nor takes locks.
        unsafe {
            command.pre_exec(child_steps);
        }
    }
}

/// Resolves `user` against `root`'s /etc/passwd and /etc/group.
fn identity_in(root: &Path, user: &str) -> Result<Identity, LaunchError> {
    let passwd = read_in_root(root, "/etc/passwd", ACCOUNT_FILE_LIMIT)?.unwrap_or_default();
    let group = read_in_root(root, "/etc/group", ACCOUNT_FILE_LIMIT)?.unwrap_or_default();
    Ok(resolve_user(user, &passwd, &group)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zone_proto::agent::v1::ContainerRootfs;

    fn request() -> RunCommandRequest {
        RunCommandRequest {
            args: vec!["true".into()],
            ..Default::default()
        }
    }

    fn error_of(request: &RunCommandRequest) -> String {
        match Launch::prepare(request) {
            Ok(_) => panic!("{request:?} accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn test_launch_prepare_plain_request_runs_in_zone_root() {
        let launch = Launch::prepare(&request()).unwrap();

        assert_eq!(launch.default_path(), DEFAULT_PATH);
        assert_eq!(launch.home(), None);
        assert!(matches!(launch.placement, Placement::Zone { .. }));
    }

    #[test]
    fn test_launch_prepare_bad_rootfs_fields_named() {
        let mut req = request();
        req.rootfs = Some(ContainerRootfs {
            device: "/etc/passwd".into(),
            fstype: "ext4".into(),
        });
        assert!(
            error_of(&req).contains("\"/etc/passwd\""),
            "{}",
            error_of(&req)
        );

        req.rootfs = Some(ContainerRootfs {
            device: "/dev/vda".into(),
            fstype: "btrfs".into(),
        });
        assert!(error_of(&req).contains("btrfs"), "{}", error_of(&req));

        req.rootfs = Some(ContainerRootfs {
            device: "/dev/null".into(),
            fstype: "ext4".into(),
        });
        assert!(
            error_of(&req).contains("not a block device"),
            "{}",
            error_of(&req)
        );
    }

    #[test]
    fn test_launch_prepare_relative_cwd_in_container_rejected_before_mount() {
        let mut req = request();
        req.cwd = "tmp".into();
        req.rootfs = Some(ContainerRootfs {
            device: "/dev/null".into(),
            fstype: "ext4".into(),
        });

        assert!(error_of(&req).contains("cwd \"tmp\""), "{}", error_of(&req));
    }

    #[test]
    fn test_launch_prepare_bad_hostname_rejected() {
        let mut req = request();
        req.hostname = "no way".into();

        assert!(error_of(&req).contains("hostname"), "{}", error_of(&req));
    }

    #[test]
    fn test_launch_prepare_unknown_user_rejected() {
        let mut req = request();
        req.user = "no-such-user-anywhere".into();

        assert!(error_of(&req).contains("not found"), "{}", error_of(&req));
    }
}
