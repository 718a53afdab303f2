//! A container's extra mounts (runtime-spec `config.md` "Mounts"), made under its root at
//! create time.
//!
//! The destination is inside a hostile image: it is resolved component by component with
//! `openat2(RESOLVE_IN_ROOT)` from a descriptor of the root, so `..` and symbolic links in
//! the image (absolute ones too) resolve as they would in the container and never lead out
//! of it; missing components are created in the directory that descriptor names. The mount
//! then goes onto `/proc/self/fd/N` of the resolved `O_PATH` descriptor, so nothing the image
//! holds can swap the path between the check and the mount.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{fstat, fstatat, mkdirat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

use super::config::{MountKind, MountOptions, MountSpec};
use super::rootfs::MountStack;

/// devpts options: a private instance whose ptmx anyone may open, terminals owned by the
/// `tty` group (5) as most images expect.
pub const DEVPTS_OPTIONS: &str = "newinstance,gid=5,mode=0620,ptmxmode=0666";

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("mount destination {destination:?}: resolving {component:?} in the root")]
    Resolve {
        destination: String,
        component: String,
        #[source]
        source: Errno,
    },
    #[error("mount destination {destination:?}: creating {component:?} in the root")]
    Create {
        destination: String,
        component: String,
        #[source]
        source: Errno,
    },
    #[error("mount destination {destination:?}: {component:?} is not a directory")]
    NotADirectory {
        destination: String,
        component: String,
    },
    #[error("mount destination {0:?} is neither a file nor a symbolic link in the image")]
    NotAFile(String),
    #[error("bind mount source {0}")]
    BindSource(PathBuf, #[source] io::Error),
    #[error("mounting {fstype} on {destination:?}")]
    Mount {
        fstype: &'static str,
        destination: String,
        #[source]
        source: Errno,
    },
}

/// Mounts each of `mounts` under `root`, in order.
pub fn mount_extra(
    root: &Path,
    mounts: &[MountSpec],
    stack: &mut MountStack,
) -> Result<(), VolumeError> {
    for spec in mounts {
        mount_one(root, spec, stack)?;
    }
    Ok(())
}

fn mount_one(root: &Path, spec: &MountSpec, stack: &mut MountStack) -> Result<(), VolumeError> {
    let destination = spec.destination.as_str();
    let source_is_file = match &spec.kind {
        MountKind::Bind { source, .. } => {
            let meta =
                fs::metadata(source).map_err(|e| VolumeError::BindSource(source.clone(), e))?;
            !meta.is_dir()
        }
        _ => false,
    };
    let target_fd = resolve_in_root(root, destination, source_is_file)?;
    let target = PathBuf::from(format!("/proc/self/fd/{}", target_fd.as_raw_fd()));
    let mount_error = |fstype: &'static str| {
        move |source| VolumeError::Mount {
            fstype,
            destination: destination.to_string(),
            source,
        }
    };
    let flags = option_flags(spec.options);
    match &spec.kind {
        MountKind::Bind { source, recursive } => {
            let bind = if *recursive {
                MsFlags::MS_BIND | MsFlags::MS_REC
            } else {
                MsFlags::MS_BIND
            };
            mount(Some(source), &target, None::<&str>, bind, None::<&str>)
                .map_err(mount_error("bind"))?;
            let mounted = real_path(&target);
            stack.push(&mounted);
            if !flags.is_empty() {
                // The descriptor names the directory under the new mount, not the mount: the
                // remount goes by path. That path is fully resolved (no links) and no process
                // of the container runs yet to change it.
                let remount = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | flags;
                mount(None::<&str>, &mounted, None::<&str>, remount, None::<&str>)
                    .map_err(mount_error("bind (remount)"))?;
            }
        }
        kind => {
            let fstype = kind.fstype();
            let data = data_for(kind);
            let data = (!data.is_empty()).then_some(data.as_str());
            mount(Some(fstype), &target, Some(fstype), flags, data).map_err(mount_error(fstype))?;
            stack.push(&real_path(&target));
        }
    }
    Ok(())
}

/// Where containers get the zone's resolv.conf.
pub const RESOLV_CONF_DESTINATION: &str = "/etc/resolv.conf";
/// Where containers get the zone's SPIFFE Workload API directory (its socket inside).
pub const WORKLOAD_API_DESTINATION: &str = "/run/spiffe";

/// A read-only (nosuid, nodev, noexec) bind of the zone's `source` onto `destination`.
fn read_only_bind(source: &Path, destination: &str) -> MountSpec {
    MountSpec {
        destination: destination.to_string(),
        kind: MountKind::Bind {
            source: source.to_path_buf(),
            recursive: false,
        },
        options: MountOptions {
            readonly: true,
            nosuid: true,
            nodev: true,
            noexec: true,
        },
    }
}

