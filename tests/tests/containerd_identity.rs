//! Tier 3: workload identity for pods. A pod run through containerd's CRI plugin with the
//! `zone` handler gets a vTPM, the shim runs this host's identity authority for it, and a
//! process in the pod's container (`spiffe-probe`, the `spiffe` crate's client) gets an
//! X.509-SVID and a JWT-SVID whose SPIFFE ID the policy's template made from the pod's
//! namespace and name, as CRI gave them to the shim.

use zone_tests::containerd::{
    assert_nothing_left, run_with_containerd, ContainerdScript, IMPORT_CRI_IMAGES,
};
use zone_tests::value;

const SETTINGS: &str = r#"
export ZONES_SANDBOX_IMAGE=zones.local/pause:1
L=/tmp/pod-logs
kernel=$(sha256sum "$ZONES_KERNEL" | cut -d' ' -f1)
initrd=$(sha256sum "$ZONES_INITRD" | cut -d' ' -f1)
cat >/tmp/policy.json <<EOF
{"format": "zones-identity-policy/v1", "trust_domain": "pods.test",
 "path_template": "/ns/{pod_namespace}/pod/{zone_name}",
 "trusted_kernels": ["sha256:$kernel"], "trusted_initrds": ["sha256:$initrd"]}
EOF
export ZONES_IDENTITY_POLICY=/tmp/policy.json ZONES_IDENTITY_DIR=/tmp/identity
"#;

const SCRIPT: &str = r#"
tar -C /zones/images/spiffe-probe -cf /tmp/probe.tar .
ctr -n k8s.io images import /tmp/probe.tar >/tmp/import.out 2>&1 ||
  { echo "import-failed=spiffe-probe"; cat /tmp/import.out; }
p=$(cri-client run-pod --handler zone --log-dir $L web); echo "pod-rc=$?"
c=$(cri-client create --pod "$p" --pod-name web --log-dir $L --image zones.local/spiffe-probe:1 \
  probe -- sleep 1000) && cri-client start "$c"; echo "container-rc=$?"
cri-client exec-sync "$c" -- spiffe-probe --wait 60 x509 2>&1 | grep -v '^svid-cert=\|^bundle-cert=' |
  sed 's/^/x509: /'
cri-client exec-sync "$c" -- spiffe-probe jwt pods.test/db 2>&1 | grep -v '^jwt-token=' |
  sed 's/^/jwt: /'
echo "vtpm-swtpm=$(ps -o args | grep -c '[s]wtpm')"
echo "record=$(cat /run/zones/*/identity.json | grep -o '"decision": "[a-z]*"')"
cri-client stop-pod "$p" || echo "stop-pod-failed"
cri-client rm-pod "$p" || echo "rm-pod-failed"
"#;

#[test]
fn test_cri_pod_in_a_zone_gets_an_svid_named_by_its_namespace_and_name() {
    let out = run_with_containerd(
        &ContainerdScript {
            settings: SETTINGS,
            needs: "cri-client",
            script: &format!("{IMPORT_CRI_IMAGES}{SCRIPT}"),
        },
        900,
    );
    assert!(!out.stdout.contains("import-failed"), "{out:#?}");
    assert_eq!(value(&out, "pod-rc"), "0", "{out:#?}");
    assert_eq!(value(&out, "container-rc"), "0", "{out:#?}");
    let expected = "spiffe://pods.test/ns/default/pod/web";
    assert_eq!(value(&out, "x509: spiffe-id"), expected, "{out:#?}");
    assert_eq!(value(&out, "x509: key-matches-leaf"), "yes", "{out:#?}");
    assert_eq!(value(&out, "jwt: jwt-spiffe-id"), expected, "{out:#?}");
    assert_eq!(value(&out, "jwt: jwt-valid"), "yes", "{out:#?}");
    assert_eq!(
        value(&out, "vtpm-swtpm"),
        "1",
        "the pod's zone has a vTPM\n{out:#?}"
    );
    assert_eq!(
        value(&out, "record"),
        "\"decision\": \"issued\"",
        "{out:#?}"
    );
    assert!(!out.stdout.contains("stop-pod-failed"), "{out:#?}");
    assert!(!out.stdout.contains("rm-pod-failed"), "{out:#?}");
    assert_nothing_left(&out);
}
