//! One cgroup v2 group per container, for its statistics and memory limit
//! (`Documentation/admin-guide/cgroup-v2.rst`, sections 2 "Basic Operations" and 5
//! "Resource Distribution Models"):
//!
//! ```text
//! /sys/fs/cgroup                     cgroup2, mounted by the agent when nothing is there
//!   cgroup.subtree_control           +cpu +memory +pids (those the kernel has)
//!   containers/                      the parent: no processes, same controllers enabled
//!     <id>/                          the container's processes; cpu.stat, memory.*, pids.*
//! ```
//!
//! A process joins before exec by writing "0" to the group's `cgroup.procs` through a
//! descriptor the agent opened before fork. The files read for [`CgroupStats`] come from the
//! kernel but are parsed strictly: a malformed one is an error, not a zero.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};

/// Controllers enabled for containers when the kernel has them.
const CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];
/// How long [`Cgroup::remove`] waits for killed processes to leave.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("checking what is mounted on {0}")]
    Statfs(PathBuf, #[source] Errno),
    #[error("mounting cgroup2 on {0}")]
    Mount(PathBuf, #[source] Errno),
    #[error("creating {0}")]
    Create(PathBuf, #[source] io::Error),
    #[error("cgroup {0} already exists")]
    Exists(PathBuf),
    #[error("reading {0}")]
    Read(PathBuf, #[source] io::Error),
    #[error("writing {value:?} to {path}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },
    #[error("{file}: {reason}")]
    Parse { file: PathBuf, reason: String },
    #[error("the {0} controller is not available to containers in this zone")]
    ControllerMissing(&'static str),
    #[error("{0} does not exist: this kernel cannot set that limit")]
    LimitMissing(PathBuf),
    #[error("cgroup {0} still has processes after they were killed")]
    Busy(PathBuf),
    #[error("removing {0}")]
    Remove(PathBuf, #[source] io::Error),
}

/// Where containers' cgroups live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupPlace {
    /// Where cgroup2 is (or gets) mounted: `/sys/fs/cgroup` in a zone.
    pub mount: PathBuf,
    /// The group under it holding one group per container: `containers` in a zone.
    pub parent: String,
}

/// A container's cgroup.
#[derive(Debug)]
pub struct Cgroup {
    path: PathBuf,
}

/// What a container's processes use, from its cgroup's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupStats {
    pub cpu: CpuStats,
    /// `None` when the memory controller is not enabled for containers.
    pub memory: Option<MemoryStats>,
    /// `None` when the pids controller is not enabled for containers.
    pub pids: Option<PidsStats>,
}

/// `cpu.stat`: microseconds of CPU time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuStats {
    pub usage_usec: u64,
    pub user_usec: u64,
    pub system_usec: u64,
}

/// `memory.current`, `memory.max` and `memory.stat`, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    pub current: u64,
    /// `None` when unlimited ("max").
    pub max: Option<u64>,
    pub anon: u64,
    pub file: u64,
}

/// `pids.current`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidsStats {
    pub current: u64,
}

/// A cgroup limit: a number, or none (`max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Max,
    At(u64),
}

impl Limit {
    fn file_value(self) -> String {
        match self {
            Limit::Max => "max".to_string(),
            Limit::At(n) => n.to_string(),
        }
    }
}

/// New limits for a running container; `None` leaves one as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// `memory.max`, bytes.
    pub memory: Option<u64>,
    /// `cpu.max`: the quota and the period, in microseconds.
    pub cpu: Option<(Limit, u64)>,
    /// `pids.max`.
    pub pids: Option<Limit>,
}

