//! Container root filesystems: an image's layers applied in order (with the hostile-input rules
//! of [`crate::layer`]) into a fresh staging directory, then packed by `mkfs.ext4 -d` into a
//! read-only ext4 image without a journal. Images are cached by manifest digest in
//! [`Store::rootfs_dir`] (`<hex>.ext4`) and reused; the file appears by rename only once it is
//! complete, and a failed build leaves neither a staging directory nor an image behind.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::digest::{Digest, DigestError};
use crate::layer::{self, disk::DiskTree, LayerError};
use crate::media;
use crate::spec::Manifest;
use crate::store::{Store, StoreError};

const MIB: u64 = 1024 * 1024;
const BLOCK: u64 = 4096;

static NEXT: AtomicU64 = AtomicU64::new(0);

/// Why a root filesystem could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot create {path}")]
    Create {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("unsupported layer media type {0:?}")]
    MediaType(String),
    #[error("cannot verify layer blob")]
    Hash(#[from] DigestError),
    #[error(
        "layer blob {expected} in the store is corrupt (hashes to {actual}); re-import the image"
    )]
    Corrupt { expected: Digest, actual: Digest },
    #[error("layer {digest} is rejected")]
    Layer {
        digest: Digest,
        #[source]
        source: LayerError,
    },
    #[error("cannot measure the staged tree")]
    Measure(#[source] io::Error),
    #[error("cannot run mkfs.ext4 (install e2fsprogs: hack/setup)")]
    MkfsSpawn(#[source] io::Error),
    #[error("mkfs.ext4 failed ({status}): {stderr}")]
    Mkfs { status: String, stderr: String },
    #[error("cannot move the built image into place")]
    Rename(#[source] io::Error),
}

/// Returns the cached ext4 root filesystem of `image` (a name or digest prefix), building it
/// first if needed.
pub fn build(store: &Store, image: &str) -> Result<PathBuf, RootfsError> {
    let image = store.resolve(image)?;
    let dir = store.rootfs_dir();
    let out = dir.join(format!("{}.ext4", image.digest.hex()));
    if out.is_file() {
        tracing::debug!(path = %out.display(), "reusing cached rootfs");
        return Ok(out);
    }
    fs::create_dir_all(&dir).map_err(|e| create_error(&dir, e))?;
    let manifest = store.manifest(&image.digest)?;
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let tag = format!("{}-{}-{n}", image.digest.hex(), std::process::id());
    let staging = Cleanup(dir.join(format!(".staging-{tag}")));
    let tmp = Cleanup(dir.join(format!(".{tag}.ext4.tmp")));
    fs::create_dir(&staging.0).map_err(|e| create_error(&staging.0, e))?;

    let started = std::time::Instant::now();
    apply_layers(store, &manifest, &staging.0)?;
    let (bytes, inodes) = measure(&staging.0).map_err(RootfsError::Measure)?;
    let size = image_size(bytes);
    mkfs(&staging.0, &tmp.0, size, inodes + inodes / 4 + 1024)?;
    fs::rename(&tmp.0, &out).map_err(RootfsError::Rename)?;
    tracing::info!(
        image = %image.name, path = %out.display(), size, elapsed_ms = started.elapsed().as_millis() as u64,
        "built rootfs"
    );
    Ok(out)
}

/// Applies the manifest's layers, in order, into the existing directory `dir`. Exposed so
/// tests (and debugging) can look at the tree before it is packed.
pub fn apply_layers(store: &Store, manifest: &Manifest, dir: &Path) -> Result<(), RootfsError> {
    let mut tree = DiskTree::new(dir);
    for layer in &manifest.layers {
        let compression = media::layer_compression(&layer.media_type)
            .ok_or_else(|| RootfsError::MediaType(layer.media_type.clone()))?;
        let path = store.blob_path(&layer.digest);
        let (actual, _) = Digest::of_file(&path)?;
        if actual != layer.digest {
            return Err(RootfsError::Corrupt {
                expected: layer.digest.clone(),
                actual,
            });
        }
        layer::apply(&mut tree, || {
            layer::decompress(BufReader::new(File::open(&path)?), compression)
        })
        .map_err(|source| RootfsError::Layer {
            digest: layer.digest.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Bytes allocated under `root` (hard links counted once) and the number of inodes.
fn measure(root: &Path) -> io::Result<(u64, u64)> {
    let mut seen = HashSet::new();
    let mut bytes = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path)?;
        if !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        bytes += meta.blocks() * 512;
        if meta.is_dir() {
            for entry in fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        }
    }
    Ok((bytes, seen.len() as u64))
}

/// The tree's size * 1.2 + 16 MiB, rounded up to 4 KiB blocks.
fn image_size(bytes: u64) -> u64 {
    let size = bytes + bytes / 5 + 16 * MIB;
    size.div_ceil(BLOCK) * BLOCK
}

fn mkfs(tree: &Path, out: &Path, size: u64, inodes: u64) -> Result<(), RootfsError> {
    let file = File::create(out).map_err(|e| create_error(out, e))?;
    file.set_len(size).map_err(|e| create_error(out, e))?;
    drop(file);
    let output = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(tree)
        .args([
            "-L",
            "rootfs",
            "-O",
            "^has_journal",
            "-N",
            &inodes.to_string(),
        ])
        .arg(out)
        .arg(format!("{}k", size / 1024))
        .output()
        .map_err(RootfsError::MkfsSpawn)?;
    if !output.status.success() {
        return Err(RootfsError::Mkfs {
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(())
}

fn create_error(path: &Path, source: io::Error) -> RootfsError {
    RootfsError::Create {
        path: path.display().to_string(),
        source,
    }
}

/// Deletes a file or directory when dropped (after a successful rename there is nothing left).
#[derive(Debug)]
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let result = match fs::symlink_metadata(&self.0) {
            Ok(meta) if meta.is_dir() => fs::remove_dir_all(&self.0),
            Ok(_) => fs::remove_file(&self.0),
            Err(_) => return,
        };
        if let Err(e) = result {
            tracing::warn!(path = %self.0.display(), error = %e, "cannot clean up");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_image_size_small_tree_rounded_to_blocks() {
        assert_eq!(image_size(0), 16 * MIB);
        let size = image_size(1000);
        assert_eq!(size % BLOCK, 0);
        assert!(size >= 16 * MIB + 1200);
    }
}
