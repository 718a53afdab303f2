//! `zonectl identity ZONE`: the SPIFFE identity this host's identity authority issued a zone,
//! or why it issued none, from the zone's `identity.json`.

use std::time::{Duration, UNIX_EPOCH};

use crate::cli::ZoneRef;
use crate::zone_dir::ZoneDir;
use crate::zone_state;
use zone_identity::record::{Decision, IdentityRecord};

/// Show the workload identity a zone was issued, and why (or why not).
#[derive(Debug, clap::Args)]
#[command(
    long_about = "Show the workload identity (SPIFFE ID and X.509-SVID) a zone was issued, \
and why, or why it was refused.\n\n\
Every zone's workloads reach the SPIFFE Workload API at $SPIFFE_ENDPOINT_SOCKET \
(unix:///run/spiffe/workload.sock). The zone's agent serves it; the SVIDs come from this host's \
identity authority, which zonectl (and the containerd shim, for pods) runs for the zone's \
lifetime. It issues an SVID only after the zone's vTPM evidence verifies (EK and AK certified \
by this host's zone CA, a quote over a fresh challenge bound to the SVID's key, the boot event \
log replaying to the quoted PCRs and matching the VMM's own log of the boot) and the \
registration policy admits the verified facts: the kernel and initrd are ones it trusts. It \
attests the zone again, with a new key, halfway through each SVID's life.\n\n\
The registration policy (--identity-policy of `zonectl run`, default \
/etc/zones/identity-policy.json) is JSON:\n\n  \
{\n    \"format\": \"zones-identity-policy/v1\",\n    \"trust_domain\": \"example.org\",\n    \
\"path_template\": \"/zone/{zone_name}\",\n    \"x509_svid_ttl_seconds\": 3600,\n    \
\"jwt_svid_ttl_seconds\": 300,\n    \"trusted_kernels\": [\"sha256:<hex>\"],\n    \
\"trusted_initrds\": [\"sha256:<hex>\"]\n  }\n\n\
Path template placeholders, each filled only from verified facts or this host's own records: \
{zone_id}, {zone_name}, {host_id}, {image_digest} (hex), {pod_namespace}, {service_account}. \
A placeholder with no value for a zone refuses it. `sha256sum` of the kernel and initrd files \
gives the digests to trust.",
    after_help = "Example:\n  zonectl run -d --name web zones.local/spiffe-probe:1 sleep 600\n  \
zonectl exec web spiffe-probe x509\n  zonectl identity web"
)]
pub struct IdentityArgs {
    #[command(flatten)]
    pub zone: ZoneRef,
    /// Print the record as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: IdentityArgs) -> anyhow::Result<()> {
    let state = zone_state::find(&args.zone.state_root, &args.zone.zone)?;
    let zone = ZoneDir::open(&args.zone.state_root, &state.id);
    let path = zone.identity_record();
    if !path.exists() {
        anyhow::bail!(
            "zone {} has no identity record: its agent has not come up yet, or an older \
             zonectl started it",
            state.id
        );
    }
    let record = IdentityRecord::load(&path)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&record)?);
        return Ok(());
    }
    print!("{}", describe(&state.id, state.name.as_deref(), &record));
    Ok(())
}

