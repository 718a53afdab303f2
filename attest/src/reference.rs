//! Reference values: what a good zone's measurements are, as a JSON file, computed from the
//! measurement plan ([`crate::measurements::plan`]) by `zonectl reference` without booting.
//!
//! ```json
//! {
//!   "format": "zones-reference/v1",
//!   "pcrs": { "0": "<64 hex>", "1": "...", "2": "...", ..., "9": "..." },
//!   "components": { "vmm-version": "sha256:<hex>", "zone-config": "sha256:<hex>",
//!                   "kernel": "sha256:<hex>", "cmdline": "sha256:<hex>", "initrd": "sha256:<hex>" },
//!   "claims": { "image-manifest-digest": "sha256:<hex>", "oci-config-digest": "sha256:<hex>" }
//! }
//! ```
//!
//! `pcrs` are final values of PCRs 0-9 (every PCR the plan extends but 15, which holds the
//! zone id); `components` are the digests of the
//! named log events, so a mismatch can say *what* differs (another kernel, an edited command
//! line); `claims` are the values the VMM asserts in PCR 15. The zone id (also in PCR 15) is
//! not a reference value: the verifier compares it with the zone its certificates name.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::eventlog::{
    Event, EventLog, EV_EVENT_TAG, EV_IPL, EV_PLATFORM_CONFIG_FLAGS, EV_SEPARATOR,
    EV_S_CRTM_VERSION,
};
use crate::evidence::sha256_uri;
use crate::measurements::{
    self, BootInputs, PCR_CMDLINE, PCR_CRTM, PCR_INITRD, PCR_KERNEL, PCR_PLATFORM_CONFIG,
    PCR_ZONE_CLAIMS,
};

pub const FORMAT: &str = "zones-reference/v1";
/// Claims the reference may fix (the zone id is checked against the certificates instead).
pub const REFERENCE_CLAIMS: [&str; 2] = ["image-manifest-digest", "oci-config-digest"];

#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("reference JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("reference format {0:?} is not {FORMAT}")]
    Format(String),
    #[error("reference PCR {0}: not 64 hex digits")]
    PcrValue(u32),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ReferenceValues {
    pub format: String,
    pub pcrs: BTreeMap<u32, String>,
    pub components: BTreeMap<String, String>,
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
}

/// The component a log event measures, by the measurement plan's layout; `None` for events the
/// plan does not produce (which the verifier reports as unexpected).
pub fn component_of(event: &Event) -> Option<String> {
    let name = match (event.pcr, event.event_type) {
        (PCR_CRTM, EV_S_CRTM_VERSION) => "vmm-version".to_string(),
        (PCR_PLATFORM_CONFIG, EV_PLATFORM_CONFIG_FLAGS) => "zone-config".to_string(),
        (p, EV_SEPARATOR) if p <= 7 => format!("separator-{p}"),
        (PCR_KERNEL, EV_IPL) => "kernel".to_string(),
        (PCR_CMDLINE, EV_IPL) => "cmdline".to_string(),
        (PCR_INITRD, EV_EVENT_TAG) => "initrd".to_string(),
        (PCR_ZONE_CLAIMS, EV_IPL) => claim_of(event)?.0,
        _ => return None,
    };
    Some(name)
}

/// A PCR 15 claim event's `(key, value)`.
pub fn claim_of(event: &Event) -> Option<(String, String)> {
    if event.pcr != PCR_ZONE_CLAIMS || event.event_type != EV_IPL {
        return None;
    }
    let text = std::str::from_utf8(&event.data).ok()?;
    let (k, v) = text.split_once('=')?;
    measurements::CLAIM_KEYS
        .contains(&k)
        .then(|| (k.to_string(), v.to_string()))
}

impl ReferenceValues {
    /// The reference values of a boot with `inputs` (whose zone id is ignored).
    pub fn from_boot_inputs(inputs: &BootInputs<'_>) -> Self {
        let plan = measurements::plan(inputs);
        Self::from_event_log(&measurements::event_log(&plan))
    }

    /// The reference values of the boot `log` records: the log the VMM wrote as it measured
    /// the zone (the host's own record, never the one the guest reports).
    pub fn from_event_log(log: &EventLog) -> Self {
        let replay = log.replay();
        let mut r = ReferenceValues {
            format: FORMAT.to_string(),
            ..Default::default()
        };
        // Every PCR the plan extends except the zone claims' (which hold the zone id).
        for pcr in (0..=7).chain([PCR_CMDLINE, PCR_INITRD]) {
            r.pcrs.insert(pcr, hex::encode(replay[pcr as usize]));
        }
        for e in &log.events {
            if let Some((k, v)) = claim_of(e) {
                if REFERENCE_CLAIMS.contains(&k.as_str()) {
                    r.claims.insert(k, v);
                }
            } else if let Some(name) = component_of(e) {
                if !name.starts_with("separator-") {
                    r.components.insert(name, sha256_uri(&e.digest));
                }
            }
        }
        r
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("reference values always serialize")
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, ReferenceError> {
        let r: Self = serde_json::from_slice(bytes)?;
        if r.format != FORMAT {
            return Err(ReferenceError::Format(r.format));
        }
        for (pcr, v) in &r.pcrs {
            if v.len() != 64 || hex::decode(v).is_err() {
                return Err(ReferenceError::PcrValue(*pcr));
            }
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measurements::ZoneClaims;

    pub(crate) fn inputs_claims() -> ZoneClaims {
        ZoneClaims {
            zone_id: "zone-1".into(),
            image_manifest_digest: "sha256:aa".into(),
            oci_config_digest: "sha256:bb".into(),
        }
    }

    #[test]
    fn test_reference_from_plan_names_components_and_round_trips() {
        let claims = inputs_claims();
        let inputs = BootInputs {
            vmm_version: "zone-vmm 0.1.0",
            zone_config: b"cfg",
            kernel: b"kernel",
            cmdline: b"console=hvc0",
            initrd: Some(b"initrd"),
            claims: &claims,
        };
        let r = ReferenceValues::from_boot_inputs(&inputs);
        assert_eq!(
            r.components.get("kernel"),
            Some(&sha256_uri(&crate::eventlog::sha256(b"kernel")))
        );
        assert_eq!(
            r.claims.get("oci-config-digest").map(String::as_str),
            Some("sha256:bb")
        );
        assert!(!r.claims.contains_key("zone-id"));
        assert_eq!(r.pcrs.len(), 10);
        let back = ReferenceValues::from_json(r.to_json().as_bytes()).expect("parses");
        assert_eq!(back, r);
    }

    #[test]
    fn test_reference_bad_pcr_value_is_refused() {
        let json = br#"{"format":"zones-reference/v1","pcrs":{"4":"zz"},"components":{}}"#;
        assert!(matches!(
            ReferenceValues::from_json(json),
            Err(ReferenceError::PcrValue(4))
        ));
    }
}