impl Cgroup {
    /// Makes `<mount>/<parent>/<id>`, mounting cgroup2 and enabling the controllers on the
    /// way as needed, and sets `memory.max` if `memory_limit` is given.
    pub fn create(
        place: &CgroupPlace,
        id: &str,
        memory_limit: Option<u64>,
    ) -> Result<Cgroup, CgroupError> {
        ensure_cgroup2(&place.mount)?;
        enable_controllers(&place.mount)?;
        let parent = place.mount.join(&place.parent);
        match fs::create_dir(&parent) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(CgroupError::Create(parent, e)),
        }
        enable_controllers(&parent)?;
        let path = parent.join(id);
        match fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(CgroupError::Exists(path))
            }
            Err(e) => return Err(CgroupError::Create(path, e)),
        }
        let cgroup = Cgroup { path };
        if let Some(limit) = memory_limit {
            let limited = cgroup
                .require("memory")
                .and_then(|()| write_file(&cgroup.path.join("memory.max"), &limit.to_string()));
            if let Err(e) = limited {
                if let Err(remove) = fs::remove_dir(&cgroup.path) {
                    tracing::warn!(path = %cgroup.path.display(), error = %remove, "removing a cgroup");
                }
                return Err(e);
            }
        }
        Ok(cgroup)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `cgroup.procs` opened for writing, close-on-exec: a child writes "0" to it to join.
    pub fn procs_for_join(&self) -> Result<OwnedFd, CgroupError> {
        let path = self.path.join("cgroup.procs");
        let file = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| CgroupError::Read(path, e))?;
        Ok(file.into())
    }

    /// Moves the process `pid` into this group.
    pub fn add_process(&self, pid: u32) -> Result<(), CgroupError> {
        write_file(&self.path.join("cgroup.procs"), &pid.to_string())
    }

    /// The pids of the group's processes.
    pub fn pids(&self) -> Result<Vec<u32>, CgroupError> {
        let path = self.path.join("cgroup.procs");
        let text = read_file(&path)?;
        text.lines()
            .map(|line| {
                line.parse().map_err(|_| CgroupError::Parse {
                    file: path.clone(),
                    reason: format!("{line:?} is not a pid"),
                })
            })
            .collect()
    }

    pub fn stats(&self) -> Result<CgroupStats, CgroupError> {
        let cpu = {
            let path = self.path.join("cpu.stat");
            let [usage_usec, user_usec, system_usec] = parse_keyed(
                &path,
                &read_file(&path)?,
                ["usage_usec", "user_usec", "system_usec"],
            )?;
            CpuStats {
                usage_usec,
                user_usec,
                system_usec,
            }
        };
        let controllers = self.controllers()?;
        let memory = if controllers.iter().any(|c| c == "memory") {
            let current = self.path.join("memory.current");
            let max = self.path.join("memory.max");
            let stat = self.path.join("memory.stat");
            let [anon, file] = parse_keyed(&stat, &read_file(&stat)?, ["anon", "file"])?;
            Some(MemoryStats {
                current: parse_u64(&current, &read_file(&current)?)?,
                max: parse_max(&max, &read_file(&max)?)?,
                anon,
                file,
            })
        } else {
            None
        };
        let pids = if controllers.iter().any(|c| c == "pids") {
            let current = self.path.join("pids.current");
            Some(PidsStats {
                current: parse_u64(&current, &read_file(&current)?)?,
            })
        } else {
            None
        };
        Ok(CgroupStats { cpu, memory, pids })
    }

    /// Kills every process of the group (`cgroup.kill`, Linux 5.14), waits for them to leave
    /// and removes the group.
    pub fn remove(&self) -> Result<(), CgroupError> {
        if !self.path.exists() {
            return Ok(());
        }
        self.kill()?;
        let deadline = Instant::now() + REMOVE_TIMEOUT;
        loop {
            match fs::remove_dir(&self.path) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    if Instant::now() > deadline {
                        return Err(CgroupError::Busy(self.path.clone()));
                    }
                    thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(CgroupError::Remove(self.path.clone(), e)),
            }
        }
    }

    fn kill(&self) -> Result<(), CgroupError> {
        let kill = self.path.join("cgroup.kill");
        if kill.exists() {
            return write_file(&kill, "1");
        }
        for pid in self.pids()? {
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            // The process may be gone already: that is what we want.
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        Ok(())
    }

    fn controllers(&self) -> Result<Vec<String>, CgroupError> {
        let text = read_file(&self.path.join("cgroup.controllers"))?;
        Ok(text.split_whitespace().map(str::to_string).collect())
    }

    /// Writes the limits that are set. Every file is checked first, so that a limit this
    /// kernel cannot set (its controller or file missing) changes nothing.
    pub fn set_limits(&self, limits: &Limits) -> Result<(), CgroupError> {
        let mut writes = Vec::new();
        if let Some(bytes) = limits.memory {
            writes.push(("memory", "memory.max", bytes.to_string()));
        }
        if let Some((quota, period)) = limits.cpu {
            writes.push(("cpu", "cpu.max", format!("{} {period}", quota.file_value())));
        }
        if let Some(pids) = limits.pids {
            writes.push(("pids", "pids.max", pids.file_value()));
        }
        for (controller, file, _) in &writes {
            self.require(controller)?;
            let path = self.path.join(file);
            if !path.exists() {
                return Err(CgroupError::LimitMissing(path));
            }
        }
        for (_, file, value) in writes {
            write_file(&self.path.join(file), &value)?;
        }
        Ok(())
    }

    fn require(&self, controller: &'static str) -> Result<(), CgroupError> {
        if self.controllers()?.iter().any(|c| c == controller) {
            Ok(())
        } else {
            Err(CgroupError::ControllerMissing(controller))
        }
    }
}

