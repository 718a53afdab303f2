//! Where an import reads files from: a directory, or a tar archive unpacked into the staging
//! directory. Archive members are stored under numbered names and looked up by their
//! (normalised) member name, so a hostile member name never becomes a path on disk.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use tar::EntryType;

use super::staging::Staging;
use super::ImportError;
use crate::layer::{decompress, relative_path};
use crate::media::sniff_compression;

/// Files of an image by their name in the layout (`index.json`, `blobs/sha256/<hex>`, ...).
pub(super) trait Source {
    fn exists(&self, name: &str) -> bool;
    /// Opens a member; `what` names it in the error if it is missing.
    fn open(&self, name: &str, what: &str) -> Result<Box<dyn Read + '_>, ImportError>;

    fn read_all(&self, name: &str, what: &str) -> Result<Vec<u8>, ImportError> {
        let mut bytes = Vec::new();
        self.open(name, what)?
            .read_to_end(&mut bytes)
            .map_err(|source| ImportError::Open {
                path: name.to_string(),
                source,
            })?;
        Ok(bytes)
    }
}

fn missing(name: &str, what: &str) -> ImportError {
    ImportError::Missing {
        what: what.to_string(),
        path: name.to_string(),
    }
}

/// An OCI image layout directory. Names come from our code or are digests, never `..`.
#[derive(Debug)]
pub(super) struct DirSource {
    root: PathBuf,
}

impl DirSource {
    pub(super) fn new(root: &Path) -> Self {
        DirSource {
            root: root.to_path_buf(),
        }
    }
}

impl Source for DirSource {
    fn exists(&self, name: &str) -> bool {
        self.root.join(name).is_file()
    }

    fn open(&self, name: &str, what: &str) -> Result<Box<dyn Read + '_>, ImportError> {
        let path = self.root.join(name);
        match File::open(&path) {
            Ok(file) => Ok(Box::new(BufReader::new(file))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(missing(name, what)),
            Err(source) => Err(ImportError::Open {
                path: path.display().to_string(),
                source,
            }),
        }
    }
}

/// A tar archive (optionally gzip or zstd compressed), unpacked into staging.
#[derive(Debug)]
pub(super) struct ArchiveSource {
    files: HashMap<String, PathBuf>,
    links: HashMap<String, String>,
}

impl ArchiveSource {
    pub(super) fn extract(path: &Path, staging: &Staging) -> Result<ArchiveSource, ImportError> {
        let open_err = |source| ImportError::Open {
            path: path.display().to_string(),
            source,
        };
        let mut reader = BufReader::new(File::open(path).map_err(open_err)?);
        let compression = sniff_compression(reader.fill_buf().map_err(open_err)?);
        let stream = decompress(reader, compression).map_err(ImportError::Archive)?;
        let mut archive = tar::Archive::new(stream);
        let mut source = ArchiveSource {
            files: HashMap::new(),
            links: HashMap::new(),
        };
        let mut last = String::from("(start)");
        for (n, entry) in archive.entries().map_err(ImportError::Archive)?.enumerate() {
            let mut entry = entry.map_err(|source| ImportError::ArchiveEntry {
                after: last.clone(),
                source,
            })?;
            let raw = entry.path_bytes().into_owned();
            last = String::from_utf8_lossy(&raw).into_owned();
            let Some(name) = normalise(&raw) else {
                tracing::warn!(entry = %String::from_utf8_lossy(&raw), "ignoring archive member outside the archive");
                continue;
            };
            match entry.header().entry_type() {
                EntryType::Regular | EntryType::Continuous => {
                    let (mut file, stored) = staging.input_file(n)?;
                    let copied = io::copy(&mut entry, &mut file).map_err(|source| {
                        ImportError::ArchiveEntry {
                            after: name.clone(),
                            source,
                        }
                    })?;
                    if copied != entry.size() {
                        return Err(ImportError::Truncated { entry: name });
                    }
                    source.files.insert(name, stored);
                }
                // docker save links repeated layers to the first copy.
                EntryType::Symlink | EntryType::Link => {
                    let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                    let base = match entry.header().entry_type() {
                        EntryType::Symlink => Path::new(&name)
                            .parent()
                            .map(|p| p.join(Path::new(&*String::from_utf8_lossy(&target))))
                            .unwrap_or_default(),
                        _ => PathBuf::from(&*String::from_utf8_lossy(&target)),
                    };
                    if let Some(target) = normalise_lexically(&base) {
                        source.links.insert(name, target);
                    }
                }
                _ => {}
            }
        }
        Ok(source)
    }

    fn resolve(&self, name: &str) -> Option<&PathBuf> {
        let mut name = name.to_string();
        for _ in 0..8 {
            if let Some(path) = self.files.get(&name) {
                return Some(path);
            }
            name = self.links.get(&name)?.clone();
        }
        None
    }
}

impl Source for ArchiveSource {
    fn exists(&self, name: &str) -> bool {
        self.resolve(name).is_some()
    }

    fn open(&self, name: &str, what: &str) -> Result<Box<dyn Read + '_>, ImportError> {
        let path = self.resolve(name).ok_or_else(|| missing(name, what))?;
        let file = File::open(path).map_err(|source| ImportError::Open {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Box::new(BufReader::new(file)))
    }
}

/// `./a//b` → `a/b`; `None` for absolute names or names with `..`.
pub(super) fn normalise(raw: &[u8]) -> Option<String> {
    let path = relative_path(raw).ok()?;
    Some(path.to_string_lossy().into_owned())
}

/// Resolves `..` lexically (for link targets inside the archive); `None` if it climbs out.
fn normalise_lexically(path: &Path) -> Option<String> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for part in path.components() {
        match part {
            std::path::Component::Normal(p) => parts.push(p),
            std::path::Component::ParentDir => {
                parts.pop()?;
            }
            std::path::Component::CurDir => {}
            _ => return None,
        }
    }
    let joined: PathBuf = parts.iter().collect();
    Some(joined.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_normalise_member_names_cleaned() {
        assert_eq!(normalise(b"./index.json").as_deref(), Some("index.json"));
        assert_eq!(normalise(b"../x"), None);
        assert_eq!(
            normalise_lexically(Path::new("abc/../def/layer.tar")).as_deref(),
            Some("def/layer.tar")
        );
        assert_eq!(normalise_lexically(Path::new("../x")), None);
    }
}
