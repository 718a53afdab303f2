//! Applying OCI layers (OCI image spec, "Image Layer Filesystem Changeset"): a layer is a tar
//! whose entries add or replace files, and whose whiteout entries (`.wh.<name>`) delete an entry
//! of the layers below or make a directory opaque (`.wh..wh..opq`).
//!
//! Layers are hostile. Every entry path is made relative and checked component by component:
//! absolute paths and `..` are refused, and no entry may be written, deleted or hard-linked
//! through a symlink or outside the root. The rules live here once; a [`Tree`] carries them
//! out, either on disk ([`disk::DiskTree`], building a root filesystem) or in memory
//! ([`memory::MemoryTree`], checking a layer stack at import time without writing anything).
//!
//! Each layer is read twice: the first pass applies its whiteouts to the layers below, the
//! second adds its entries, so whiteouts never hide entries of their own layer (as the spec
//! requires) whatever their order in the tar.

pub mod disk;
pub mod memory;

use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

use crate::media::Compression;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Why a layer could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("cannot read the layer tar")]
    Read(#[source] io::Error),
    #[error("layer entry {entry:?} is an absolute path")]
    AbsolutePath { entry: String },
    #[error("layer entry {entry:?} has a `..` component")]
    ParentComponent { entry: String },
    #[error("layer entry {entry:?} would be written through the symlink {symlink:?}")]
    ThroughSymlink { entry: String, symlink: String },
    #[error("layer entry {entry:?} has the non-directory {parent:?} as a parent")]
    NotADirectory { entry: String, parent: String },
    #[error("hard link {entry:?} points outside the root, to {target:?}")]
    HardLinkOutside { entry: String, target: String },
    #[error("hard link {entry:?} points to {target:?}, which is missing or a directory")]
    HardLinkTarget { entry: String, target: String },
    #[error("layer entry {entry:?} is truncated")]
    Truncated { entry: String },
    #[error("cannot write {path:?} into the root")]
    Write {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// What an existing entry of the tree is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    Other,
}

/// Owner, mode and extended attributes of an entry.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Meta {
    /// A directory a layer implies without listing it.
    fn implicit_dir() -> Meta {
        Meta {
            mode: 0o755,
            ..Meta::default()
        }
    }
}

/// A root the driver applies checked operations to. Paths are relative, free of `..`, and
/// every parent has been checked to be a real directory.
pub trait Tree {
    fn kind(&self, path: &Path) -> Result<Option<Kind>, LayerError>;
    /// Removes `path` and everything under it.
    fn remove(&mut self, path: &Path) -> Result<(), LayerError>;
    /// Removes everything under the directory `path`.
    fn clear_dir(&mut self, path: &Path) -> Result<(), LayerError>;
    /// Creates the directory, or updates the metadata of an existing one.
    fn make_dir(&mut self, path: &Path, meta: &Meta) -> Result<(), LayerError>;
    /// Creates a regular file at a free path; must read `data` to its end.
    fn write_file(
        &mut self,
        path: &Path,
        meta: &Meta,
        data: &mut dyn Read,
    ) -> Result<(), LayerError>;
    fn symlink(&mut self, path: &Path, target: &Path, meta: &Meta) -> Result<(), LayerError>;
    fn hard_link(&mut self, path: &Path, target: &Path) -> Result<(), LayerError>;
}

/// Opens a layer blob as an uncompressed tar stream.
pub fn decompress<'a>(
    blob: impl Read + 'a,
    compression: Compression,
) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match compression {
        Compression::None => Box::new(blob),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(blob)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(blob)?),
    })
}

/// Applies one layer to `tree`. `open` returns a fresh uncompressed stream of the layer each
/// time it is called (it is called twice).
pub fn apply<R: Read>(
    tree: &mut dyn Tree,
    mut open: impl FnMut() -> io::Result<R>,
) -> Result<(), LayerError> {
    apply_whiteouts(tree, open().map_err(LayerError::Read)?)?;
    apply_entries(tree, open().map_err(LayerError::Read)?)
}