/// Binds the zone's directory `source` read-only (nosuid, nodev, noexec too) onto
/// `destination` (checked, not "/") in the root, creating the missing directories on the
/// way in the root's upper layer. Connecting to a socket in it still works: a read-only
/// mount refuses writes to files, not connections.
pub fn mount_zone_dir(
    root: &Path,
    source: &Path,
    destination: &str,
    stack: &mut MountStack,
) -> Result<(), VolumeError> {
    mount_one(root, &read_only_bind(source, destination), stack)
}

/// Binds the zone's file `source` read-only (nosuid, nodev, noexec too) onto `destination`
/// (checked, not "/") in the root. The image's file there is covered. A symbolic link there
/// (images point /etc/resolv.conf at a resolver's runtime file, often absent) is replaced by
/// an empty file in the root's upper layer, and a missing file is created; a directory or
/// anything else there is refused.
pub fn mount_zone_file(
    root: &Path,
    source: &Path,
    destination: &str,
    stack: &mut MountStack,
) -> Result<(), VolumeError> {
    let (parent, name) = destination
        .trim_end_matches('/')
        .rsplit_once('/')
        .map(|(parent, name)| (if parent.is_empty() { "/" } else { parent }, name))
        .unwrap_or(("/", destination));
    let dir = resolve_in_root(root, parent, false)?;
    let create_error = |source| VolumeError::Create {
        destination: destination.to_string(),
        component: destination.to_string(),
        source,
    };
    match fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
            SFlag::S_IFREG => {}
            SFlag::S_IFLNK => {
                unlinkat(&dir, name, UnlinkatFlags::NoRemoveDir).map_err(create_error)?;
                create_in(&dir, name, true).map_err(create_error)?;
            }
            _ => return Err(VolumeError::NotAFile(destination.to_string())),
        },
        Err(Errno::ENOENT) => create_in(&dir, name, true).map_err(create_error)?,
        Err(source) => {
            return Err(VolumeError::Resolve {
                destination: destination.to_string(),
                component: destination.to_string(),
                source,
            })
        }
    }
    mount_one(root, &read_only_bind(source, destination), stack)
}

fn option_flags(options: MountOptions) -> MsFlags {
    let mut flags = MsFlags::empty();
    for (on, flag) in [
        (options.readonly, MsFlags::MS_RDONLY),
        (options.nosuid, MsFlags::MS_NOSUID),
        (options.nodev, MsFlags::MS_NODEV),
        (options.noexec, MsFlags::MS_NOEXEC),
    ] {
        if on {
            flags |= flag;
        }
    }
    flags
}

/// The `data` argument of mount(2) for a kind.
fn data_for(kind: &MountKind) -> String {
    match kind {
        MountKind::Tmpfs { size, mode } => {
            let mut options = vec![format!("mode={:04o}", mode.unwrap_or(0o755))];
            if let Some(size) = size {
                options.push(format!("size={size}"));
            }
            options.join(",")
        }
        MountKind::Devpts => DEVPTS_OPTIONS.to_string(),
        _ => String::new(),
    }
}

/// Where the magic link `/proc/self/fd/N` points, as the agent sees it (for unmounting
/// during create's unwinding); the link itself when it cannot be read.
fn real_path(link: &Path) -> PathBuf {
    fs::read_link(link).unwrap_or_else(|_| link.to_path_buf())
}

/// `destination` (checked by [`super::config::check_destination`]) opened `O_PATH` inside
/// `root`, missing components created: directories, and the last one an empty file when
/// `file` is set (the target of a file bind mount).
pub fn resolve_in_root(root: &Path, destination: &str, file: bool) -> Result<OwnedFd, VolumeError> {
    let root_fd = open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|source| VolumeError::Resolve {
        destination: destination.to_string(),
        component: "/".to_string(),
        source,
    })?;
    let parts: Vec<&str> = destination.split('/').filter(|p| !p.is_empty()).collect();
    let how = || {
        OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
    };
    let mut parent = root_fd
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| VolumeError::Resolve {
            destination: destination.to_string(),
            component: "/".to_string(),
            source: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        })?;
    for (i, part) in parts.iter().enumerate() {
        let prefix = parts[..=i].join("/");
        let last = i + 1 == parts.len();
        let resolve_error = |source| VolumeError::Resolve {
            destination: destination.to_string(),
            component: format!("/{prefix}"),
            source,
        };
        let fd = match openat2(&root_fd, prefix.as_str(), how()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                create_in(&parent, part, last && file).map_err(|source| VolumeError::Create {
                    destination: destination.to_string(),
                    component: format!("/{prefix}"),
                    source,
                })?;
                openat2(&root_fd, prefix.as_str(), how()).map_err(resolve_error)?
            }
            Err(e) => return Err(resolve_error(e)),
        };
        let is_dir = fstat(&fd)
            .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
            .map_err(resolve_error)?;
        if !(is_dir || (last && file)) {
            return Err(VolumeError::NotADirectory {
                destination: destination.to_string(),
                component: format!("/{prefix}"),
            });
        }
        parent = fd;
    }
    Ok(parent)
}

