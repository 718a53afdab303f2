//! Tier 3: workload identity in the KVM testbed. A container in a zone runs `spiffe-probe`
//! (the real `spiffe` crate's Workload API client) against the agent's endpoint:
//! - the good zone gets an X.509-SVID whose URI SAN is the ID the policy's template makes
//!   from verified facts (the zone's name and its image's manifest digest), which `openssl
//!   verify` chains to the bundle here on the host, and a JWT-SVID that the crate validates
//!   against the JWT bundle; the SVID is rotated before it expires while the probe keeps
//!   running, and `zonectl identity` says what was issued and why;
//! - a zone booted with a kernel the policy does not trust gets no SVID, and its workload
//!   is told why.

use std::fs;
use std::process::Command;

use base64::Engine as _;
use zone_tests::{assert_nothing_left, testbed_run, value, TestbedOutput, REPORT_LEFTOVERS};

const SCRIPT: &str = r#"
status() { zonectl ps -a | grep "^$1 " | sed 's/.*   //'; }
# Polls (up to 150 s) until zone $1 has exited.
await_exit() {
  i=0
  while ! status "$1" | grep '^exited' >/dev/null && [ $i -lt 300 ]; do sleep 0.5; i=$((i+1)); done
}
zonectl image import /zones/images/spiffe-probe >/dev/null || echo import-failed
digest=$(grep -o '"digest": *"sha256:[0-9a-f]*"' /zones/images/spiffe-probe/index.json | head -1 |
  grep -o '[0-9a-f]\{64\}')
echo "image-digest=$digest"
kernel=$(sha256sum "$ZONES_KERNEL" | cut -d' ' -f1)
initrd=$(sha256sum "$ZONES_INITRD" | cut -d' ' -f1)
cat >/tmp/policy.json <<EOF
{"format": "zones-identity-policy/v1", "trust_domain": "zones.test",
 "path_template": "/zone/{zone_name}/image/{image_digest}",
 "x509_svid_ttl_seconds": 40, "jwt_svid_ttl_seconds": 120,
 "trusted_kernels": ["sha256:$kernel"], "trusted_initrds": ["sha256:$initrd"]}
EOF
export ZONES_IDENTITY_POLICY=/tmp/policy.json ZONES_IDENTITY_DIR=/tmp/identity

good=$(zonectl run -d --name good zones.local/spiffe-probe:1 sh -c \
  'spiffe-probe x509 && spiffe-probe jwt db.zones.test && spiffe-probe watch --rotations 1 --timeout 100')
cp "$ZONES_KERNEL" /tmp/other-kernel && echo x >>/tmp/other-kernel
bad=$(zonectl run -d --name bad --kernel /tmp/other-kernel zones.local/spiffe-probe:1 \
  spiffe-probe x509)
await_exit "$bad"
echo "bad-status=$(status "$bad")"
zonectl logs bad 2>&1 | sed 's/^/bad: /'
zonectl identity bad | sed 's/^/bad-identity: /'
await_exit "$good"
echo "good-status=$(status "$good")"
zonectl logs good 2>&1 | sed 's/^/good: /'
zonectl identity good | sed 's/^/good-identity: /'
echo "bundle-file=$(grep -c 'BEGIN CERTIFICATE' /tmp/identity/zones.test/bundle.pem)"
zonectl identity nosuchzone 2>/dev/null; echo "unknown-rc=$?"
zonectl rm good bad >/dev/null
sleep 1
"#;

/// The `prefix` lines of the zone's output (`zonectl logs`, prefixed by the script).
fn lines<'a>(out: &'a TestbedOutput, prefix: &str) -> Vec<&'a str> {
    out.stdout
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .collect()
}

/// The value of `key=` among `lines`.
fn field<'a>(lines: &[&'a str], key: &str) -> Option<&'a str> {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

fn pem(der_b64: &str) -> String {
    let der = base64::engine::general_purpose::STANDARD
        .decode(der_b64)
        .expect("the probe prints base64 DER");
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let wrapped: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        wrapped.join("\n")
    )
}

