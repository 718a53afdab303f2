//! Named network namespaces, the way iproute2's `ip netns add`/`delete` keep them: an empty
//! file under `/run/netns` with the namespace's nsfs file bind-mounted on it, so that the
//! namespace outlives every process in it and `ip netns exec NAME` finds it. As iproute2 does,
//! `/run/netns` is made a shared mount (bind-mounted on itself first if it is not a mount
//! point yet), so namespaces mounted later propagate into mount namespaces cloned from ours.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

use super::BridgeError;

/// The calling thread's network namespace.
const THREAD_NETNS: &str = "/proc/thread-self/ns/net";

/// Creates a fresh network namespace and bind-mounts it at `path`. Fails with
/// [`BridgeError::NetnsExists`] if `path` exists, leaving it alone.
pub(super) fn create(path: &Path, name: &str) -> Result<(), BridgeError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    prepare_dir(dir).map_err(|e| BridgeError::NetnsDir(dir.to_path_buf(), e))?;
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(BridgeError::NetnsExists {
                path: path.to_path_buf(),
                name: name.to_string(),
            })
        }
        Err(e) => return Err(BridgeError::CreateNetns(path.to_path_buf(), e)),
    }
    // A thread of its own: unshare(CLONE_NEWNET) moves only the calling thread, which ends
    // right after, so no thread of the caller changes namespace.
    let mounted = std::thread::scope(|scope| {
        scope
            .spawn(|| -> io::Result<()> {
                unshare(CloneFlags::CLONE_NEWNET)?;
                mount(
                    Some(THREAD_NETNS),
                    path,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )?;
                Ok(())
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
    });
    mounted.map_err(|e| {
        let _ = fs::remove_file(path);
        BridgeError::CreateNetns(path.to_path_buf(), e)
    })
}

/// Unmounts and removes the namespace file; already unmounted or gone is fine.
pub(super) fn remove(path: &Path) -> Result<(), BridgeError> {
    let err = |e: io::Error| BridgeError::RemoveNetns(path.to_path_buf(), e);
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(err(e.into())),
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(err(e)),
    }
}

/// Creates `dir` and makes it a shared mount point (what iproute2 does for `/run/netns`).
fn prepare_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let shared = || {
        mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        Ok(()) => Ok(()),
        // Not a mount point yet: bind it onto itself, then share it.
        Err(Errno::EINVAL) => {
            mount(
                Some(dir),
                dir,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )?;
            Ok(shared()?)
        }
        Err(e) => Err(e.into()),
    }
}