/// The record in words, one `label: value` per line.
pub fn describe(id: &str, name: Option<&str>, record: &IdentityRecord) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: &str| out.push_str(&format!("{label:<13} {value}\n"));
    line(
        "zone:",
        &name.map_or_else(|| id.to_string(), |n| format!("{n} ({id})")),
    );
    let decision = match record.decision {
        Decision::Pending => "pending (the zone is being attested)",
        Decision::Issued => "issued",
        Decision::Refused => "refused",
    };
    line("decision:", decision);
    line("decided at:", &timestamp(record.decided_at));
    if let Some(id) = &record.spiffe_id {
        line("spiffe id:", id);
    }
    if let Some(svid) = &record.svid {
        line(
            "x509-svid:",
            &format!(
                "serial {}, valid {} to {}",
                svid.serial,
                timestamp(svid.not_before),
                timestamp(svid.not_after)
            ),
        );
    }
    if record.svids_issued > 0 {
        line(
            "svids issued:",
            &format!(
                "{} ({} rotation{})",
                record.svids_issued,
                record.svids_issued - 1,
                if record.svids_issued == 2 { "" } else { "s" }
            ),
        );
    }
    let policy = match (&record.trust_domain, &record.path_template) {
        (Some(td), Some(template)) => format!(
            "{} (trust domain {td}, path template {template})",
            record.policy_file.display()
        ),
        _ => record.policy_file.display().to_string(),
    };
    line("policy:", &policy);
    if let Some(facts) = &record.facts {
        let mut known = vec![format!("zone_id={}", facts.zone_id)];
        if let Some(name) = &facts.zone_name {
            known.push(format!("zone_name={name}"));
        }
        known.push(format!("host_id={}", facts.host_id));
        known.push(format!("kernel={}", facts.kernel));
        if let Some(initrd) = &facts.initrd {
            known.push(format!("initrd={initrd}"));
        }
        if let Some(image) = &facts.image_digest {
            known.push(format!("image_digest={image}"));
        }
        if let Some(namespace) = &facts.pod_namespace {
            known.push(format!("pod_namespace={namespace}"));
        }
        if let Some(account) = &facts.service_account {
            known.push(format!("service_account={account}"));
        }
        line("facts:", &known.join("\n              "));
    }
    let label = if record.decision == Decision::Refused {
        "why not:"
    } else {
        "why:"
    };
    for (i, reason) in record.reasons.iter().enumerate() {
        line(if i == 0 { label } else { "" }, reason);
    }
    out
}

/// RFC 3339 UTC, to the second.
fn timestamp(unix: u64) -> String {
    let time = UNIX_EPOCH + Duration::from_secs(unix);
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let (h, m, s) = (secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let (y, mo, d) = civil_from_days(days as i64);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

/// Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use zone_identity::record::SvidRecord;

    #[test]
    fn test_timestamp_is_rfc3339_utc() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(timestamp(1_795_405_061), "2026-11-23T03:37:41Z");
        assert_eq!(timestamp(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn test_describe_issued_and_refused() {
        let mut record = IdentityRecord::pending(Path::new("/etc/zones/identity-policy.json"));
        record.decision = Decision::Issued;
        record.spiffe_id = Some("spiffe://zones.test/zone/web".into());
        record.trust_domain = Some("zones.test".into());
        record.path_template = Some("/zone/{zone_name}".into());
        record.svid = Some(SvidRecord {
            serial: "0a1b".into(),
            not_before: 0,
            not_after: 3600,
        });
        record.svids_issued = 2;
        record.facts = Some(zone_attest::identity::policy::Facts {
            zone_id: "1234".into(),
            zone_name: Some("web".into()),
            host_id: "host-a".into(),
            kernel: "sha256:00".into(),
            pod_namespace: Some("default".into()),
            ..Default::default()
        });
        record.reasons = vec!["the zone's evidence verified".into()];
        let text = describe("1234", Some("web"), &record);
        assert!(text.contains("zone:         web (1234)\n"), "{text}");
        assert!(
            text.contains("spiffe id:    spiffe://zones.test/zone/web\n"),
            "{text}"
        );
        assert!(
            text.contains("serial 0a1b, valid 1970-01-01T00:00:00Z to 1970-01-01T01:00:00Z"),
            "{text}"
        );
        assert!(text.contains("svids issued: 2 (1 rotation)"), "{text}");
        assert!(
            text.contains("facts:        zone_id=1234\n              zone_name=web\n"),
            "{text}"
        );
        assert!(
            text.contains("              pod_namespace=default\n"),
            "{text}"
        );
        assert!(
            text.contains("why:          the zone's evidence verified"),
            "{text}"
        );

        record.decision = Decision::Refused;
        record.spiffe_id = None;
        record.svid = None;
        record.reasons = vec!["kernel sha256:00 is not trusted".into(), "second".into()];
        let text = describe("1234", None, &record);
        assert!(text.contains("decision:     refused\n"), "{text}");
        assert!(
            text.contains("why not:      kernel sha256:00 is not trusted\n              second\n"),
            "{text}"
        );
        assert!(!text.contains("spiffe id:"), "{text}");
    }
}
