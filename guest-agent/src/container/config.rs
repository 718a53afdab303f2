//! What a container and a process in it are made of: the agent's own types for the OCI
//! runtime-spec fields it supports (`config.md`: root, mounts, process, hostname;
//! `config-linux.md`: resources.memory.limit). The RPC layer fills these in; nothing here
//! depends on protobuf. Every check that needs no file system is here.

use std::path::{Component, Path, PathBuf};

use super::caps::CapabilitySets;
use super::rlimits::{check_unique, Rlimit, RlimitError};
use super::spec::{check_hostname, parse_cwd, RootfsSpec, SpecError};
use super::volumes::WORKLOAD_API_DESTINATION;

/// Longest container id.
const ID_MAX: usize = 64;
/// Longest mount destination (PATH_MAX).
const DESTINATION_MAX: usize = 4096;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("container id {0:?} is not 1-64 of [A-Za-z0-9_.-] starting with a letter or digit")]
    Id(String),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("rootfs directory {0:?} is not an absolute path without \"..\"")]
    RootfsDirectory(PathBuf),
    #[error("mount destination {0:?} is not an absolute path without \"..\" below /")]
    Destination(String),
    #[error("bind mount source {0:?} is not an absolute path without \"..\"")]
    BindSource(PathBuf),
    #[error("mount on {destination:?}: {reason}")]
    MountOption {
        destination: String,
        reason: &'static str,
    },
    #[error("the zone's resolv.conf {0:?} is not an absolute path without \"..\"")]
    ResolvConf(PathBuf),
    #[error("the zone's Workload API directory {0:?} is not an absolute path without \"..\"")]
    WorkloadApi(PathBuf),
    #[error("memory limit {0} is below the 1 MiB minimum")]
    MemoryLimit(u64),
    #[error("process args are empty: nothing to run")]
    NoArgs,
    #[error("process arg {0:?} is empty or holds a NUL byte")]
    Arg(String),
    #[error("env entry {0:?} is not KEY=VALUE without NUL bytes")]
    Env(String),
    #[error(transparent)]
    Rlimit(#[from] RlimitError),
    #[error("{0}")]
    Unsupported(String),
}

/// A container's name in the zone: `[A-Za-z0-9][A-Za-z0-9_.-]{0,63}`, so it is safe as a
/// directory and cgroup name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerId(String);

