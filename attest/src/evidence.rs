//! The evidence bundle: one self-describing JSON document that carries everything a verifier
//! needs besides its own trust anchors (zone CA certificates), reference values and the nonce
//! it chose. Binary fields are standard base64 (with padding); PCR values and digests are hex.
//!
//! ```json
//! {
//!   "format": "zones-evidence/v1",
//!   "nonce": "<b64: the verifier's nonce, also TPM2_Quote's qualifyingData>",
//!   "quote": { "attest": "<b64 TPMS_ATTEST>", "signature": "<b64 TPMT_SIGNATURE>" },
//!   "pcrs": { "sha256": { "0": "<64 hex>", "1": "...", "15": "..." } },
//!   "event_log": "<b64 TCG crypto-agile event log>",
//!   "ak_public": "<b64 TPM2B_PUBLIC>",
//!   "ek_cert": "<b64 DER>", "ak_cert": "<b64 DER>", "zone_ca_cert": "<b64 DER>",
//!   "manifest": { "zone_id": "...", "host_id": "...", "vmm_version": "zone-vmm 0.1.0",
//!                 "kernel_digest": "sha256:<hex>", "initrd_digest": "sha256:<hex>" | null,
//!                 "cmdline_digest": "sha256:<hex>", "image_manifest_digest": "sha256:<hex>" | "",
//!                 "oci_config_digest": "sha256:<hex>" | "" }
//! }
//! ```
//!
//! Nothing in the bundle is trusted as such: the quote is checked with the AK, the AK with its
//! certificate, the certificates with the verifier's CA, the PCR values with the quote, the log
//! with the PCR values, and the manifest with the log.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::eventlog::EventLog;
use crate::reference::{claim_of, component_of};

pub const FORMAT: &str = "zones-evidence/v1";
/// Largest bundle [`Evidence::from_json`] reads.
pub const MAX_EVIDENCE_JSON: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("evidence is {0} bytes, over the {MAX_EVIDENCE_JSON} limit")]
    TooLarge(usize),
    #[error("evidence JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Base64 (standard alphabet) for `Vec<u8>` fields.
pub mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuoteBlob {
    /// The `TPMS_ATTEST` bytes exactly as signed.
    #[serde(with = "b64")]
    pub attest: Vec<u8>,
    /// `TPMT_SIGNATURE`.
    #[serde(with = "b64")]
    pub signature: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PcrValues {
    /// SHA-256 bank: PCR index → 64 hex digits.
    pub sha256: BTreeMap<u32, String>,
}

/// What the host says about the zone. Not trusted: every field is compared with the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ZoneManifest {
    pub zone_id: String,
    pub host_id: String,
    pub vmm_version: String,
    pub kernel_digest: String,
    pub initrd_digest: Option<String>,
    pub cmdline_digest: String,
    /// Empty for a zone without an image (bare zone).
    pub image_manifest_digest: String,
    pub oci_config_digest: String,
}

impl ZoneManifest {
    /// The host's manifest of zone `zone_id`'s boot as `log` records it: the log the VMM
    /// wrote as it measured the zone. `None` when the log lacks the VMM version or the kernel.
    pub fn from_event_log(zone_id: &str, host_id: &str, log: &EventLog) -> Option<Self> {
        let mut vmm_version = None;
        let mut components = BTreeMap::new();
        let mut claims = BTreeMap::new();
        for e in &log.events {
            if let Some((k, v)) = claim_of(e) {
                claims.insert(k, v);
            } else if let Some(name) = component_of(e) {
                if name == "vmm-version" {
                    vmm_version = Some(String::from_utf8_lossy(&e.data).into_owned());
                }
                components.insert(name, sha256_uri(&e.digest));
            }
        }
        let claim = |k: &str| claims.get(k).cloned().unwrap_or_default();
        Some(Self {
            zone_id: zone_id.to_string(),
            host_id: host_id.to_string(),
            vmm_version: vmm_version?,
            kernel_digest: components.get("kernel")?.clone(),
            initrd_digest: components.get("initrd").cloned(),
            cmdline_digest: components.get("cmdline").cloned().unwrap_or_default(),
            image_manifest_digest: claim("image-manifest-digest"),
            oci_config_digest: claim("oci-config-digest"),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    pub format: String,
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    pub quote: QuoteBlob,
    pub pcrs: PcrValues,
    #[serde(with = "b64")]
    pub event_log: Vec<u8>,
    #[serde(with = "b64")]
    pub ak_public: Vec<u8>,
    #[serde(with = "b64")]
    pub ek_cert: Vec<u8>,
    #[serde(with = "b64")]
    pub ak_cert: Vec<u8>,
    #[serde(with = "b64")]
    pub zone_ca_cert: Vec<u8>,
    pub manifest: ZoneManifest,
}

impl Evidence {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("evidence always serializes")
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, EvidenceError> {
        if bytes.len() > MAX_EVIDENCE_JSON {
            return Err(EvidenceError::TooLarge(bytes.len()));
        }
        Ok(serde_json::from_slice(bytes)?)
    }
}

/// `sha256:<hex>` of a digest.
pub fn sha256_uri(digest: &[u8]) -> String {
    format!("sha256:{}", hex::encode(digest))
}

/// Standard base64, for callers printing binary fields.
pub fn to_b64(v: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Evidence {
        let mut pcrs = PcrValues::default();
        pcrs.sha256.insert(18, "ff".repeat(32));
        Evidence {
            format: FORMAT.into(),
            nonce: vec![1, 2, 3],
            quote: QuoteBlob {
                attest: vec![0xff, 0x54],
                signature: vec![0, 0x18],
            },
            pcrs,
            event_log: vec![9; 5],
            ak_public: vec![],
            ek_cert: vec![0x30],
            ak_cert: vec![0x30],
            zone_ca_cert: vec![0x30],
            manifest: ZoneManifest {
                zone_id: "z".into(),
                ..Default::default()
            },
        }
    }

    #[test]
    fn test_evidence_json_round_trip() {
        let e = sample();
        let json = e.to_json();
        assert!(json.contains("\"nonce\": \"AQID\""));
        assert!(json.contains("\"18\": \"ffff"));
        assert_eq!(Evidence::from_json(json.as_bytes()).expect("parses"), e);
    }

    #[test]
    fn test_evidence_unknown_field_and_bad_base64_are_refused() {
        let json = sample()
            .to_json()
            .replace("\"format\"", "\"extra\": 1, \"format\"");
        assert!(Evidence::from_json(json.as_bytes()).is_err());
        let json = sample().to_json().replace("AQID", "A!ID");
        assert!(Evidence::from_json(json.as_bytes()).is_err());
        assert!(matches!(
            Evidence::from_json(&vec![b' '; MAX_EVIDENCE_JSON + 1]),
            Err(EvidenceError::TooLarge(_))
        ));
    }
}