/// `openssl verify` of the SVID chain against the bundle, here on the host.
fn openssl_verify(good: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = |key: &str| -> String {
        good.iter()
            .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(pem)
            .collect()
    };
    let (svid, bundle) = (certs("svid-cert"), certs("bundle-cert"));
    assert!(!svid.is_empty() && !bundle.is_empty(), "{good:#?}");
    fs::write(dir.path().join("svid.pem"), svid).expect("write");
    fs::write(dir.path().join("bundle.pem"), bundle).expect("write");
    let out = Command::new("openssl")
        .args([
            "verify",
            "-purpose",
            "sslclient",
            "-CAfile",
            "bundle.pem",
            "svid.pem",
        ])
        .current_dir(dir.path())
        .output()
        .expect("openssl is missing; hack/setup installs it");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn test_zone_identity_svids_from_verified_evidence_rotated_and_refused_for_untrusted_kernel() {
    let out = testbed_run(&format!("{SCRIPT}{REPORT_LEFTOVERS}"), &[]);
    let digest = value(&out, "image-digest");
    assert_eq!(digest.len(), 64, "{out:#?}");
    let expected = format!("spiffe://zones.test/zone/good/image/{digest}");

    // The good zone: X.509-SVID, JWT-SVID, rotation.
    assert_eq!(value(&out, "good-status"), "exited (0)", "{out:#?}");
    let good = lines(&out, "good: ");
    assert_eq!(
        field(&good, "spiffe-id"),
        Some(expected.as_str()),
        "{out:#?}"
    );
    assert_eq!(field(&good, "key-matches-leaf"), Some("yes"), "{out:#?}");
    let verified = openssl_verify(&good);
    assert!(
        verified.trim_end().ends_with("svid.pem: OK"),
        "{verified}\n{out:#?}"
    );
    assert_eq!(
        field(&good, "jwt-spiffe-id"),
        Some(expected.as_str()),
        "{out:#?}"
    );
    assert_eq!(
        field(&good, "jwt-audience"),
        Some("db.zones.test"),
        "{out:#?}"
    );
    assert_eq!(field(&good, "jwt-valid"), Some("yes"), "{out:#?}");
    assert_eq!(
        field(&good, "rotated-before-expiry"),
        Some("yes"),
        "{out:#?}"
    );
    assert_eq!(field(&good, "rotations"), Some("1"), "{out:#?}");
    let identity = lines(&out, "good-identity: ");
    let said = |label: &str| {
        identity
            .iter()
            .find_map(|l| l.strip_prefix(label))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {label} line\n{out:#?}"))
    };
    assert_eq!(said("decision:"), "issued", "{out:#?}");
    assert_eq!(said("spiffe id:"), expected, "{out:#?}");
    let issued: u32 = said("svids issued:")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of SVIDs issued\n{out:#?}"));
    assert!(issued >= 2, "rotated at least once\n{out:#?}");
    assert!(
        said("why:").starts_with("the zone's evidence verified"),
        "{out:#?}"
    );
    assert_eq!(value(&out, "bundle-file"), "1", "{out:#?}");

    // The zone with another kernel: no SVID, and the workload is told why.
    assert_eq!(value(&out, "bad-status"), "exited (1)", "{out:#?}");
    let bad = lines(&out, "bad: ");
    assert!(field(&bad, "spiffe-id").is_none(), "{out:#?}");
    let error = bad
        .iter()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("the workload got no error\n{out:#?}"));
    assert!(
        error.contains("no SPIFFE identity") && error.contains("trusted_kernels"),
        "{error}\n{out:#?}"
    );
    let bad_identity = lines(&out, "bad-identity: ");
    assert!(bad_identity.contains(&"decision:     refused"), "{out:#?}");
    assert!(
        bad_identity
            .iter()
            .any(|l| l.starts_with("why not:") && l.contains("kernel sha256:")),
        "{out:#?}"
    );
    assert_eq!(value(&out, "unknown-rc"), "125", "{out:#?}");
    assert_nothing_left(&out);
}
