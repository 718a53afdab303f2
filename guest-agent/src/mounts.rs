//! The zone's early file systems: what PID 1 mounts before anything else runs.

use std::fs::{self, DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use nix::mount::{mount, MsFlags};

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("creating mount point {0}")]
    CreateMountPoint(&'static str, #[source] std::io::Error),
    #[error("mounting {fstype} on {target}")]
    Mount {
        fstype: &'static str,
        target: &'static str,
        source: nix::Error,
    },
    #[error("creating /dev/shm")]
    CreateShm(#[source] std::io::Error),
    #[error("opening /dev/console for stdio")]
    OpenConsole(#[source] std::io::Error),
    #[error("attaching /dev/console to fd {0}")]
    AttachConsole(i32, #[source] nix::Error),
    #[error("setting the hostname")]
    Hostname(#[source] nix::Error),
}

struct Mount {
    fstype: &'static str,
    target: &'static str,
    flags: MsFlags,
    data: &'static str,
}

const fn nosuid_nodev() -> MsFlags {
    MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV)
}

/// In order: each target lies on a file system mounted before it.
const MOUNTS: &[Mount] = &[
    Mount {
        fstype: "proc",
        target: "/proc",
        flags: nosuid_nodev().union(MsFlags::MS_NOEXEC),
        data: "",
    },
    Mount {
        fstype: "sysfs",
        target: "/sys",
        flags: nosuid_nodev().union(MsFlags::MS_NOEXEC),
        data: "",
    },
    // The vTPM's boot event log: /sys/kernel/security/tpm0/binary_bios_measurements.
    Mount {
        fstype: "securityfs",
        target: "/sys/kernel/security",
        flags: nosuid_nodev().union(MsFlags::MS_NOEXEC),
        data: "",
    },
    Mount {
        fstype: "devtmpfs",
        target: "/dev",
        flags: MsFlags::MS_NOSUID,
        data: "mode=0755",
    },
    Mount {
        fstype: "devpts",
        target: "/dev/pts",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        data: "gid=5,mode=620,ptmxmode=666",
    },
    Mount {
        fstype: "tmpfs",
        target: "/tmp",
        flags: nosuid_nodev(),
        data: "mode=1777",
    },
    Mount {
        fstype: "tmpfs",
        target: "/run",
        flags: nosuid_nodev(),
        data: "mode=0755",
    },
];

/// Mounts every early file system that is not mounted yet, then creates /dev/shm. Goes on
/// past a failure and returns every error, so a zone missing one file system still boots.
pub fn mount_early_filesystems() -> Vec<MountError> {
    let mut errors = Vec::new();
    for m in MOUNTS {
        let mounted = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        if is_mounted(&mounted, m.target) {
            continue;
        }
        if let Err(e) = DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(m.target)
        {
            errors.push(MountError::CreateMountPoint(m.target, e));
            continue;
        }
        let data = (!m.data.is_empty()).then_some(m.data);
        if let Err(source) = mount(Some(m.fstype), m.target, Some(m.fstype), m.flags, data) {
            errors.push(MountError::Mount {
                fstype: m.fstype,
                target: m.target,
                source,
            });
        }
    }
    if let Err(e) = create_shm() {
        errors.push(MountError::CreateShm(e));
    }
    errors
}

fn create_shm() -> std::io::Result<()> {
    DirBuilder::new().recursive(true).create("/dev/shm")?;
    fs::set_permissions("/dev/shm", fs::Permissions::from_mode(0o1777))
}

/// Whether `target` is a mount point in `mounts` (the text of /proc/self/mounts).
pub fn is_mounted(mounts: &str, target: &str) -> bool {
    mounts
        .lines()
        .any(|line| line.split_whitespace().nth(1) == Some(target))
}

/// Points fds 0-2 at /dev/console if the kernel could not open it for us (an initramfs
/// without /dev/console starts init with no stdio). Needs /proc and /dev mounted.
pub fn attach_console_stdio() -> Result<(), MountError> {
    let missing: Vec<i32> = (0..3)
        .filter(|fd| !Path::new(&format!("/proc/self/fd/{fd}")).exists())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let console = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")
        .map_err(MountError::OpenConsole)?;
    for fd in missing {
        let attached = match fd {
            0 => nix::unistd::dup2_stdin(&console),
            1 => nix::unistd::dup2_stdout(&console),
            _ => nix::unistd::dup2_stderr(&console),
        };
        attached.map_err(|e| MountError::AttachConsole(fd, e))?;
    }
    Ok(())
}

/// Sets the zone's hostname.
pub fn set_hostname(name: &str) -> Result<(), MountError> {
    nix::unistd::sethostname(name).map_err(MountError::Hostname)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "rootfs / rootfs rw 0 0\nproc /proc proc rw,nosuid 0 0\n\
                          devtmpfs /dev devtmpfs rw,nosuid,mode=755 0 0\n";

    #[test]
    fn test_is_mounted_listed_target_true() {
        assert!(is_mounted(SAMPLE, "/proc"));
        assert!(is_mounted(SAMPLE, "/dev"));
    }

    #[test]
    fn test_is_mounted_prefix_or_absent_false() {
        assert!(!is_mounted(SAMPLE, "/dev/pts"));
        assert!(!is_mounted(SAMPLE, "/sys"));
        assert!(!is_mounted("", "/proc"));
    }

    #[test]
    fn test_mounts_table_parents_first() {
        for (i, m) in MOUNTS.iter().enumerate() {
            let parent = Path::new(m.target)
                .parent()
                .and_then(Path::to_str)
                .unwrap_or("/");
            let parent_pos = MOUNTS.iter().position(|p| p.target == parent);
            assert!(
                parent_pos.is_none_or(|p| p < i),
                "{} before its parent",
                m.target
            );
        }
    }
}
