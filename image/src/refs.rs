//! `refs.json`: the store's names, each pointing to a manifest digest. Written whole to a
//! temporary file and renamed into place, so readers see the old or the new file, never half.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// Why the names could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RefsError {
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path} is corrupt")]
    Parse {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// Names to manifest digests.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Refs {
    pub refs: BTreeMap<String, Digest>,
}

impl Refs {
    /// Reads `path`; a missing file is an empty set of names.
    pub fn load(path: &Path) -> Result<Refs, RefsError> {
        let text = match fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Refs::default()),
            Err(source) => {
                return Err(RefsError::Read {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        serde_json::from_slice(&text).map_err(|source| RefsError::Parse {
            path: path.display().to_string(),
            source,
        })
    }

    /// Writes `path` atomically (temporary file in the same directory, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<(), RefsError> {
        let write_err = |source| RefsError::Write {
            path: path.display().to_string(),
            source,
        };
        let tmp = path.with_extension(format!("json.tmp-{}", std::process::id()));
        let mut text = serde_json::to_vec_pretty(self).map_err(|e| write_err(e.into()))?;
        text.push(b'\n');
        let result = (|| {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(&text)?;
            file.sync_all()?;
            fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(write_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_refs_save_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("refs.json");
        let mut refs = Refs::load(&path).unwrap();
        refs.refs
            .insert("a:latest".into(), Digest::of_bytes(b"manifest"));

        refs.save(&path).unwrap();

        let loaded = Refs::load(&path).unwrap();
        assert_eq!(loaded.refs, refs.refs);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
