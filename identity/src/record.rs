//! `identity.json` in a zone's state directory: what the identity authority decided for the
//! zone and why, for `zonectl identity`. Rewritten whole (atomically) at each decision.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use zone_attest::identity::policy::Facts;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Not decided yet: the zone is booting or being attested.
    Pending,
    /// The zone holds an X.509-SVID.
    Issued,
    /// The zone gets no identity; `reasons` say why.
    Refused,
}

/// The zone's current X.509-SVID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SvidRecord {
    pub serial: String,
    /// Seconds since the Unix epoch.
    pub not_before: u64,
    pub not_after: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityRecord {
    pub decision: Decision,
    /// Seconds since the Unix epoch.
    pub decided_at: u64,
    pub policy_file: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spiffe_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub svid: Option<SvidRecord>,
    /// X.509-SVIDs issued to the zone so far (each after fresh evidence); 2 or more means
    /// it has been rotated.
    #[serde(default)]
    pub svids_issued: u32,
    /// What the zone's evidence proved, when it verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<Facts>,
    /// The checks the evidence passed, or why the zone has no identity.
    #[serde(default)]
    pub reasons: Vec<String>,
}

impl IdentityRecord {
    pub fn pending(policy_file: &Path) -> Self {
        Self {
            decision: Decision::Pending,
            decided_at: unix_now(),
            policy_file: policy_file.to_path_buf(),
            trust_domain: None,
            path_template: None,
            spiffe_id: None,
            svid: None,
            svids_issued: 0,
            facts: None,
            reasons: Vec::new(),
        }
    }

    /// Reads `path`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Writes `path` atomically: readers see the old or the new record whole.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let temp = path.with_extension(format!("json.{}", std::process::id()));
        let write = || -> io::Result<()> {
            let mut file = fs::File::create(&temp)?;
            serde_json::to_writer_pretty(&mut file, self).map_err(io::Error::from)?;
            file.write_all(b"\n")?;
            fs::rename(&temp, path)
        };
        write().with_context(|| format!("writing {}", path.display()))
    }
}

/// Seconds since the Unix epoch of `time` (0 before it).
pub fn unix(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    unix(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_record_round_trips_through_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("identity.json");
        let mut record = IdentityRecord::pending(Path::new("/etc/zones/p.json"));
        record.decision = Decision::Refused;
        record.reasons = vec!["kernel sha256:00 is not trusted".into()];
        record.save(&path).expect("save");
        assert_eq!(IdentityRecord::load(&path).expect("load"), record);
        let text = fs::read_to_string(&path).expect("read");
        assert!(text.contains("\"decision\": \"refused\""), "{text}");
        assert_eq!(
            fs::read_dir(dir.path()).expect("ls").count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn test_record_file_that_is_not_a_record_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("identity.json");
        fs::write(&path, b"{\"decision\": \"maybe\"}").expect("write");
        let e = IdentityRecord::load(&path).expect_err("unknown decision");
        assert!(format!("{e:#}").contains("identity.json"), "{e:#}");
        assert!(IdentityRecord::load(&dir.path().join("absent.json")).is_err());
    }
}
