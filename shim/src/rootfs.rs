//! A container's root file system for a zone: containerd's snapshot mounts are mounted on
//! the bundle's `rootfs/` (task API: the shim mounts `CreateTaskRequest.rootfs`), copied into
//! an ext4 image with `mkfs.ext4 -d`, and unmounted again at once, so nothing stays mounted on
//! the host while the container runs. The zone mounts the image read-only under a RAM overlay.
//!
//! Images go into disk slots: the zone's first container gets slot 0, built before the VMM
//! starts; a pod's zone starts with spare slots (sparse files of a fixed size) because the
//! VMM attaches disks only at start, and a later container's image is written into a free
//! slot in place (the VMM reads the file with positioned I/O, and the guest has not read the
//! device beyond its partition scan, whose page cache Linux drops when it closes the disk).

use std::path::{Path, PathBuf};

use containerd_shim_protos::api::Mount;
use thiserror::Error;
use tokio::process::Command;

/// Room beyond the files' own size in a first container's image: ext4 metadata, inodes.
const IMAGE_SLACK: u64 = 64 << 20;

#[derive(Debug, Error)]
pub enum RootfsError {
    #[error("mounting {kind} on {target}: {reason}")]
    Mount {
        kind: String,
        target: PathBuf,
        reason: String,
    },
    #[error("creating the image {0}")]
    CreateImage(PathBuf, #[source] std::io::Error),
    #[error("running mkfs.ext4 (is e2fsprogs installed?)")]
    MkfsSpawn(#[source] std::io::Error),
    #[error("mkfs.ext4 -d {dir} {image} failed: {stderr}")]
    Mkfs {
        dir: PathBuf,
        image: PathBuf,
        stderr: String,
    },
    #[error("the root file system ({need_mib} MiB) does not fit a spare disk of {have_mib} MiB: raise spare_disk_mib in the shim's config")]
    TooLarge { need_mib: u64, have_mib: u64 },
}

/// Mounts containerd's `mounts` on `target` (the bundle's `rootfs/`); false when there are
/// none (the rootfs is then `target` as it is).
pub async fn mount(mounts: &[Mount], target: &Path) -> Result<bool, RootfsError> {
    for m in mounts {
        containerd_shim::asynchronous::util::mount_rootfs(m, target)
            .await
            .map_err(|e| RootfsError::Mount {
                kind: m.type_.clone(),
                target: target.to_path_buf(),
                reason: e.to_string(),
            })?;
    }
    Ok(!mounts.is_empty())
}

/// Unmounts everything under `target`; a target that is not mounted is fine.
pub fn unmount(target: &Path) {
    let Some(target) = target.to_str() else {
        return;
    };
    if let Err(e) = containerd_shim::mount::umount_recursive(Some(target), libc::MNT_DETACH) {
        tracing::warn!(target, error = %e, "unmounting");
    }
}

/// Bytes the files under `dir` take, roughly as ext4 would store them.
pub fn content_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        total += meta.len().div_ceil(4096) * 4096 + 4096;
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        }
    }
    total
}

/// Size of a first container's image for the files under `dir`, in whole MiB.
pub fn image_size(dir: &Path, minimum_mib: u64) -> u64 {
    let need = content_size(dir) * 3 / 2 + IMAGE_SLACK;
    (need.div_ceil(1 << 20)).max(minimum_mib) << 20
}

/// Creates (or resizes) `image` to `size` bytes, sparse.
pub fn create_sparse(image: &Path, size: u64) -> Result<(), RootfsError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(image)
        .map_err(|e| RootfsError::CreateImage(image.to_path_buf(), e))?;
    file.set_len(size)
        .map_err(|e| RootfsError::CreateImage(image.to_path_buf(), e))
}

/// Checks that the files under `dir` fit a spare disk of `slot_bytes`.
pub fn check_fits(dir: &Path, slot_bytes: u64) -> Result<(), RootfsError> {
    let need = content_size(dir) + IMAGE_SLACK;
    if need > slot_bytes {
        return Err(RootfsError::TooLarge {
            need_mib: need >> 20,
            have_mib: slot_bytes >> 20,
        });
    }
    Ok(())
}

/// Writes an ext4 file system holding the files under `dir` into `image` (an existing file,
/// whose size it takes), in place.
pub async fn make_ext4(dir: &Path, image: &Path) -> Result<(), RootfsError> {
    let output = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-m", "0", "-O", "^has_journal"])
        .args(["-E", "lazy_itable_init=1,nodiscard"])
        .arg("-d")
        .arg(dir)
        .arg(image)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(RootfsError::MkfsSpawn)?;
    if !output.status.success() {
        return Err(RootfsError::Mkfs {
            dir: dir.to_path_buf(),
            image: image.to_path_buf(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_image_size_small_tree_gets_minimum() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), vec![0u8; 10_000]).unwrap();

        assert_eq!(image_size(dir.path(), 128), 128 << 20);
    }

    #[test]
    fn test_check_fits_too_small_slot_says_what_to_raise() {
        let dir = tempfile::tempdir().unwrap();

        let err = check_fits(dir.path(), 1 << 20).unwrap_err();

        assert!(err.to_string().contains("spare_disk_mib"), "{err}");
    }

    #[test]
    fn test_create_sparse_sets_length() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("disk");

        create_sparse(&image, 8 << 20).unwrap();

        assert_eq!(std::fs::metadata(&image).unwrap().len(), 8 << 20);
    }
}