/// Creates `name` in the directory `dir` (an `O_PATH` descriptor): a directory, or an empty
/// file. Never follows a symbolic link named `name`.
fn create_in(dir: &OwnedFd, name: &str, file: bool) -> Result<(), Errno> {
    if file {
        let flags =
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        openat(dir, name, flags, Mode::from_bits_truncate(0o644)).map(drop)
    } else {
        mkdirat(dir, name, Mode::from_bits_truncate(0o755))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn path_of(fd: &OwnedFd) -> PathBuf {
        fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap()
    }

    #[test]
    fn test_resolve_in_root_creates_missing_dirs() {
        let root = tempfile::tempdir().unwrap();

        let fd = resolve_in_root(root.path(), "/data/deep/dir", false).unwrap();

        assert_eq!(path_of(&fd), root.path().join("data/deep/dir"));
        assert!(root.path().join("data/deep/dir").is_dir());
    }

    #[test]
    fn test_resolve_in_root_file_target_created_as_file() {
        let root = tempfile::tempdir().unwrap();

        let fd = resolve_in_root(root.path(), "/etc/resolv.conf", true).unwrap();

        assert_eq!(path_of(&fd), root.path().join("etc/resolv.conf"));
        assert!(root.path().join("etc/resolv.conf").is_file());
    }

    #[test]
    fn test_resolve_in_root_symlink_out_of_root_stays_inside() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        // A hostile image points its directories at the zone's files; the same path inside
        // the image is where they must lead.
        let inside_abs = root.path().join(outside.path().strip_prefix("/").unwrap());
        fs::create_dir_all(&inside_abs).unwrap();
        symlink(outside.path(), root.path().join("abs")).unwrap();
        symlink("../../../../../../..", root.path().join("climb")).unwrap();
        fs::create_dir(root.path().join("var")).unwrap();
        fs::create_dir(root.path().join("run")).unwrap();
        symlink("/run", root.path().join("var/run")).unwrap();

        let abs = resolve_in_root(root.path(), "/abs/x", false).unwrap();
        let climb = resolve_in_root(root.path(), "/climb/tmp/y", false).unwrap();
        let run = resolve_in_root(root.path(), "/var/run/secrets", false).unwrap();

        assert_eq!(path_of(&abs), inside_abs.join("x"));
        assert_eq!(path_of(&climb), root.path().join("tmp/y"));
        assert_eq!(path_of(&run), root.path().join("run/secrets"));
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn test_resolve_in_root_through_file_or_dangling_link_rejected() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("file"), "").unwrap();
        symlink("/nowhere/at/all", root.path().join("dangling")).unwrap();

        assert!(matches!(
            resolve_in_root(root.path(), "/file/x", false),
            Err(VolumeError::NotADirectory { .. }) | Err(VolumeError::Resolve { .. })
        ));
        assert!(matches!(
            resolve_in_root(root.path(), "/file", false),
            Err(VolumeError::NotADirectory { .. })
        ));
        let dangling = resolve_in_root(root.path(), "/dangling/x", false).unwrap_err();
        assert!(
            matches!(
                dangling,
                VolumeError::Create {
                    source: Errno::EEXIST,
                    ..
                }
            ),
            "{dangling:?}"
        );
        assert!(!Path::new("/nowhere").exists());
    }

    #[test]
    fn test_option_flags_each_option_its_flag() {
        assert_eq!(option_flags(MountOptions::default()), MsFlags::empty());
        let all = MountOptions {
            readonly: true,
            nosuid: true,
            nodev: true,
            noexec: true,
        };
        assert_eq!(
            option_flags(all),
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC
        );
    }

    #[test]
    fn test_data_for_kinds() {
        let tmpfs = MountKind::Tmpfs {
            size: Some(65536),
            mode: Some(0o1777),
        };
        assert_eq!(data_for(&tmpfs), "mode=1777,size=65536");
        assert_eq!(
            data_for(&MountKind::Tmpfs {
                size: None,
                mode: None
            }),
            "mode=0755"
        );
        assert_eq!(data_for(&MountKind::Devpts), DEVPTS_OPTIONS);
        assert_eq!(data_for(&MountKind::Proc), "");
    }
}
