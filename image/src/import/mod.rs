//! Importing images into the store from an OCI image layout directory, an OCI archive (a tar of
//! such a layout) or a `docker save` archive.
//!
//! Everything lands first in a staging directory under the store's `tmp/`: every blob is
//! copied there while its sha256 and size are checked against its descriptor, the layers are
//! checked against the layer rules ([`crate::layer`], in memory), and only then are the blobs
//! renamed into `blobs/sha256/` and the name written to `refs.json`. Any failure before that
//! deletes the staging directory, so a bad image leaves the store as it was.

mod docker;
mod oci;
mod source;
mod staging;

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use crate::digest::Digest;
use crate::layer::{self, memory::MemoryTree, LayerError};
use crate::media;
use crate::store::{ImageRef, Store, StoreError};
use source::{ArchiveSource, DirSource, Source};
use staging::Staging;

/// Why an import failed. The store is unchanged after any of these.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}")]
    Open {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{0} is neither an OCI image layout (oci-layout, index.json) nor a docker-save archive (manifest.json)")]
    NotAnImage(String),
    #[error("cannot read the archive")]
    Archive(#[source] io::Error),
    #[error("the archive is truncated (entry {entry:?} ends early); re-create or re-copy it")]
    Truncated { entry: String },
    #[error("the archive is truncated or corrupt after member {after:?}; re-create or re-copy it")]
    ArchiveEntry {
        after: String,
        #[source]
        source: io::Error,
    },
    #[error("the image lacks {what} ({path})")]
    Missing { what: String, path: String },
    #[error("{what} does not match its digest: expected {expected}, content hashes to {actual}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("{what} {digest} has {actual} bytes, its descriptor says {expected}")]
    SizeMismatch {
        what: String,
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("unsupported media type {media_type:?} for {what}")]
    UnknownMediaType { what: String, media_type: String },
    #[error("{what} is not valid JSON of the expected shape")]
    Parse {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("the image index has no linux/amd64 image (it has: {available})")]
    NoPlatform { available: String },
    #[error("the image holds several images ({names}); pass --name to choose one")]
    SeveralImages { names: String },
    #[error("the image carries no name; pass --name")]
    NoName,
    #[error("{0:?} is not a valid image name (letters, digits and ._-/:@ only)")]
    BadName(String),
    #[error("the config lists {diff_ids} layer diff_ids for {layers} layers")]
    LayerCount { diff_ids: usize, layers: usize },
    #[error("layer {digest} is rejected")]
    Layer {
        digest: Digest,
        #[source]
        source: LayerError,
    },
    #[error("cannot write the staging directory {path}")]
    Staging {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot move the verified blobs into the store")]
    Commit(#[source] io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An image read from the input and staged, ready to commit.
#[derive(Debug)]
struct Staged {
    manifest: Digest,
    /// Layer blobs in order with their compression.
    layers: Vec<(Digest, media::Compression)>,
    /// Names the input carries.
    names: Vec<String>,
}

impl Store {
    /// Imports the image at `path` (OCI layout dir, OCI archive or docker-save archive) under
    /// `name`, or under the name the image carries.
    pub fn import(&self, path: &Path, name: Option<&str>) -> Result<ImageRef, ImportError> {
        if let Some(name) = name {
            check_name(name)?;
        }
        let staging = Staging::new(&self.tmp_dir())?;
        let staged = if path.is_dir() {
            let source = DirSource::new(path);
            if !source.exists("oci-layout") {
                return Err(ImportError::NotAnImage(path.display().to_string()));
            }
            oci::stage(&source, &staging, name)?
        } else {
            let source = ArchiveSource::extract(path, &staging)?;
            if source.exists("oci-layout") && source.exists("index.json") {
                oci::stage(&source, &staging, name)?
            } else if source.exists("manifest.json") {
                docker::stage(&source, &staging, name)?
            } else {
                return Err(ImportError::NotAnImage(path.display().to_string()));
            }
        };
        check_layers(&staging, &staged)?;
        let name = match name {
            Some(name) => name.to_string(),
            None => pick_name(&staged.names)?,
        };
        check_name(&name)?;
        staging.commit(self)?;
        let mut refs = self.refs()?;
        refs.refs.insert(name.clone(), staged.manifest.clone());
        refs.save(&self.refs_path()).map_err(StoreError::from)?;
        tracing::info!(%name, digest = %staged.manifest, "imported image");
        Ok(ImageRef {
            name,
            digest: staged.manifest,
        })
    }
}

/// Runs the whole layer stack through the layer rules, in memory.
fn check_layers(staging: &Staging, staged: &Staged) -> Result<(), ImportError> {
    let mut tree = MemoryTree::new();
    for (digest, compression) in &staged.layers {
        let path = staging.blob(digest);
        let result = layer::apply(&mut tree, || {
            layer::decompress(BufReader::new(File::open(&path)?), *compression)
        });
        result.map_err(|source| ImportError::Layer {
            digest: digest.clone(),
            source,
        })?;
    }
    Ok(())
}

fn pick_name(names: &[String]) -> Result<String, ImportError> {
    match names {
        [] => Err(ImportError::NoName),
        [name] => Ok(name.clone()),
        _ => Err(ImportError::SeveralImages {
            names: names.join(", "),
        }),
    }
}

fn check_name(name: &str) -> Result<(), ImportError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/:@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ImportError::BadName(name.to_string()))
    }
}

/// Parses a JSON document read from the input.
fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ImportError> {
    serde_json::from_slice(bytes).map_err(|source| ImportError::Parse {
        what: what.to_string(),
        source,
    })
}

/// The compression a staged file's first bytes show.
fn sniff_file(path: &Path) -> Result<media::Compression, ImportError> {
    let file = File::open(path).map_err(|source| ImportError::Open {
        path: path.display().to_string(),
        source,
    })?;
    let mut reader = BufReader::new(file);
    let head = reader.fill_buf().map_err(|source| ImportError::Open {
        path: path.display().to_string(),
        source,
    })?;
    Ok(media::sniff_compression(head))
}

/// Removes a path if it exists (cleanup; failures are logged).
fn remove_quietly(path: &Path) {
    let result = if path.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    if let Err(e) = result {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "cannot clean up");
        }
    }
}