/// Mounts cgroup2 on `mount` unless it is one already.
fn ensure_cgroup2(mount_point: &Path) -> Result<(), CgroupError> {
    match statfs(mount_point) {
        Ok(fs) if fs.filesystem_type() == CGROUP2_SUPER_MAGIC => return Ok(()),
        Ok(_) => {}
        Err(Errno::ENOENT) => fs::create_dir_all(mount_point)
            .map_err(|e| CgroupError::Create(mount_point.to_path_buf(), e))?,
        Err(e) => return Err(CgroupError::Statfs(mount_point.to_path_buf(), e)),
    }
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(
        Some("cgroup2"),
        mount_point,
        Some("cgroup2"),
        flags,
        None::<&str>,
    )
    .map_err(|e| CgroupError::Mount(mount_point.to_path_buf(), e))?;
    tracing::info!(mount = %mount_point.display(), "cgroup2 mounted");
    Ok(())
}

/// Enables in `dir`'s subtree each of [`CONTROLLERS`] that `dir` has and has not enabled.
fn enable_controllers(dir: &Path) -> Result<(), CgroupError> {
    let available = read_file(&dir.join("cgroup.controllers"))?;
    let enabled = read_file(&dir.join("cgroup.subtree_control"))?;
    let missing: Vec<String> = CONTROLLERS
        .iter()
        .filter(|c| available.split_whitespace().any(|a| a == **c))
        .filter(|c| !enabled.split_whitespace().any(|e| e == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    write_file(&dir.join("cgroup.subtree_control"), &missing.join(" "))
}

fn read_file(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|e| CgroupError::Read(path.to_path_buf(), e))
}

fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    // One write(2): a cgroup file takes each write as one command.
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut file: File| file.write_all(value.as_bytes()))
        .map_err(|source| CgroupError::Write {
            path: path.to_path_buf(),
            value: value.to_string(),
            source,
        })
}

fn parse_error(file: &Path, reason: String) -> CgroupError {
    CgroupError::Parse {
        file: file.to_path_buf(),
        reason,
    }
}

/// The one line of a single-value file ("123\n") as a number.
fn parse_u64(file: &Path, text: &str) -> Result<u64, CgroupError> {
    let line = single_line(file, text)?;
    number(file, line)
}

/// `memory.max`: "max\n" (no limit) or a number of bytes.
fn parse_max(file: &Path, text: &str) -> Result<Option<u64>, CgroupError> {
    match single_line(file, text)? {
        "max" => Ok(None),
        line => number(file, line).map(Some),
    }
}

fn single_line<'a>(file: &Path, text: &'a str) -> Result<&'a str, CgroupError> {
    match text.strip_suffix('\n') {
        Some(line) if !line.contains('\n') => Ok(line),
        _ => Err(parse_error(file, format!("{text:?} is not one line"))),
    }
}

fn number(file: &Path, text: &str) -> Result<u64, CgroupError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(parse_error(file, format!("{text:?} is not a number")));
    }
    text.parse()
        .map_err(|_| parse_error(file, format!("{text:?} is out of range")))
}

