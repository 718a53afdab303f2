//! Where and as whom a requested command runs.
//!
//! Without `rootfs` a command runs in the zone's own userland, as today. With it, the agent
//! mounts the container root once per zone ([`rootfs`]), and the child chroots into it between
//! fork and exec. `user` ([`users`]) and `hostname` apply in both cases. [`Launch::prepare`]
//! checks every value from the request ([`spec`]) before anything is mounted or changed;
//! [`Launch::configure`] adds the child-side steps to the `Command`.

pub mod rootfs;
pub mod spec;
pub mod users;

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use nix::errno::Errno;
use nix::unistd::{chdir, chroot, setgid, setgroups, setuid, Gid, Uid};
use zone_proto::agent::v1::ContainerRootfs;

use rootfs::{is_dir_in_root, read_in_root, RootfsError};
use spec::{check_hostname, parse_cwd, RootfsSpec, SpecError};
use users::{resolve_user, Identity, UserError};

/// PATH given to a command in a container unless the request's env sets its own.
pub const CONTAINER_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";
/// PATH given to a command in the zone's own userland unless the request's env sets its own.
pub const DEFAULT_PATH: &str = "/bin:/sbin:/usr/bin:/usr/sbin";

/// Where and as whom a process runs, as the host asked.
#[derive(Debug, Clone, Copy, Default)]
pub struct Placement<'a> {
    /// The container root; `None`: the zone's own userland.
    pub rootfs: Option<&'a ContainerRootfs>,
    pub cwd: &'a str,
    pub user: &'a str,
    /// Set the zone's hostname first; empty: leave it.
    pub hostname: &'a str,
}

/// Most bytes read from a root's /etc/passwd or /etc/group.
const ACCOUNT_FILE_LIMIT: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    User(#[from] UserError),
    #[error("cwd {0:?} is not a directory")]
    CwdNotDirectory(String),
    #[error("setting the hostname")]
    Hostname(#[source] Errno),
}

/// How a command is placed: worked out in the agent, applied in the child.
#[derive(Debug)]
pub struct Launch {
    /// chroot into this first (the container root).
    root: Option<CString>,
    cwd: CString,
    identity: Option<Identity>,
    path: &'static str,
}

impl Launch {
    /// Checks the request's placement fields, mounts the container root if asked for, resolves
    /// the user and sets the hostname. Nothing is changed when a value is bad.
    pub fn prepare(request: &Placement<'_>) -> Result<Self, LaunchError> {
        if !request.hostname.is_empty() {
            check_hostname(request.hostname)?;
        }
        let launch = match request.rootfs {
            Some(rootfs) => {
                let spec = RootfsSpec::parse(rootfs)?;
                let cwd = parse_cwd(request.cwd)?;
                let root = rootfs::ensure_mounted(&spec)?;
                let identity = identity_in(root, request.user)?;
                let cwd_text = cwd.to_string_lossy();
                if !is_dir_in_root(root, &cwd_text) {
                    return Err(LaunchError::CwdNotDirectory(cwd_text.into_owned()));
                }
                Launch {
                    root: Some(path_cstring(root)?),
                    cwd,
                    identity: Some(identity),
                    path: CONTAINER_PATH,
                }
            }
            None => {
                let cwd = if request.cwd.is_empty() {
                    "/"
                } else {
                    request.cwd
                };
                if !Path::new(cwd).is_dir() {
                    return Err(LaunchError::CwdNotDirectory(cwd.to_string()));
                }
                let identity = match request.user {
                    "" => None,
                    user => Some(identity_in(Path::new("/"), user)?),
                };
                Launch {
                    root: None,
                    cwd: CString::new(cwd).map_err(|_| SpecError::Cwd(cwd.to_string()))?,
                    identity,
                    path: DEFAULT_PATH,
                }
            }
        };
        if !request.hostname.is_empty() {
            nix::unistd::sethostname(request.hostname).map_err(LaunchError::Hostname)?;
        }
        Ok(launch)
    }

    /// The PATH to give the command unless its env sets one.
    pub fn default_path(&self) -> &'static str {
        self.path
    }

    /// The HOME to give the command unless its env sets one.
    pub fn home(&self) -> Option<&str> {
        self.identity.as_ref().map(|id| id.home.as_str())
    }

    /// Adds the child-side steps to `command`: chroot, chdir, then groups, gid and uid.
    pub fn configure(self, command: &mut Command) {
        if self.root.is_none() && self.identity.is_none() {
            command.current_dir(OsStr::from_bytes(self.cwd.as_bytes()));
            return;
        }
        let Launch {
            root,
            cwd,
            identity,
            ..
        } = self;
        let ids = identity.map(|id| {
            let groups: Vec<Gid> = id.groups.iter().copied().map(Gid::from_raw).collect();
            (Uid::from_raw(id.uid), Gid::from_raw(id.gid), groups)
        });
        let child_steps = move || -> io::Result<()> {
            if let Some(root) = &root {
                chroot(root.as_c_str())?;
            }
            chdir(cwd.as_c_str())?;
            if let Some((uid, gid, groups)) = &ids {
                setgroups(groups)?;
                setgid(*gid)?;
                setuid(*uid)?;
            }
            Ok(())
        };
        // SAFETY: the closure runs in the forked child before exec. It only makes the
        // chroot(2), chdir(2), setgroups(2), setgid(2) and setuid(2) system calls, which are
        // async-signal-safe, on C strings and a group list built in the parent: it neither
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

fn path_cstring(path: &Path) -> Result<CString, LaunchError> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| LaunchError::Spec(SpecError::Cwd(path.display().to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Placement<'static> {
        Placement::default()
    }

    fn error_of(request: &Placement<'_>) -> String {
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
        assert!(launch.root.is_none());
    }

    #[test]
    fn test_launch_prepare_bad_rootfs_fields_named() {
        let mut req = request();
        let passwd = ContainerRootfs {
            device: "/etc/passwd".into(),
            fstype: "ext4".into(),
        };
        req.rootfs = Some(&passwd);
        assert!(
            error_of(&req).contains("\"/etc/passwd\""),
            "{}",
            error_of(&req)
        );

        let btrfs = ContainerRootfs {
            device: "/dev/vda".into(),
            fstype: "btrfs".into(),
        };
        req.rootfs = Some(&btrfs);
        assert!(error_of(&req).contains("btrfs"), "{}", error_of(&req));

        let null = ContainerRootfs {
            device: "/dev/null".into(),
            fstype: "ext4".into(),
        };
        req.rootfs = Some(&null);
        assert!(
            error_of(&req).contains("not a block device"),
            "{}",
            error_of(&req)
        );
    }

    #[test]
    fn test_launch_prepare_relative_cwd_in_container_rejected_before_mount() {
        let mut req = request();
        let null = ContainerRootfs {
            device: "/dev/null".into(),
            fstype: "ext4".into(),
        };
        req.cwd = "tmp";
        req.rootfs = Some(&null);

        assert!(error_of(&req).contains("cwd \"tmp\""), "{}", error_of(&req));
    }

    #[test]
    fn test_launch_prepare_bad_hostname_rejected() {
        let mut req = request();
        req.hostname = "no way";

        assert!(error_of(&req).contains("hostname"), "{}", error_of(&req));
    }

    #[test]
    fn test_launch_prepare_unknown_user_rejected() {
        let mut req = request();
        req.user = "no-such-user-anywhere";

        assert!(error_of(&req).contains("not found"), "{}", error_of(&req));
    }
}