impl ContainerId {
    pub fn new(id: &str) -> Result<Self, ConfigError> {
        let bytes = id.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= ID_MAX
            && bytes[0].is_ascii_alphanumeric()
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(b));
        if ok {
            Ok(ContainerId(id.to_string()))
        } else {
            Err(ConfigError::Id(id.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ContainerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The read-only lower layer of a container's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootfsSource {
    /// A block device of the zone holding the image (`/dev/vdb`, ext4 or erofs).
    Device(RootfsSpec),
    /// A directory of the zone, bound read-only (a shared image tree; the tests use it).
    Directory(PathBuf),
}

/// A container: its root, hostname, extra mounts and limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerConfig {
    pub id: ContainerId,
    pub rootfs: RootfsSource,
    /// Remount the root read-only once everything is mounted (runtime-spec `root.readonly`);
    /// tmpfs and other mounts inside stay as their options say.
    pub readonly_rootfs: bool,
    /// The container's own UTS namespace with this hostname; `None` shares the zone's.
    pub hostname: Option<String>,
    /// Mounted in order after the standard ones (/proc, /sys, /dev, /dev/pts, /dev/shm).
    pub mounts: Vec<MountSpec>,
    /// `memory.max` of the container's cgroup, in bytes.
    pub memory_limit: Option<u64>,
    /// The zone's resolv.conf (from ConfigureNetwork), bound read-only onto the container's
    /// /etc/resolv.conf after `mounts`, unless one of them covers that path already
    /// ([`ContainerConfig::zone_resolv_conf`]).
    pub resolv_conf: Option<PathBuf>,
    /// The zone's SPIFFE Workload API directory (holding its socket), bound read-only onto
    /// the container's /run/spiffe after `mounts` unless one of them is at exactly that path
    /// ([`ContainerConfig::zone_workload_api`]).
    pub workload_api: Option<PathBuf>,
}

impl ContainerConfig {
    /// A container with a writable root, the zone's hostname and no extra mounts or limits.
    pub fn new(id: ContainerId, rootfs: RootfsSource) -> Self {
        ContainerConfig {
            id,
            rootfs,
            readonly_rootfs: false,
            hostname: None,
            mounts: Vec::new(),
            memory_limit: None,
            resolv_conf: None,
            workload_api: None,
        }
    }

    /// The zone's resolv.conf to bind onto /etc/resolv.conf: `None` without one, or when a
    /// mount of the spec is at /etc/resolv.conf or /etc (the spec's own wins, and the zone's
    /// file must not be made inside a volume).
    pub fn zone_resolv_conf(&self) -> Option<&Path> {
        let resolv_conf = self.resolv_conf.as_deref()?;
        let covered = self.mounts.iter().any(|mount| {
            let parts: Vec<&str> = mount
                .destination
                .split('/')
                .filter(|part| !part.is_empty())
                .collect();
            matches!(parts.as_slice(), ["etc"] | ["etc", "resolv.conf"])
        });
        (!covered).then_some(resolv_conf)
    }

    /// The zone's Workload API directory to bind onto /run/spiffe: `None` without one, or
    /// when a mount of the spec is at /run/spiffe (the spec's own wins). A spec mount above it
    /// (a tmpfs on /run) is fine: the zone's goes inside, after it.
    pub fn zone_workload_api(&self) -> Option<&Path> {
        let dir = self.workload_api.as_deref()?;
        let covered = self
            .mounts
            .iter()
            .any(|mount| same_destination(&mount.destination, WORKLOAD_API_DESTINATION));
        (!covered).then_some(dir)
    }

    /// Everything that can be checked without looking at the zone.
    pub fn check(&self) -> Result<(), ConfigError> {
        if let RootfsSource::Directory(dir) = &self.rootfs {
            if !is_clean_absolute(dir) {
                return Err(ConfigError::RootfsDirectory(dir.clone()));
            }
        }
        if let Some(name) = &self.hostname {
            check_hostname(name)?;
        }
        for mount in &self.mounts {
            mount.check()?;
        }
        if let Some(limit) = self.memory_limit {
            if limit < 1 << 20 {
                return Err(ConfigError::MemoryLimit(limit));
            }
        }
        if let Some(path) = &self.resolv_conf {
            if !is_clean_absolute(path) {
                return Err(ConfigError::ResolvConf(path.clone()));
            }
        }
        if let Some(path) = &self.workload_api {
            if !is_clean_absolute(path) {
                return Err(ConfigError::WorkloadApi(path.clone()));
            }
        }
        Ok(())
    }
}

/// One extra mount (runtime-spec `mounts[]`), by kind instead of a free `type` string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    /// Absolute path in the container. Symbolic links in the image on the way are resolved
    /// inside the container's root, never out of it.
    pub destination: String,
    pub kind: MountKind,
    pub options: MountOptions,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    Proc,
    Sysfs,
    Tmpfs {
        /// Bytes; the kernel's default (half of RAM) when `None`.
        size: Option<u64>,
        /// Permission bits of the root directory; 0755 when `None`.
        mode: Option<u32>,
    },
    /// A new devpts instance (`newinstance,ptmxmode=0666,mode=0620,gid=5`).
    Devpts,
    Mqueue,
    /// `source` is a path in the zone (a volume directory, a mounted extra disk).
    Bind {
        source: PathBuf,
        recursive: bool,
    },
}

impl MountKind {
    /// The file system type given to mount(2).
    pub fn fstype(&self) -> &'static str {
        match self {
            MountKind::Proc => "proc",
            MountKind::Sysfs => "sysfs",
            MountKind::Tmpfs { .. } => "tmpfs",
            MountKind::Devpts => "devpts",
            MountKind::Mqueue => "mqueue",
            MountKind::Bind { .. } => "bind",
        }
    }
}

