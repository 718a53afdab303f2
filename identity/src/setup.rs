//! What the authority needs before it can attest a zone: the policy, its keys, the zone CA,
//! the zone's EK as the VMM read it, and the reference values and manifest of the boot the
//! VMM measured (from the event log it wrote). Each failure is a reason the zone's workloads
//! are told, so each names what is missing.

use std::fs;
use std::io;
use std::sync::Arc;

use zone_attest::eventlog::EventLog;
use zone_attest::evidence::ZoneManifest;
use zone_attest::identity::authority::IdentityAuthority;
use zone_attest::identity::policy::IdentityPolicy;
use zone_attest::protocol::{self, Enrollment};
use zone_attest::reference::ReferenceValues;
use zone_attest::tpm_types::TpmPublic;
use zone_attest::verify::Verifier;
use zone_attest::zone_ca::{CaSigner, ZoneCa};

use crate::config::AuthorityConfig;
use crate::driver::{ZoneFacts, ZoneFiles};
use crate::host_tpm;
use crate::remote_attester::RemoteAttester;

/// Largest event log the VMM writes is a few KiB; anything near this is not ours.
const MAX_EVENT_LOG: u64 = 1 << 20;

/// Ready to enroll the zone's TPM.
pub struct Setup {
    pub policy: IdentityPolicy,
    pub authority: Arc<IdentityAuthority>,
    ca: ZoneCa<Box<dyn CaSigner>>,
    ek: TpmPublic,
    verifier: Verifier,
    manifest: ZoneManifest,
}

/// Enrolled: ready for attestation rounds.
#[derive(Debug)]
pub struct Enrolled {
    pub policy: IdentityPolicy,
    pub authority: Arc<IdentityAuthority>,
    pub verifier: Verifier,
    pub manifest: ZoneManifest,
    pub enrollment: Enrollment,
}

impl Setup {
    pub fn open(
        config: &AuthorityConfig,
        facts: &ZoneFacts,
        files: &ZoneFiles,
    ) -> Result<Self, String> {
        let policy = load_policy(config)?;
        if !facts.tpm {
            return Err("the zone has no vTPM, so nothing can vouch for it".into());
        }
        let dir = &config.identity_dir;
        let authority = IdentityAuthority::open_or_create(dir, &policy.trust_domain())
            .map_err(|e| format!("the identity authority in {}: {e}", dir.display()))?;
        let host_id = crate::host_id::host_id().map_err(|e| format!("{e:#}"))?;
        let spec = host_tpm::choose_default(config.host_tpm.clone());
        let ca = host_tpm::open_signer(&spec, &config.ca_dir)
            .and_then(|signer| host_tpm::open_zone_ca(&config.ca_dir, &host_id, signer))
            .map_err(|e| format!("the zone CA ({spec}): {e:#}"))?;
        let ek = fs::read(&files.ek_public)
            .map_err(|e| e.to_string())
            .and_then(|bytes| TpmPublic::from_tpm2b(&bytes).map_err(|e| e.to_string()))
            .map_err(|e| {
                format!(
                    "the EK the VMM read from the zone's vTPM ({}): {e}",
                    files.ek_public.display()
                )
            })?;
        let log = read_event_log(files)?;
        let manifest =
            ZoneManifest::from_event_log(&facts.zone_id, &host_id, &log).ok_or_else(|| {
                format!(
                    "the VMM's event log {} lacks the VMM version or the kernel",
                    files.event_log.display()
                )
            })?;
        Ok(Self {
            policy,
            authority: Arc::new(authority),
            verifier: Verifier::new(
                vec![ca.cert_der().to_vec()],
                ReferenceValues::from_event_log(&log),
            ),
            ca,
            ek,
            manifest,
        })
    }

    /// Certifies the zone's EK and, after credential activation, its AK.
    pub fn enroll(
        self,
        zone_id: &str,
        attester: &mut RemoteAttester<'_>,
    ) -> Result<Enrolled, String> {
        let enrollment = protocol::enroll_with_ek(&self.ca, attester, zone_id, &self.ek)
            .map_err(|e| format!("enrolling the zone's vTPM with the zone CA: {}", chain(&e)))?;
        Ok(Enrolled {
            policy: self.policy,
            authority: self.authority,
            verifier: self.verifier,
            manifest: self.manifest,
            enrollment,
        })
    }
}

fn load_policy(config: &AuthorityConfig) -> Result<IdentityPolicy, String> {
    let path = &config.policy;
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(format!(
                "this host has no identity policy: {} does not exist (`zonectl identity --help` \
                 shows how to write one)",
                path.display()
            ))
        }
        Err(e) => {
            return Err(format!(
                "reading the identity policy {}: {e}",
                path.display()
            ))
        }
    };
    IdentityPolicy::from_json(&bytes)
        .map_err(|e| format!("the identity policy {} is invalid: {e}", path.display()))
}

fn read_event_log(files: &ZoneFiles) -> Result<EventLog, String> {
    let path = &files.event_log;
    let what = |e: String| format!("the VMM's event log {}: {e}", path.display());
    let size = fs::metadata(path).map_err(|e| what(e.to_string()))?.len();
    if size > MAX_EVENT_LOG {
        return Err(what(format!(
            "{size} bytes is too large for a zone's boot log"
        )));
    }
    let bytes = fs::read(path).map_err(|e| what(e.to_string()))?;
    EventLog::parse(&bytes).map_err(|e| what(e.to_string()))
}

/// An error with its sources, one line.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(policy: &Path) -> AuthorityConfig {
        AuthorityConfig {
            policy: policy.to_path_buf(),
            identity_dir: "/nonexistent".into(),
            ca_dir: "/nonexistent".into(),
            host_tpm: None,
        }
    }

    fn files(event_log: &Path) -> ZoneFiles {
        ZoneFiles {
            ek_public: "/nonexistent".into(),
            event_log: event_log.to_path_buf(),
            record: "/nonexistent".into(),
        }
    }

    #[test]
    fn test_policy_missing_or_invalid_is_a_reason_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("policy.json");
        let e = load_policy(&config(&path)).expect_err("missing");
        assert!(
            e.contains("no identity policy") && e.contains("policy.json"),
            "{e}"
        );
        fs::write(&path, b"{\"format\": \"zones-identity-policy/v1\"").expect("write");
        let e = load_policy(&config(&path)).expect_err("truncated JSON");
        assert!(e.contains("is invalid"), "{e}");
        fs::write(
            &path,
            br#"{"format":"zones-identity-policy/v1","trust_domain":"Bad.Domain",
                "path_template":"/zone/{zone_id}","trusted_kernels":["sha256:00"]}"#,
        )
        .expect("write");
        let e = load_policy(&config(&path)).expect_err("bad fields");
        assert!(
            e.contains("is invalid") && e.contains("trust_domain"),
            "{e}"
        );
    }

    #[test]
    fn test_event_log_missing_garbage_or_huge_is_a_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tpm-eventlog.bin");
        let e = read_event_log(&files(&path)).expect_err("missing");
        assert!(e.contains("the VMM's event log"), "{e}");
        fs::write(&path, b"not a TCG log").expect("write");
        assert!(read_event_log(&files(&path)).is_err());
        let huge = fs::File::create(&path).expect("create");
        huge.set_len(MAX_EVENT_LOG + 1).expect("sparse");
        let e = read_event_log(&files(&path)).expect_err("huge");
        assert!(e.contains("too large"), "{e}");
    }
}
