//! Reading an OCI image layout (OCI image spec, "OCI Image Layout Specification"): `oci-layout`,
//! `index.json` and `blobs/<alg>/<hex>`. A multi-platform index is narrowed to its linux/amd64
//! manifest; only that manifest, its config and its layers are stored.

use std::io::Read;

use super::source::Source;
use super::staging::Staging;
use super::{parse_json, ImportError, Staged};
use crate::digest::Digest;
use crate::media;
use crate::spec::{
    Descriptor, ImageConfig, Index, Manifest, ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME,
};

pub(super) fn stage(
    source: &dyn Source,
    staging: &Staging,
    name: Option<&str>,
) -> Result<Staged, ImportError> {
    let index: Index = parse_json(&source.read_all("index.json", "index.json")?, "index.json")?;
    let top = select(&index.manifests, name)?;
    let names = names_of(top);
    let mut desc = top.clone();
    if media::is_index(&desc.media_type) {
        fetch(source, staging, &desc, "image index")?;
        let bytes =
            std::fs::read(staging.blob(&desc.digest)).map_err(|source| ImportError::Open {
                path: desc.digest.to_string(),
                source,
            })?;
        let nested: Index = parse_json(&bytes, "the image index")?;
        desc = select_platform(&nested.manifests)?.clone();
    }
    if !media::is_manifest(&desc.media_type) {
        return Err(ImportError::UnknownMediaType {
            what: "the image manifest".into(),
            media_type: desc.media_type.clone(),
        });
    }
    let manifest_bytes = fetch(source, staging, &desc, "image manifest")?;
    let manifest: Manifest = parse_json(&manifest_bytes, "the image manifest")?;
    let layers = check_media_types(&manifest)?;
    let config_bytes = fetch(source, staging, &manifest.config, "image config")?;
    let _: ImageConfig = parse_json(&config_bytes, "the image config")?;
    for layer in &manifest.layers {
        fetch_to_staging(source, staging, layer, "layer")?;
    }
    Ok(Staged {
        manifest: desc.digest,
        layers,
        names,
    })
}

/// Checks the config and layer media types; returns the layers with their compression.
pub(super) fn check_media_types(
    manifest: &Manifest,
) -> Result<Vec<(Digest, media::Compression)>, ImportError> {
    if !media::is_config(&manifest.config.media_type) {
        return Err(ImportError::UnknownMediaType {
            what: "the image config".into(),
            media_type: manifest.config.media_type.clone(),
        });
    }
    manifest
        .layers
        .iter()
        .map(|layer| match media::layer_compression(&layer.media_type) {
            Some(compression) => Ok((layer.digest.clone(), compression)),
            None => Err(ImportError::UnknownMediaType {
                what: format!("layer {}", layer.digest),
                media_type: layer.media_type.clone(),
            }),
        })
        .collect()
}

/// The top-level entry to import.
fn select<'a>(
    entries: &'a [Descriptor],
    name: Option<&str>,
) -> Result<&'a Descriptor, ImportError> {
    match entries {
        [] => Err(ImportError::Missing {
            what: "an image".into(),
            path: "index.json manifests".into(),
        }),
        [only] => Ok(only),
        _ if entries.iter().any(|d| d.platform.is_some()) => select_platform(entries),
        _ => {
            if let Some(name) = name {
                if let Some(found) = entries
                    .iter()
                    .find(|d| names_of(d).iter().any(|n| n == name))
                {
                    return Ok(found);
                }
            }
            Err(ImportError::SeveralImages {
                names: entries
                    .iter()
                    .map(|d| names_of(d).join("|"))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    }
}

/// The linux/amd64 manifest of a multi-platform index.
fn select_platform(entries: &[Descriptor]) -> Result<&Descriptor, ImportError> {
    entries
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
        })
        .ok_or_else(|| ImportError::NoPlatform {
            available: entries
                .iter()
                .map(|d| match &d.platform {
                    Some(p) => format!("{}/{}", p.os, p.architecture),
                    None => "unspecified".into(),
                })
                .collect::<Vec<_>>()
                .join(", "),
        })
}

fn names_of(desc: &Descriptor) -> Vec<String> {
    [ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME]
        .iter()
        .find_map(|key| desc.annotations.get(*key))
        .cloned()
        .into_iter()
        .collect()
}

/// Stages a blob after checking its size and digest; returns its bytes (for small documents).
fn fetch(
    source: &dyn Source,
    staging: &Staging,
    desc: &Descriptor,
    what: &str,
) -> Result<Vec<u8>, ImportError> {
    fetch_to_staging(source, staging, desc, what)?;
    std::fs::read(staging.blob(&desc.digest)).map_err(|source| ImportError::Open {
        path: desc.digest.to_string(),
        source,
    })
}

fn fetch_to_staging(
    source: &dyn Source,
    staging: &Staging,
    desc: &Descriptor,
    what: &str,
) -> Result<(), ImportError> {
    let name = format!("blobs/sha256/{}", desc.digest.hex());
    let what_full = format!("{what} {}", desc.digest);
    let reader = source.open(&name, &what_full)?;
    // Never read (much) more than the descriptor promises.
    let mut limited = reader.take(desc.size.saturating_add(1));
    let (digest, size) = staging.put(&mut limited)?;
    if size != desc.size {
        return Err(ImportError::SizeMismatch {
            what: what.to_string(),
            digest: desc.digest.clone(),
            expected: desc.size,
            actual: size,
        });
    }
    if digest != desc.digest {
        return Err(ImportError::DigestMismatch {
            what: format!("{what} blob"),
            expected: desc.digest.clone(),
            actual: digest,
        });
    }
    Ok(())
}