/// The values of `keys` in a flat keyed file ("key value\n" lines, cgroup-v2.rst 4.2
/// "Format"). Every line must have that shape and a key may appear once; keys not asked
/// for are skipped, keys asked for must be there.
fn parse_keyed<const N: usize>(
    file: &Path,
    text: &str,
    keys: [&str; N],
) -> Result<[u64; N], CgroupError> {
    let Some(body) = text.strip_suffix('\n') else {
        return Err(parse_error(file, "does not end with a newline".to_string()));
    };
    let mut values: [Option<u64>; N] = [None; N];
    let mut seen: Vec<&str> = Vec::new();
    for line in body.split('\n') {
        let Some((key, value)) = line.split_once(' ') else {
            return Err(parse_error(
                file,
                format!("line {line:?} is not \"key value\""),
            ));
        };
        if key.is_empty() || seen.contains(&key) {
            return Err(parse_error(
                file,
                format!("key {key:?} is empty or repeated"),
            ));
        }
        seen.push(key);
        let value = number(file, value)?;
        if let Some(i) = keys.iter().position(|k| *k == key) {
            values[i] = Some(value);
        }
    }
    let mut out = [0; N];
    for (i, value) in values.iter().enumerate() {
        out[i] = value.ok_or_else(|| parse_error(file, format!("no {} line", keys[i])))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPU_STAT: &str = "usage_usec 1200\nuser_usec 700\nsystem_usec 500\n\
                            nr_periods 0\nnr_throttled 0\nthrottled_usec 0\n";

    fn file() -> &'static Path {
        Path::new("cpu.stat")
    }

    #[test]
    fn test_parse_keyed_cpu_stat_values() {
        let values = parse_keyed(file(), CPU_STAT, ["usage_usec", "user_usec", "system_usec"]);

        assert_eq!(values.unwrap(), [1200, 700, 500]);
    }

    #[test]
    fn test_parse_keyed_bad_files_rejected() {
        let keys = ["usage_usec", "user_usec", "system_usec"];
        for (text, why) in [
            ("", "empty"),
            (
                "usage_usec 1\nuser_usec 2\nsystem_usec 3",
                "no final newline",
            ),
            ("usage_usec 1\nuser_usec 2\n", "missing key"),
            ("usage_usec 1\nuser_usec 2\nsystem_usec -3\n", "negative"),
            (
                "usage_usec 1\nuser_usec 2\nsystem_usec 3x\n",
                "junk after number",
            ),
            ("usage_usec 1\nuser_usec 2\nsystem_usec  3\n", "two spaces"),
            ("usage_usec 1\nuser_usec 2\nsystem_usec\n", "no value"),
            (
                "usage_usec 1\nusage_usec 1\nuser_usec 2\nsystem_usec 3\n",
                "repeated",
            ),
            ("usage_usec 1\n\nuser_usec 2\nsystem_usec 3\n", "empty line"),
            (
                "usage_usec 99999999999999999999\nuser_usec 2\nsystem_usec 3\n",
                "overflow",
            ),
        ] {
            let err = parse_keyed(file(), text, keys).unwrap_err();
            assert!(matches!(err, CgroupError::Parse { .. }), "{why}: {err}");
            assert!(err.to_string().starts_with("cpu.stat: "), "{why}: {err}");
        }
    }

    #[test]
    fn test_parse_u64_and_max() {
        let f = Path::new("memory.max");
        assert_eq!(parse_u64(f, "4096\n").unwrap(), 4096);
        assert_eq!(parse_max(f, "max\n").unwrap(), None);
        assert_eq!(parse_max(f, "1048576\n").unwrap(), Some(1 << 20));
        for bad in [
            "", "\n", "4096", "4096\n\n", " 4096\n", "0x10\n", "MAX\n", "1\n2\n",
        ] {
            assert!(parse_u64(f, bad).is_err(), "{bad:?}");
            assert!(parse_max(f, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn test_cgroup_stats_from_files_memory_and_pids_optional() {
        let dir = tempfile::tempdir().unwrap();
        let cgroup = Cgroup {
            path: dir.path().to_path_buf(),
        };
        fs::write(dir.path().join("cpu.stat"), CPU_STAT).unwrap();
        fs::write(dir.path().join("cgroup.controllers"), "\n").unwrap();

        let stats = cgroup.stats().unwrap();
        assert_eq!(stats.cpu.usage_usec, 1200);
        assert_eq!((stats.memory, stats.pids), (None, None));

        fs::write(dir.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        fs::write(dir.path().join("memory.current"), "8192\n").unwrap();
        fs::write(dir.path().join("memory.max"), "max\n").unwrap();
        fs::write(
            dir.path().join("memory.stat"),
            "anon 4096\nfile 2048\nkernel 5\n",
        )
        .unwrap();
        fs::write(dir.path().join("pids.current"), "3\n").unwrap();
        let stats = cgroup.stats().unwrap();
        assert_eq!(
            stats.memory,
            Some(MemoryStats {
                current: 8192,
                max: None,
                anon: 4096,
                file: 2048
            })
        );
        assert_eq!(stats.pids, Some(PidsStats { current: 3 }));

        fs::write(dir.path().join("memory.stat"), "anon 4096\n").unwrap();
        let err = cgroup.stats().unwrap_err();
        assert!(err.to_string().contains("no file line"), "{err}");
        fs::remove_file(dir.path().join("pids.current")).unwrap();
        fs::write(dir.path().join("memory.stat"), "anon 1\nfile 2\n").unwrap();
        assert!(matches!(cgroup.stats(), Err(CgroupError::Read(..))));
    }
}
