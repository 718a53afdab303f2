//! Reading a `docker save` archive: `manifest.json` lists, per image, its config file, its
//! `RepoTags` and its layer tars. Docker's config is a superset of the OCI image config; the
//! layers are checked against the config's `rootfs.diff_ids` (the digests of the uncompressed
//! layers), and an OCI manifest is written for them.

use std::fs::File;
use std::io::BufReader;

use serde::Deserialize;

use super::source::Source;
use super::staging::Staging;
use super::{parse_json, sniff_file, ImportError, Staged};
use crate::digest::{digest_reader, Digest};
use crate::layer::decompress;
use crate::media::{self, Compression};
use crate::spec::{Descriptor, ImageConfig, Manifest};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

pub(super) fn stage(
    source: &dyn Source,
    staging: &Staging,
    name: Option<&str>,
) -> Result<Staged, ImportError> {
    let entries: Vec<Entry> = parse_json(
        &source.read_all("manifest.json", "manifest.json")?,
        "manifest.json",
    )?;
    let entry = select(&entries, name)?;
    let names = entry.repo_tags.clone().unwrap_or_default();

    let config_name = super::source::normalise(entry.config.as_bytes()).unwrap_or_default();
    let (config_digest, config_size) =
        staging.put(&mut source.open(&config_name, "the image config")?)?;
    check_named_digest(&config_name, &config_digest, "the image config")?;
    let config_bytes =
        std::fs::read(staging.blob(&config_digest)).map_err(|e| ImportError::Open {
            path: config_name.clone(),
            source: e,
        })?;
    let config: ImageConfig = parse_json(&config_bytes, "the image config")?;
    if config.rootfs.diff_ids.len() != entry.layers.len() {
        return Err(ImportError::LayerCount {
            diff_ids: config.rootfs.diff_ids.len(),
            layers: entry.layers.len(),
        });
    }

    let mut layers = Vec::new();
    let mut descriptors = Vec::new();
    for (layer_name, diff_id) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
        let layer_name = super::source::normalise(layer_name.as_bytes()).unwrap_or_default();
        let what = format!("layer {layer_name}");
        let (digest, size) = staging.put(&mut source.open(&layer_name, &what)?)?;
        check_named_digest(&layer_name, &digest, &what)?;
        let path = staging.blob(&digest);
        let compression = sniff_file(&path)?;
        let uncompressed = if compression == Compression::None {
            digest.clone()
        } else {
            let file = File::open(&path).map_err(|e| ImportError::Open {
                path: layer_name.clone(),
                source: e,
            })?;
            let mut stream =
                decompress(BufReader::new(file), compression).map_err(ImportError::Archive)?;
            digest_reader(&mut stream).map_err(ImportError::Archive)?.0
        };
        if &uncompressed != diff_id {
            return Err(ImportError::DigestMismatch {
                what: format!("{what} (against the config's diff_ids)"),
                expected: diff_id.clone(),
                actual: uncompressed,
            });
        }
        layers.push((digest.clone(), compression));
        descriptors.push(descriptor(media::oci_layer_type(compression), digest, size));
    }

    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        config: descriptor(media::OCI_CONFIG, config_digest, config_size),
        layers: descriptors,
        annotations: Default::default(),
    };
    let bytes = serde_json::to_vec(&manifest).map_err(|source| ImportError::Parse {
        what: "the converted manifest".into(),
        source,
    })?;
    let manifest_digest = staging.put_bytes(&bytes)?;
    Ok(Staged {
        manifest: manifest_digest,
        layers,
        names,
    })
}

fn descriptor(media_type: &str, digest: Digest, size: u64) -> Descriptor {
    Descriptor {
        media_type: media_type.into(),
        digest,
        size,
        platform: None,
        annotations: Default::default(),
    }
}

fn select<'a>(entries: &'a [Entry], name: Option<&str>) -> Result<&'a Entry, ImportError> {
    match (entries, name) {
        ([], _) => Err(ImportError::Missing {
            what: "an image".into(),
            path: "manifest.json".into(),
        }),
        ([only], _) => Ok(only),
        (_, Some(name)) if entries.iter().any(|e| tags(e).contains(&name)) => entries
            .iter()
            .find(|e| tags(e).contains(&name))
            .ok_or(ImportError::NoName),
        _ => Err(ImportError::SeveralImages {
            names: entries
                .iter()
                .map(|e| tags(e).join("|"))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

fn tags(entry: &Entry) -> Vec<&str> {
    entry
        .repo_tags
        .iter()
        .flatten()
        .map(String::as_str)
        .collect()
}

/// Docker names configs `<hex>.json` (or `blobs/sha256/<hex>`): when it does, the name must
/// match the content.
fn check_named_digest(name: &str, actual: &Digest, what: &str) -> Result<(), ImportError> {
    let file = name.rsplit('/').next().unwrap_or(name);
    let hex = file.strip_suffix(".json").unwrap_or(file);
    let named_blob = name.starts_with("blobs/sha256/") || file.ends_with(".json");
    if named_blob && Digest::is_hex(hex) && hex != actual.hex() {
        let expected = format!("sha256:{hex}")
            .parse()
            .map_err(|_| ImportError::NoName)?;
        return Err(ImportError::DigestMismatch {
            what: what.to_string(),
            expected,
            actual: actual.clone(),
        });
    }
    Ok(())
}