fn apply_whiteouts(tree: &mut dyn Tree, stream: impl Read) -> Result<(), LayerError> {
    let mut archive = tar::Archive::new(stream);
    for entry in archive.entries().map_err(LayerError::Read)? {
        let entry = entry.map_err(LayerError::Read)?;
        let raw = entry.path_bytes();
        let path = relative_path(&raw)?;
        let Some(name) = path.file_name().and_then(OsStr::to_str) else {
            continue;
        };
        if !name.starts_with(WHITEOUT_PREFIX) {
            continue;
        }
        let entry_name = display(&raw);
        let parent = path.parent().unwrap_or(Path::new(""));
        if !existing_dir(tree, parent, &entry_name)? {
            continue;
        }
        if name == OPAQUE_MARKER {
            tree.clear_dir(parent)?;
        } else {
            let hidden = parent.join(&name[WHITEOUT_PREFIX.len()..]);
            if tree.kind(&hidden)?.is_some() {
                tree.remove(&hidden)?;
            }
        }
    }
    Ok(())
}

fn apply_entries(tree: &mut dyn Tree, stream: impl Read) -> Result<(), LayerError> {
    let mut archive = tar::Archive::new(stream);
    for entry in archive.entries().map_err(LayerError::Read)? {
        let mut entry = entry.map_err(LayerError::Read)?;
        let raw = entry.path_bytes().into_owned();
        let entry_name = display(&raw);
        let path = relative_path(&raw)?;
        let is_whiteout = path
            .file_name()
            .and_then(OsStr::to_str)
            .is_some_and(|n| n.starts_with(WHITEOUT_PREFIX));
        let kind = entry.header().entry_type();
        if is_whiteout || path.as_os_str().is_empty() || kind == EntryType::XGlobalHeader {
            continue;
        }
        make_parents(tree, &path, &entry_name)?;
        let meta = meta_of(&mut entry)?;
        let existing = tree.kind(&path)?;
        match kind {
            EntryType::Directory => {
                if existing.is_some_and(|k| k != Kind::Dir) {
                    tree.remove(&path)?;
                }
                tree.make_dir(&path, &meta)?;
            }
            EntryType::Regular | EntryType::Continuous => {
                if existing.is_some() {
                    tree.remove(&path)?;
                }
                let size = entry.size();
                let mut counted = CountingReader {
                    inner: &mut entry,
                    count: 0,
                };
                tree.write_file(&path, &meta, &mut counted)?;
                if counted.count != size {
                    return Err(LayerError::Truncated { entry: entry_name });
                }
            }
            EntryType::Symlink => {
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                if existing.is_some() {
                    tree.remove(&path)?;
                }
                tree.symlink(&path, Path::new(OsStr::from_bytes(&target)), &meta)?;
            }
            EntryType::Link => {
                let raw_target = entry.link_name_bytes().unwrap_or_default().into_owned();
                let target = hard_link_target(tree, &raw_target, &entry_name)?;
                if target == path {
                    continue;
                }
                if existing.is_some() {
                    tree.remove(&path)?;
                }
                tree.hard_link(&path, &target)?;
            }
            other => {
                tracing::warn!(entry = %entry_name, kind = ?other, "skipping special file in layer");
            }
        }
    }
    Ok(())
}

/// Checks that a hard link's target is a non-directory inside the root, reached without symlinks.
fn hard_link_target(
    tree: &mut dyn Tree,
    raw: &[u8],
    entry_name: &str,
) -> Result<PathBuf, LayerError> {
    let outside = || LayerError::HardLinkOutside {
        entry: entry_name.to_string(),
        target: display(raw),
    };
    let target = relative_path(raw).map_err(|_| outside())?;
    let parent = target.parent().unwrap_or(Path::new(""));
    let present = existing_dir(tree, parent, entry_name).map_err(|e| match e {
        LayerError::ThroughSymlink { .. } => outside(),
        other => other,
    })?;
    match tree.kind(&target)? {
        Some(Kind::File | Kind::Symlink | Kind::Other) if present => Ok(target),
        _ => Err(LayerError::HardLinkTarget {
            entry: entry_name.to_string(),
            target: display(raw),
        }),
    }
}

