//! The store's layout and queries. Under the root:
//!
//! - `blobs/sha256/<hex>`: manifests, configs and layers, named by the sha256 of their content
//!   (the OCI image layout's blob scheme);
//! - `refs.json`: image names to manifest digests ([`crate::refs`]);
//! - `tmp/`: staging directories of imports in progress, moved into `blobs/` once verified.
//!
//! Cached root filesystems live beside the store, in `<root>/../rootfs/<manifest-hex>.ext4`.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::digest::Digest;
use crate::refs::{Refs, RefsError};
use crate::spec::{Descriptor, ImageConfig, Manifest, RuntimeConfig};

/// Where the store lives unless told otherwise.
pub const DEFAULT_STORE_ROOT: &str = "/var/lib/zones/images";

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the store directory {path}")]
    Create {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Refs(#[from] RefsError),
    #[error("no image named {0:?} (see `zonectl image ls`)")]
    NotFound(String),
    #[error("{prefix:?} matches several images: {matches}; give more digits or the name")]
    Ambiguous { prefix: String, matches: String },
    #[error("blob {digest} is missing or unreadable; re-import the image")]
    ReadBlob {
        digest: Digest,
        #[source]
        source: io::Error,
    },
    #[error("blob {digest} is not valid JSON of the expected kind")]
    ParseBlob {
        digest: Digest,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot delete {path}")]
    Delete {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// A content-addressed OCI image store rooted at a directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// An image name and the manifest it points to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageRef {
    pub name: String,
    pub digest: Digest,
}

/// One line of `image ls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageSummary {
    pub name: String,
    pub digest: Digest,
    /// Manifest, config and (compressed) layers, in bytes.
    pub size: u64,
    pub created: Option<String>,
}

/// What `image inspect` shows.
#[derive(Debug, Clone, Serialize)]
pub struct ImageDetails {
    pub names: Vec<String>,
    pub digest: Digest,
    pub size: u64,
    pub created: Option<String>,
    pub architecture: String,
    pub os: String,
    pub config: RuntimeConfig,
    pub layers: Vec<Descriptor>,
    pub manifest: Manifest,
}

impl Store {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let store = Store {
            root: root.to_path_buf(),
        };
        for dir in [store.blob_dir(), store.tmp_dir()] {
            fs::create_dir_all(&dir).map_err(|source| StoreError::Create {
                path: dir.display().to_string(),
                source,
            })?;
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `blobs/sha256`.
    pub fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    /// Where the blob with this digest is (or would be) stored.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blob_dir().join(digest.hex())
    }

    /// Whether no import is staged (for tests and health checks).
    pub fn tmp_is_empty(&self) -> bool {
        fs::read_dir(self.tmp_dir()).is_ok_and(|mut d| d.next().is_none())
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub(crate) fn refs_path(&self) -> PathBuf {
        self.root.join("refs.json")
    }

    /// The directory cached root filesystems go to: `rootfs` beside the store's root.
    pub fn rootfs_dir(&self) -> PathBuf {
        match self.root.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.join("rootfs"),
            _ => self.root.join("rootfs"),
        }
    }

    pub(crate) fn refs(&self) -> Result<Refs, StoreError> {
        Ok(Refs::load(&self.refs_path())?)
    }

    fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        fs::read(self.blob_path(digest)).map_err(|source| StoreError::ReadBlob {
            digest: digest.clone(),
            source,
        })
    }

    fn read_json<T: serde::de::DeserializeOwned>(&self, digest: &Digest) -> Result<T, StoreError> {
        serde_json::from_slice(&self.read_blob(digest)?).map_err(|source| StoreError::ParseBlob {
            digest: digest.clone(),
            source,
        })
    }

    /// The manifest stored under `digest`.
    pub fn manifest(&self, digest: &Digest) -> Result<Manifest, StoreError> {
        self.read_json(digest)
    }

    /// The config a manifest points to.
    pub fn config(&self, manifest: &Manifest) -> Result<ImageConfig, StoreError> {
        self.read_json(&manifest.config.digest)
    }

    /// Finds an image by name (`busybox` means `busybox:latest` too) or by a prefix of its
    /// manifest digest (with or without `sha256:`).
    pub fn resolve(&self, name_or_digest: &str) -> Result<ImageRef, StoreError> {
        let refs = self.refs()?;
        let found = |name: &str| {
            refs.refs.get(name).map(|digest| ImageRef {
                name: name.to_string(),
                digest: digest.clone(),
            })
        };
        if let Some(image) = found(name_or_digest) {
            return Ok(image);
        }
        if !name_or_digest.contains(':') {
            if let Some(image) = found(&format!("{name_or_digest}:latest")) {
                return Ok(image);
            }
        }
        let prefix = name_or_digest
            .strip_prefix("sha256:")
            .unwrap_or(name_or_digest);
        let is_hex = !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_hexdigit());
        if !is_hex {
            return Err(StoreError::NotFound(name_or_digest.to_string()));
        }
        let digests: BTreeSet<&Digest> = refs
            .refs
            .values()
            .filter(|d| d.hex().starts_with(prefix))
            .collect();
        let mut digests = digests.into_iter();
        match (digests.next(), digests.next()) {
            (Some(digest), None) => {
                let name = refs
                    .refs
                    .iter()
                    .find(|(_, d)| *d == digest)
                    .map(|(n, _)| n.clone())
                    .unwrap_or_default();
                Ok(ImageRef {
                    name,
                    digest: digest.clone(),
                })
            }
            (None, _) => Err(StoreError::NotFound(name_or_digest.to_string())),
            (Some(first), Some(second)) => Err(StoreError::Ambiguous {
                prefix: name_or_digest.to_string(),
                matches: format!("{}, {}, ...", first.short(), second.short()),
            }),
        }
    }

    /// Every named image, sorted by name.
    pub fn list(&self) -> Result<Vec<ImageSummary>, StoreError> {
        let refs = self.refs()?;
        let mut out = Vec::new();
        for (name, digest) in &refs.refs {
            let manifest = self.manifest(digest)?;
            let config = self.config(&manifest)?;
            out.push(ImageSummary {
                name: name.clone(),
                digest: digest.clone(),
                size: self.image_size(digest, &manifest)?,
                created: config.created,
            });
        }
        Ok(out)
    }

    fn image_size(&self, digest: &Digest, manifest: &Manifest) -> Result<u64, StoreError> {
        let manifest_size = fs::metadata(self.blob_path(digest))
            .map_err(|source| StoreError::ReadBlob {
                digest: digest.clone(),
                source,
            })?
            .len();
        let layers: u64 = manifest.layers.iter().map(|l| l.size).sum();
        Ok(manifest_size + manifest.config.size + layers)
    }

    /// Manifest, config and layers of an image.
    pub fn inspect(&self, name_or_digest: &str) -> Result<ImageDetails, StoreError> {
        let image = self.resolve(name_or_digest)?;
        let manifest = self.manifest(&image.digest)?;
        let config = self.config(&manifest)?;
        let names = self
            .refs()?
            .refs
            .into_iter()
            .filter(|(_, d)| *d == image.digest)
            .map(|(n, _)| n)
            .collect();
        Ok(ImageDetails {
            names,
            size: self.image_size(&image.digest, &manifest)?,
            digest: image.digest,
            created: config.created,
            architecture: config.architecture,
            os: config.os,
            config: config.config,
            layers: manifest.layers.clone(),
            manifest,
        })
    }

    /// Removes the name, then deletes the blobs (and cached root filesystems) no remaining
    /// name needs. Returns how many blobs were deleted.
    pub fn remove(&self, name: &str) -> Result<usize, StoreError> {
        let image = self.resolve(name)?;
        let mut refs = self.refs()?;
        refs.refs.remove(&image.name);
        refs.save(&self.refs_path())?;
        tracing::info!(name = %image.name, digest = %image.digest, "removed image name");
        self.collect_garbage(&refs)
    }

    fn collect_garbage(&self, refs: &Refs) -> Result<usize, StoreError> {
        let mut live = BTreeSet::new();
        for digest in refs.refs.values() {
            let manifest = self.manifest(digest)?;
            live.insert(digest.hex().to_string());
            live.insert(manifest.config.digest.hex().to_string());
            live.extend(manifest.layers.iter().map(|l| l.digest.hex().to_string()));
        }
        let dir = self.blob_dir();
        let delete_err = |path: &Path, source| StoreError::Delete {
            path: path.display().to_string(),
            source,
        };
        let mut deleted = 0;
        for entry in fs::read_dir(&dir).map_err(|e| delete_err(&dir, e))? {
            let entry = entry.map_err(|e| delete_err(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if live.contains(&name) {
                continue;
            }
            fs::remove_file(entry.path()).map_err(|e| delete_err(&entry.path(), e))?;
            deleted += 1;
            let rootfs = self.rootfs_dir().join(format!("{name}.ext4"));
            match fs::remove_file(&rootfs) {
                Ok(()) => tracing::info!(path = %rootfs.display(), "deleted cached rootfs"),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(delete_err(&rootfs, e)),
            }
        }
        tracing::info!(deleted, "collected unreferenced blobs");
        Ok(deleted)
    }
}