/// The mount flags the runtime spec's `options` may hold besides the kind's own data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MountOptions {
    pub readonly: bool,
    pub nosuid: bool,
    pub nodev: bool,
    pub noexec: bool,
}

impl MountSpec {
    pub fn check(&self) -> Result<(), ConfigError> {
        check_destination(&self.destination)?;
        let bad = |reason| {
            Err(ConfigError::MountOption {
                destination: self.destination.clone(),
                reason,
            })
        };
        match &self.kind {
            MountKind::Tmpfs { size: Some(0), .. } => return bad("tmpfs size 0"),
            MountKind::Tmpfs {
                mode: Some(mode), ..
            } if *mode > 0o7777 => return bad("tmpfs mode above 07777"),
            MountKind::Bind { source, .. } if !is_clean_absolute(source) => {
                return Err(ConfigError::BindSource(source.clone()))
            }
            _ => {}
        }
        Ok(())
    }
}

/// A mount destination: absolute, only plain components (no `.`, `..` or empty ones
/// between slashes is fine), not the root itself, no NUL.
pub fn check_destination(destination: &str) -> Result<(), ConfigError> {
    let path = Path::new(destination);
    let ok = destination.len() <= DESTINATION_MAX
        && !destination.contains('\0')
        && path.is_absolute()
        && path.components().any(|c| matches!(c, Component::Normal(_)))
        && !destination
            .split('/')
            .any(|part| part == "." || part == "..");
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Destination(destination.to_string()))
    }
}

/// Whether two absolute destinations name the same path, however many slashes they use.
fn same_destination(a: &str, b: &str) -> bool {
    let parts = |path: &'_ str| -> Vec<String> {
        path.split('/')
            .filter(|part| !part.is_empty())
            .map(str::to_string)
            .collect()
    };
    parts(a) == parts(b)
}

/// Absolute, no NUL, no `.` or `..` component (`Path::components` hides inner `.`s, so the
/// bytes are checked).
fn is_clean_absolute(path: &Path) -> bool {
    let text = path.as_os_str().as_encoded_bytes();
    path.is_absolute()
        && !text.contains(&0)
        && !text
            .split(|b| *b == b'/')
            .any(|part| part == b"." || part == b"..")
}

/// A process to run in a container (runtime-spec `process`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessConfig {
    /// Program and arguments; the program is looked up in the container's PATH.
    pub args: Vec<String>,
    /// `KEY=VALUE` entries. PATH and HOME get defaults when missing, TERM too with a terminal.
    pub env: Vec<String>,
    /// Absolute directory in the container; "/" when empty.
    pub cwd: String,
    /// `USER[:GROUP]` (names or numbers) resolved in the container's /etc/passwd and
    /// /etc/group; root when empty.
    pub user: String,
    /// Supplementary groups added to those /etc/group gives the user.
    pub additional_gids: Vec<u32>,
    pub rlimits: Vec<Rlimit>,
    pub no_new_privileges: bool,
    /// `None`: [`super::caps::default_capabilities`].
    pub capabilities: Option<CapabilitySets>,
    /// The caller attaches a terminal from [`super::Container::ptmx`]; the process gets
    /// `TERM=xterm` unless its env sets TERM.
    pub terminal: bool,
}

impl ProcessConfig {
    /// A process running `args` as root with the defaults.
    pub fn new<S: AsRef<str>>(args: &[S]) -> Self {
        ProcessConfig {
            args: args.iter().map(|a| a.as_ref().to_string()).collect(),
            ..Default::default()
        }
    }