/// Whether every component of `dir` exists as a real directory; an error if one is a symlink or
/// a file.
fn existing_dir(tree: &mut dyn Tree, dir: &Path, entry: &str) -> Result<bool, LayerError> {
    let mut prefix = PathBuf::new();
    for part in dir.components() {
        prefix.push(part);
        match tree.kind(&prefix)? {
            None => return Ok(false),
            Some(Kind::Dir) => {}
            Some(kind) => return Err(parent_error(kind, entry, &prefix)),
        }
    }
    Ok(true)
}

/// Creates the missing parents of `path`; an error if one is a symlink or a file.
fn make_parents(tree: &mut dyn Tree, path: &Path, entry: &str) -> Result<(), LayerError> {
    let mut prefix = PathBuf::new();
    let parent = path.parent().unwrap_or(Path::new(""));
    for part in parent.components() {
        prefix.push(part);
        match tree.kind(&prefix)? {
            None => tree.make_dir(&prefix, &Meta::implicit_dir())?,
            Some(Kind::Dir) => {}
            Some(kind) => return Err(parent_error(kind, entry, &prefix)),
        }
    }
    Ok(())
}

fn parent_error(kind: Kind, entry: &str, prefix: &Path) -> LayerError {
    let parent = prefix.display().to_string();
    if kind == Kind::Symlink {
        LayerError::ThroughSymlink {
            entry: entry.to_string(),
            symlink: parent,
        }
    } else {
        LayerError::NotADirectory {
            entry: entry.to_string(),
            parent,
        }
    }
}

/// The entry's path made relative: `./` and `.` components dropped, absolute paths and `..`
/// refused.
pub fn relative_path(raw: &[u8]) -> Result<PathBuf, LayerError> {
    let mut out = PathBuf::new();
    for part in Path::new(OsStr::from_bytes(raw)).components() {
        match part {
            Component::Normal(name) => out.push(name),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(LayerError::AbsolutePath {
                    entry: display(raw),
                })
            }
            Component::ParentDir => {
                return Err(LayerError::ParentComponent {
                    entry: display(raw),
                })
            }
        }
    }
    Ok(out)
}

fn meta_of<R: Read>(entry: &mut tar::Entry<R>) -> Result<Meta, LayerError> {
    let header = entry.header();
    let mode = header.mode().map_err(LayerError::Read)? & 0o7777;
    let uid = header.uid().map_err(LayerError::Read)?;
    let gid = header.gid().map_err(LayerError::Read)?;
    let mtime = header.mtime().unwrap_or(0);
    let mut xattrs = Vec::new();
    if let Some(extensions) = entry.pax_extensions().map_err(LayerError::Read)? {
        for extension in extensions {
            let extension = extension.map_err(LayerError::Read)?;
            if let Some(name) = extension.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                xattrs.push((name.to_vec(), extension.value_bytes().to_vec()));
            }
        }
    }
    Ok(Meta {
        mode,
        uid,
        gid,
        mtime,
        xattrs,
    })
}

fn display(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

struct CountingReader<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_relative_path_dot_prefix_dropped() {
        assert_eq!(
            relative_path(b"./etc/passwd").unwrap(),
            Path::new("etc/passwd")
        );
        assert_eq!(relative_path(b"./").unwrap(), Path::new(""));
    }

    #[test]
    fn test_relative_path_escapes_rejected() {
        assert!(matches!(
            relative_path(b"/etc/x"),
            Err(LayerError::AbsolutePath { .. })
        ));
        assert!(matches!(
            relative_path(b"a/../../evil"),
            Err(LayerError::ParentComponent { .. })
        ));
    }
}
