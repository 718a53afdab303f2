//! A layer tree on disk: the staging directory a root filesystem is built in. The driver in
//! [`super`] has checked every parent of every path it hands over to be a real directory inside
//! the root, so joining is safe; files are created with `O_EXCL`, which never follows a symlink.

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{lchown, symlink, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use super::{Kind, LayerError, Meta, Tree};

/// A root directory on disk.
#[derive(Debug)]
pub struct DiskTree {
    root: PathBuf,
}

impl DiskTree {
    /// A tree rooted at the existing directory `root`.
    pub fn new(root: &Path) -> Self {
        DiskTree {
            root: root.to_path_buf(),
        }
    }

    fn full(&self, path: &Path) -> PathBuf {
        self.root.join(path)
    }

    fn set_owner_and_xattrs(&self, full: &Path, meta: &Meta) -> Result<(), LayerError> {
        let uid = u32::try_from(meta.uid).ok();
        let gid = u32::try_from(meta.gid).ok();
        match lchown(full, uid, gid) {
            Ok(()) => {}
            // Not root (unit tests as a user): ownership cannot be kept.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                tracing::debug!(path = %full.display(), "cannot chown, not root");
            }
            Err(e) => return Err(write_error(full, e)),
        }
        for (name, value) in &meta.xattrs {
            let name = OsStr::from_bytes(name);
            if let Err(e) = xattr::set(full, name, value) {
                tracing::warn!(path = %full.display(), xattr = ?name, error = %e, "cannot set xattr");
            }
        }
        Ok(())
    }

    fn set_mode(&self, full: &Path, mode: u32) -> Result<(), LayerError> {
        fs::set_permissions(full, fs::Permissions::from_mode(mode))
            .map_err(|e| write_error(full, e))
    }
}

fn write_error(path: &Path, source: io::Error) -> LayerError {
    LayerError::Write {
        path: path.display().to_string(),
        source,
    }
}

impl Tree for DiskTree {
    fn kind(&self, path: &Path) -> Result<Option<Kind>, LayerError> {
        let full = self.full(path);
        match fs::symlink_metadata(&full) {
            Ok(meta) => {
                let t = meta.file_type();
                Ok(Some(if t.is_dir() {
                    Kind::Dir
                } else if t.is_symlink() {
                    Kind::Symlink
                } else if t.is_file() {
                    Kind::File
                } else {
                    Kind::Other
                }))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(write_error(&full, e)),
        }
    }

    fn remove(&mut self, path: &Path) -> Result<(), LayerError> {
        let full = self.full(path);
        let result = match self.kind(path)? {
            None => Ok(()),
            // remove_dir_all does not follow symlinks inside the tree.
            Some(Kind::Dir) => fs::remove_dir_all(&full),
            Some(_) => fs::remove_file(&full),
        };
        result.map_err(|e| write_error(&full, e))
    }

    fn clear_dir(&mut self, path: &Path) -> Result<(), LayerError> {
        let full = self.full(path);
        let children = fs::read_dir(&full).map_err(|e| write_error(&full, e))?;
        for child in children {
            let child = child.map_err(|e| write_error(&full, e))?;
            self.remove(&path.join(child.file_name()))?;
        }
        Ok(())
    }

    fn make_dir(&mut self, path: &Path, meta: &Meta) -> Result<(), LayerError> {
        let full = self.full(path);
        if self.kind(path)? != Some(Kind::Dir) {
            fs::create_dir(&full).map_err(|e| write_error(&full, e))?;
        }
        self.set_owner_and_xattrs(&full, meta)?;
        self.set_mode(&full, meta.mode)
    }

    fn write_file(
        &mut self,
        path: &Path,
        meta: &Meta,
        data: &mut dyn Read,
    ) -> Result<(), LayerError> {
        let full = self.full(path);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&full)
            .map_err(|e| write_error(&full, e))?;
        io::copy(data, &mut file).map_err(LayerError::Read)?;
        let mtime = UNIX_EPOCH + Duration::from_secs(meta.mtime);
        file.set_modified(mtime)
            .map_err(|e| write_error(&full, e))?;
        drop(file);
        // chown clears set-id bits, so the mode goes last.
        self.set_owner_and_xattrs(&full, meta)?;
        self.set_mode(&full, meta.mode)
    }

    fn symlink(&mut self, path: &Path, target: &Path, meta: &Meta) -> Result<(), LayerError> {
        let full = self.full(path);
        symlink(target, &full).map_err(|e| write_error(&full, e))?;
        self.set_owner_and_xattrs(&full, meta)
    }

    fn hard_link(&mut self, path: &Path, target: &Path) -> Result<(), LayerError> {
        let full = self.full(path);
        // linkat without AT_SYMLINK_FOLLOW: a symlink target is linked, not followed.
        fs::hard_link(self.full(target), &full).map_err(|e| write_error(&full, e))
    }
}
