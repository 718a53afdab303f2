//! A staging directory under the store's `tmp/`: verified blobs wait here until the whole
//! image checks out. Dropping it deletes it.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{remove_quietly, ImportError};
use crate::digest::{Digest, HashingWriter};
use crate::store::Store;

static NEXT: AtomicU64 = AtomicU64::new(0);

#[derive(Debug)]
pub(super) struct Staging {
    dir: PathBuf,
}

impl Staging {
    pub(super) fn new(tmp: &Path) -> Result<Staging, ImportError> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = tmp.join(format!("import-{}-{n}", std::process::id()));
        let staging = Staging { dir };
        for sub in ["blobs", "input"] {
            let path = staging.dir.join(sub);
            fs::create_dir_all(&path).map_err(|source| ImportError::Staging {
                path: path.display().to_string(),
                source,
            })?;
        }
        Ok(staging)
    }

    /// A fresh file for an archive member.
    pub(super) fn input_file(&self, n: usize) -> Result<(File, PathBuf), ImportError> {
        let path = self.dir.join("input").join(n.to_string());
        let file = File::create(&path).map_err(|source| self.error(&path, source))?;
        Ok((file, path))
    }

    fn error(&self, path: &Path, source: io::Error) -> ImportError {
        ImportError::Staging {
            path: path.display().to_string(),
            source,
        }
    }

    /// Where a staged blob is.
    pub(super) fn blob(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs").join(digest.hex())
    }

    /// Copies `reader` into a staged blob, returning its digest and size.
    pub(super) fn put(&self, reader: &mut dyn Read) -> Result<(Digest, u64), ImportError> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join(format!("blob-{n}.tmp"));
        let file = File::create(&tmp).map_err(|source| self.error(&tmp, source))?;
        let mut writer = HashingWriter::new(file);
        io::copy(reader, &mut writer).map_err(|source| self.error(&tmp, source))?;
        let (digest, size) = writer.finish();
        let path = self.blob(&digest);
        fs::rename(&tmp, &path).map_err(|source| self.error(&path, source))?;
        Ok((digest, size))
    }

    /// Stages bytes produced here (a converted manifest).
    pub(super) fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, ImportError> {
        Ok(self.put(&mut &bytes[..])?.0)
    }

    /// Moves every staged blob into the store (skipping those it already has).
    pub(super) fn commit(&self, store: &Store) -> Result<(), ImportError> {
        let staged = self.dir.join("blobs");
        let entries = fs::read_dir(&staged).map_err(ImportError::Commit)?;
        for entry in entries {
            let entry = entry.map_err(ImportError::Commit)?;
            let target = store.blob_dir().join(entry.file_name());
            if target.exists() {
                continue;
            }
            let file = File::open(entry.path()).map_err(ImportError::Commit)?;
            file.sync_all().map_err(ImportError::Commit)?;
            fs::rename(entry.path(), &target).map_err(ImportError::Commit)?;
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        remove_quietly(&self.dir);
    }
}