    /// Everything that can be checked without the container's files.
    pub fn check(&self) -> Result<(), ConfigError> {
        let Some(program) = self.args.first() else {
            return Err(ConfigError::NoArgs);
        };
        if program.is_empty() {
            return Err(ConfigError::Arg(program.clone()));
        }
        if let Some(arg) = self.args.iter().find(|a| a.contains('\0')) {
            return Err(ConfigError::Arg(arg.clone()));
        }
        for entry in &self.env {
            match entry.split_once('=') {
                Some((key, _)) if !key.is_empty() && !entry.contains('\0') => {}
                _ => return Err(ConfigError::Env(entry.clone())),
            }
        }
        parse_cwd(&self.cwd)?;
        check_unique(&self.rlimits)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_container_id_valid_accepted() {
        for id in ["a", "main", "web-1", "A.b_c-9", "0", &"x".repeat(64)] {
            assert_eq!(ContainerId::new(id).unwrap().as_str(), id);
        }
    }

    #[test]
    fn test_container_id_bad_rejected_and_named() {
        for id in [
            "",
            ".",
            "..",
            "-a",
            "_a",
            ".hidden",
            "a/b",
            "a b",
            "a\0",
            "é",
            &"x".repeat(65),
        ] {
            let err = ContainerId::new(id).unwrap_err();
            assert_eq!(err, ConfigError::Id(id.to_string()));
        }
    }

    #[test]
    fn test_check_destination_good() {
        for dest in ["/data", "/var/run/secrets", "/a//b", "/a/b/"] {
            assert!(check_destination(dest).is_ok(), "{dest}");
        }
    }

    #[test]
    fn test_check_destination_bad_rejected() {
        for dest in [
            "",
            "/",
            "//",
            "x",
            "../x",
            "data/x",
            "/../x",
            "/a/../../etc",
            "/a/..",
            "/./a",
            "/a/.",
            "/a\0b",
        ] {
            assert_eq!(
                check_destination(dest),
                Err(ConfigError::Destination(dest.to_string())),
                "{dest:?}"
            );
        }
        assert!(check_destination(&format!("/{}", "a".repeat(4096))).is_err());
    }

    fn tmpfs(size: Option<u64>, mode: Option<u32>) -> MountSpec {
        MountSpec {
            destination: "/scratch".into(),
            kind: MountKind::Tmpfs { size, mode },
            options: MountOptions::default(),
        }
    }

    #[test]
    fn test_mount_spec_check_kind_options() {
        assert!(tmpfs(Some(1 << 20), Some(0o1777)).check().is_ok());
        assert!(tmpfs(None, None).check().is_ok());
        assert!(matches!(
            tmpfs(Some(0), None).check(),
            Err(ConfigError::MountOption { .. })
        ));
        assert!(matches!(
            tmpfs(None, Some(0o10000)).check(),
            Err(ConfigError::MountOption { .. })
        ));
        for source in ["relative", "/a/../b", "/a/./b"] {
            let bind = MountSpec {
                destination: "/data".into(),
                kind: MountKind::Bind {
                    source: source.into(),
                    recursive: false,
                },
                options: MountOptions::default(),
            };
            assert_eq!(
                bind.check(),
                Err(ConfigError::BindSource(source.into())),
                "{source}"
            );
        }
    }

    #[test]
    fn test_container_config_check_names_bad_field() {
        let id = ContainerId::new("c1").unwrap();
        let mut config = ContainerConfig::new(id, RootfsSource::Directory("/images/a".into()));
        assert!(config.check().is_ok());

        config.hostname = Some("bad host".into());
        assert!(matches!(
            config.check(),
            Err(ConfigError::Spec(SpecError::Hostname(_)))
        ));
        config.hostname = None;
        config.mounts.push(tmpfs(None, None));
        config.mounts[0].destination = "/x/../../etc".into();
        assert_eq!(
            config.check(),
            Err(ConfigError::Destination("/x/../../etc".into()))
        );
        config.mounts.clear();
        config.memory_limit = Some(4096);
        assert_eq!(config.check(), Err(ConfigError::MemoryLimit(4096)));
        config.memory_limit = None;
        config.rootfs = RootfsSource::Directory("images/a".into());
        assert!(matches!(
            config.check(),
            Err(ConfigError::RootfsDirectory(_))
        ));
    }

    #[test]
    fn test_process_config_check_args_env_cwd_rlimits() {
        assert!(ProcessConfig::new(&["sh", "-c", "true"]).check().is_ok());
        assert_eq!(
            ProcessConfig::new::<&str>(&[]).check(),
            Err(ConfigError::NoArgs)
        );
        assert_eq!(
            ProcessConfig::new(&[""]).check(),
            Err(ConfigError::Arg(String::new()))
        );
        assert!(matches!(
            ProcessConfig::new(&["sh", "a\0b"]).check(),
            Err(ConfigError::Arg(_))
        ));
        for entry in ["NOEQUALS", "=value", "K=a\0b"] {
            let mut process = ProcessConfig::new(&["sh"]);
            process.env = vec![entry.into()];
            assert_eq!(process.check(), Err(ConfigError::Env(entry.into())));
        }
        let mut process = ProcessConfig::new(&["sh"]);
        process.cwd = "tmp".into();
        assert_eq!(
            process.check(),
            Err(ConfigError::Spec(SpecError::Cwd("tmp".into())))
        );
        let mut process = ProcessConfig::new(&["sh"]);
        let limit = Rlimit::parse("RLIMIT_NOFILE", 10, 10).unwrap();
        process.rlimits = vec![limit, limit];
        assert_eq!(
            process.check(),
            Err(ConfigError::Rlimit(RlimitError::Duplicate("RLIMIT_NOFILE")))
        );
    }

    #[test]
    fn test_zone_resolv_conf_unless_spec_mounts_etc_or_it() {
        let id = ContainerId::new("c1").unwrap();
        let mut config = ContainerConfig::new(id, RootfsSource::Directory("/images/a".into()));
        assert_eq!(config.zone_resolv_conf(), None);
        config.resolv_conf = Some("/run/zone/resolv.conf".into());
        config.mounts.push(tmpfs(None, None));
        config.mounts[0].destination = "/etc/resolv.conf.d".into();
        assert_eq!(
            config.zone_resolv_conf(),
            Some(Path::new("/run/zone/resolv.conf"))
        );

        for covering in ["/etc/resolv.conf", "//etc//resolv.conf/", "/etc", "/etc/"] {
            config.mounts[0].destination = covering.into();
            assert_eq!(config.zone_resolv_conf(), None, "{covering}");
        }

        config.mounts.clear();
        config.resolv_conf = Some("run/zone/resolv.conf".into());
        assert_eq!(
            config.check(),
            Err(ConfigError::ResolvConf("run/zone/resolv.conf".into()))
        );
    }

    #[test]
    fn test_zone_workload_api_unless_spec_mounts_exactly_run_spiffe() {
        let id = ContainerId::new("c1").unwrap();
        let mut config = ContainerConfig::new(id, RootfsSource::Directory("/images/a".into()));
        assert_eq!(config.zone_workload_api(), None);
        config.workload_api = Some("/run/zone/spiffe".into());
        config.mounts.push(tmpfs(None, None));
        for beside in ["/run", "/run/spiffe/x", "/run/spiffe2", "/spiffe"] {
            config.mounts[0].destination = beside.into();
            assert_eq!(
                config.zone_workload_api(),
                Some(Path::new("/run/zone/spiffe")),
                "{beside}"
            );
        }

        for covering in ["/run/spiffe", "//run//spiffe/"] {
            config.mounts[0].destination = covering.into();
            assert_eq!(config.zone_workload_api(), None, "{covering}");
        }

        config.mounts.clear();
        config.workload_api = Some("/run/zone/../spiffe".into());
        assert_eq!(
            config.check(),
            Err(ConfigError::WorkloadApi("/run/zone/../spiffe".into()))
        );
    }
}
