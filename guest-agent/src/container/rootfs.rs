//! A container's root file system inside the zone, one per container:
//!
//! ```text
//! /run/zone/containers/<id>/lower   the image's block device read-only (ext4 or erofs), or
//!                                   a zone directory bound read-only
//! /run/zone/containers/<id>/rw      tmpfs holding the overlay's upper/ and work/
//! /run/zone/containers/<id>/root    overlay (lower + rw/upper): the container's /, writes
//!                                   stay in RAM
//!   proc/ sys/ (ro) dev/ (tmpfs: null zero full random urandom tty, pts/, shm/) tmp/ (tmpfs
//!   only if the image has none), then the config's extra mounts ([`super::volumes`])
//! ```
//!
//! Everything is mounted once, when the container is created, in the agent's mount namespace;
//! each process of the container then gets a copy of that tree as its own root
//! (`process.rs`). The image is untrusted: mount points inside it must be real
//! directories (a symlink named `proc` would otherwise redirect a mount into the zone), and
//! files are read from it with `openat2(RESOLVE_IN_ROOT)` so symlinks resolve inside the image
//! as they would in the container.

use std::fs::{self, DirBuilder, File};
use std::io::{self, Read};
use std::os::unix::fs::{symlink, DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};

use super::config::RootfsSource;
use super::spec::SpecError;

/// Where containers' directories are made in a zone.
pub const CONTAINERS_DIR: &str = "/run/zone/containers";
/// The root directory of the container [`super::Launch`] runs requests in, as the agent sees
/// it.
pub const CONTAINER_ROOT: &str = "/run/zone/containers/main/root";

/// Character devices created in the container's /dev: name, major, minor.
const DEV_NODES: &[(&str, u64, u64)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];
/// Symbolic links in the container's /dev: name, target.
const DEV_LINKS: &[(&str, &str)] = &[
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("mounting {device} read-only as {fstype} failed (is it an {fstype} image?)")]
    MountImage {
        device: String,
        fstype: &'static str,
        #[source]
        source: Errno,
    },
    #[error("rootfs directory {0} is not a directory")]
    SourceNotDirectory(PathBuf),
    #[error("mounting {fstype} on {target}")]
    Mount {
        fstype: &'static str,
        target: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("creating {0}")]
    Create(PathBuf, #[source] io::Error),
    #[error("creating device node {0}")]
    Mknod(PathBuf, #[source] Errno),
    #[error("/{0} in the image is not a directory")]
    NotADirectory(&'static str),
    #[error("opening {0} in the root")]
    Open(String, #[source] Errno),
    #[error("reading {0} in the root")]
    Read(String, #[source] io::Error),
    #[error("{0} in the root is larger than {1} bytes")]
    TooLarge(String, u64),
    #[error("removing {0}")]
    Remove(PathBuf, #[source] io::Error),
}

/// The directories of one container under the containers directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerDirs {
    pub dir: PathBuf,
    pub lower: PathBuf,
    pub rw: PathBuf,
    pub root: PathBuf,
}

impl ContainerDirs {
    pub fn new(containers_dir: &Path, id: &str) -> Self {
        let dir = containers_dir.join(id);
        ContainerDirs {
            lower: dir.join("lower"),
            rw: dir.join("rw"),
            root: dir.join("root"),
            dir,
        }
    }

    /// Detaches the root (with everything mounted under it), the tmpfs and the lower layer,
    /// then removes the directories. Lazy unmounts never fail on a busy mount; mounts a
    /// running process still holds go when it exits.
    pub fn unmount_and_remove(&self) -> Result<(), RootfsError> {
        for target in [&self.root, &self.rw, &self.lower] {
            // A target that is no mount point (EINVAL) or gone (ENOENT) is what we want.
            match umount2(target, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
                Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
                Err(source) => {
                    return Err(RootfsError::Mount {
                        fstype: "umount",
                        target: target.clone(),
                        source,
                    })
                }
            }
        }
        // rmdir, never a recursive removal: a mount still there must not lose its files.
        for dir in [&self.root, &self.rw, &self.lower, &self.dir] {
            match fs::remove_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(RootfsError::Remove(dir.clone(), e)),
            }
        }
        Ok(())
    }
}

/// Mounts the layers and the standard file systems of a container root; on failure
/// everything mounted is undone (the returned stack undoes it too unless kept).
pub fn mount_root(
    dirs: &ContainerDirs,
    source: &RootfsSource,
    stack: &mut MountStack,
) -> Result<(), RootfsError> {
    mount_layers(dirs, source, stack)?;
    mount_inside(&dirs.root, stack)
}

/// Makes the container's root mount read-only; the file systems mounted inside keep their
/// own flags.
pub fn make_root_readonly(root: &Path) -> Result<(), RootfsError> {
    let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
    mount(None::<&str>, root, None::<&str>, flags, None::<&str>).map_err(|source| {
        RootfsError::Mount {
            fstype: "overlay (read-only remount)",
            target: root.to_path_buf(),
            source,
        }
    })
}

fn mount_layers(
    dirs: &ContainerDirs,
    source: &RootfsSource,
    stack: &mut MountStack,
) -> Result<(), RootfsError> {
    let (lower, rw, root) = (&dirs.lower, &dirs.rw, &dirs.root);
    for dir in [lower, rw, root] {
        create_dir(dir, 0o755)?;
    }
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOATIME;
    match source {
        RootfsSource::Device(spec) => {
            let fstype = spec.fstype.as_str();
            mount(Some(&spec.device), lower, Some(fstype), flags, None::<&str>).map_err(
                |source| RootfsError::MountImage {
                    device: spec.device.display().to_string(),
                    fstype,
                    source,
                },
            )?;
            stack.push(lower);
        }
        RootfsSource::Directory(dir) => {
            if !fs::metadata(dir).is_ok_and(|m| m.is_dir()) {
                return Err(RootfsError::SourceNotDirectory(dir.clone()));
            }
            let bind_error = |source| RootfsError::Mount {
                fstype: "bind",
                target: lower.clone(),
                source,
            };
            mount(
                Some(dir),
                lower,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(bind_error)?;
            stack.push(lower);
            mount(
                None::<&str>,
                lower,
                None::<&str>,
                MsFlags::MS_REMOUNT | MsFlags::MS_BIND | flags,
                None::<&str>,
            )
            .map_err(bind_error)?;
        }
    }
    stack.mount(
        "tmpfs",
        rw,
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        "mode=0755",
    )?;
    let (upper, work) = (rw.join("upper"), rw.join("work"));
    create_dir(&upper, 0o755)?;
    create_dir(&work, 0o755)?;
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    stack.mount("overlay", root, MsFlags::empty(), &options)
}

fn mount_inside(root: &Path, stack: &mut MountStack) -> Result<(), RootfsError> {
    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    stack.mount("proc", &image_dir(root, "proc")?, nosuid_nodev_noexec, "")?;
    let sys_flags = nosuid_nodev_noexec | MsFlags::MS_RDONLY;
    stack.mount("sysfs", &image_dir(root, "sys")?, sys_flags, "")?;
    let dev = image_dir(root, "dev")?;
    stack.mount(
        "tmpfs",
        &dev,
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        "mode=0755",
    )?;
    for &(name, major, minor) in DEV_NODES {
        let path = dev.join(name);
        mknod(
            &path,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(major, minor),
        )
        .map_err(|e| RootfsError::Mknod(path.clone(), e))?;
        // mknod applies the umask.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666))
            .map_err(|e| RootfsError::Create(path.clone(), e))?;
    }
    for &(name, target) in DEV_LINKS {
        let path = dev.join(name);
        symlink(target, &path).map_err(|e| RootfsError::Create(path, e))?;
    }
    let pts = dev.join("pts");
    create_dir(&pts, 0o755)?;
    let pts_options = "newinstance,gid=5,mode=0620,ptmxmode=0666";
    stack.mount(
        "devpts",
        &pts,
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        pts_options,
    )?;
    let shm = dev.join("shm");
    create_dir(&shm, 0o1777)?;
    stack.mount(
        "tmpfs",
        &shm,
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        "mode=1777",
    )?;
    let tmp = root.join("tmp");
    if matches!(fs::symlink_metadata(&tmp), Err(e) if e.kind() == io::ErrorKind::NotFound) {
        create_dir(&tmp, 0o1777)?;
        stack.mount(
            "tmpfs",
            &tmp,
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            "mode=1777",
        )?;
    }
    Ok(())
}

/// `root/name` as a real directory: created when missing, refused when it is anything else
/// (a symlink in the image must not redirect a mount).
fn image_dir(root: &Path, name: &'static str) -> Result<PathBuf, RootfsError> {
    let path = root.join(name);
    match fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_dir() => Ok(path),
        Ok(_) => Err(RootfsError::NotADirectory(name)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            create_dir(&path, 0o755)?;
            Ok(path)
        }
        Err(e) => Err(RootfsError::Create(path, e)),
    }
}

pub(super) fn create_dir(path: &Path, mode: u32) -> Result<(), RootfsError> {
    DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .and_then(|()| fs::set_permissions(path, fs::Permissions::from_mode(mode)))
        .map_err(|e| RootfsError::Create(path.to_path_buf(), e))
}

/// Mount points made so far; unmounted, last first, unless [`MountStack::keep`] is called.
#[derive(Debug, Default)]
pub struct MountStack {
    targets: Vec<PathBuf>,
}

impl MountStack {
    pub fn mount(
        &mut self,
        fstype: &'static str,
        target: &Path,
        flags: MsFlags,
        data: &str,
    ) -> Result<(), RootfsError> {
        let data = (!data.is_empty()).then_some(data);
        mount(Some(fstype), target, Some(fstype), flags, data).map_err(|source| {
            RootfsError::Mount {
                fstype,
                target: target.to_path_buf(),
                source,
            }
        })?;
        self.push(target);
        Ok(())
    }

    pub fn push(&mut self, target: &Path) {
        self.targets.push(target.to_path_buf());
    }

    pub fn keep(mut self) {
        self.targets.clear();
    }
}

impl Drop for MountStack {
    fn drop(&mut self) {
        while let Some(target) = self.targets.pop() {
            if let Err(e) = umount2(&target, MntFlags::MNT_DETACH) {
                tracing::warn!(target = %target.display(), error = %e, "undoing a container mount");
            }
        }
    }
}

/// `path` opened with `flags`, resolved inside `root`: `..` and symbolic links (absolute
/// ones too) cannot leave it, magic links (`/proc/self/root`) are refused.
pub fn open_in_root(root: &Path, path: &str, flags: OFlag) -> Result<File, RootfsError> {
    let root_flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let root_dir = nix::fcntl::open(root, root_flags, Mode::empty())
        .map_err(|e| RootfsError::Open(root.display().to_string(), e))?;
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = openat2(&root_dir, path, how).map_err(|e| RootfsError::Open(path.to_string(), e))?;
    Ok(File::from(fd))
}

/// The text of `path` resolved inside `root` (symlinks cannot leave it), at most `limit`
/// bytes; `None` when the file does not exist.
pub fn read_in_root(root: &Path, path: &str, limit: u64) -> Result<Option<String>, RootfsError> {
    let file = match open_in_root(root, path, OFlag::O_RDONLY | OFlag::O_NOCTTY) {
        Ok(file) => file,
        Err(RootfsError::Open(_, Errno::ENOENT)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| RootfsError::Read(path.to_string(), e))?;
    if bytes.len() as u64 > limit {
        return Err(RootfsError::TooLarge(path.to_string(), limit));
    }
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// Whether `path` resolved inside `root` is a directory.
pub fn is_dir_in_root(root: &Path, path: &str) -> bool {
    open_in_root(root, path, OFlag::O_PATH | OFlag::O_DIRECTORY).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_read_in_root_symlink_stays_inside_root() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("etc")).unwrap();
        fs::write(root.path().join("etc/real"), "inside\n").unwrap();
        // Absolute and climbing links resolve against the root, as after chroot.
        symlink("/etc/real", root.path().join("etc/abs")).unwrap();
        symlink("../../../../../etc/real", root.path().join("etc/climb")).unwrap();

        let abs = read_in_root(root.path(), "/etc/abs", 100).unwrap();
        let climb = read_in_root(root.path(), "/etc/climb", 100).unwrap();

        assert_eq!(abs.as_deref(), Some("inside\n"));
        assert_eq!(climb.as_deref(), Some("inside\n"));
    }

    #[test]
    fn test_read_in_root_missing_none_oversized_error() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("big"), vec![b'x'; 101]).unwrap();

        assert_eq!(read_in_root(root.path(), "/etc/passwd", 100).unwrap(), None);
        assert!(matches!(
            read_in_root(root.path(), "/big", 100),
            Err(RootfsError::TooLarge(_, 100))
        ));
    }

    #[test]
    fn test_is_dir_in_root_files_and_links() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("work")).unwrap();
        fs::write(root.path().join("file"), "").unwrap();
        symlink("/work", root.path().join("link")).unwrap();

        assert!(is_dir_in_root(root.path(), "/work"));
        assert!(is_dir_in_root(root.path(), "/link"));
        assert!(is_dir_in_root(root.path(), "/"));
        assert!(!is_dir_in_root(root.path(), "/file"));
        assert!(!is_dir_in_root(root.path(), "/missing"));
    }

    #[test]
    fn test_image_dir_symlink_refused() {
        let root = tempfile::tempdir().unwrap();
        symlink("/", root.path().join("proc")).unwrap();
        fs::create_dir(root.path().join("sys")).unwrap();

        assert!(matches!(
            image_dir(root.path(), "proc"),
            Err(RootfsError::NotADirectory("proc"))
        ));
        assert_eq!(
            image_dir(root.path(), "sys").unwrap(),
            root.path().join("sys")
        );
        assert_eq!(
            image_dir(root.path(), "dev").unwrap(),
            root.path().join("dev")
        );
        assert!(root.path().join("dev").is_dir());
    }
}
