use std::collections::BTreeMap;

use super::*;
use crate::evidence::ZoneManifest;
use crate::verify::Verified;

const KERNEL: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const INITRD: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
const IMAGE_HEX: &str = "3333333333333333333333333333333333333333333333333333333333333333";

fn policy_json(template: &str) -> serde_json::Value {
    serde_json::json!({
        "format": POLICY_FORMAT,
        "trust_domain": "zones.test",
        "path_template": template,
        "x509_svid_ttl_seconds": 1800,
        "jwt_svid_ttl_seconds": 120,
        "trusted_kernels": [KERNEL],
        "trusted_initrds": [INITRD],
    })
}

fn policy(template: &str) -> IdentityPolicy {
    IdentityPolicy::from_json(policy_json(template).to_string().as_bytes()).expect("policy")
}

fn facts() -> Facts {
    Facts {
        zone_id: "z-0001".into(),
        zone_name: Some("web".into()),
        host_id: "host-a".into(),
        kernel: KERNEL.into(),
        initrd: Some(INITRD.into()),
        image_digest: Some(format!("sha256:{IMAGE_HEX}")),
        pod_namespace: Some("prod".into()),
        service_account: Some("api".into()),
    }
}

#[test]
fn test_policy_from_json_reads_fields_and_defaults() {
    let p = policy("/zone/{zone_name}");
    assert_eq!(p.trust_domain().as_str(), "zones.test");
    assert_eq!(p.x509_svid_ttl(), Duration::from_secs(1800));
    assert_eq!(p.jwt_svid_ttl(), Duration::from_secs(120));
    assert_eq!(
        IdentityPolicy::from_json(p.to_json().as_bytes()),
        Ok(p.clone())
    );
    assert!(p.to_json().contains("\n  \"trust_domain\": \"zones.test\""));
    let minimal = serde_json::json!({
        "format": POLICY_FORMAT,
        "trust_domain": "zones.test",
        "path_template": "/zone/{zone_id}",
        "trusted_kernels": [KERNEL],
    });
    let m = IdentityPolicy::from_json(minimal.to_string().as_bytes()).expect("minimal");
    assert_eq!(m.x509_svid_ttl_seconds, 3600);
    assert_eq!(m.jwt_svid_ttl_seconds, 300);
    assert!(m.trusted_initrds.is_empty());
}

#[test]
fn test_policy_from_json_names_the_bad_field() {
    let bad = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut v = policy_json("/zone/{zone_name}");
        edit(&mut v);
        IdentityPolicy::from_json(v.to_string().as_bytes()).expect_err("refused")
    };
    let field = |e: PolicyError| match e {
        PolicyError::Field { field, .. } => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        field(bad(&|v| v["format"] = "zones-identity-policy/v2".into())),
        "format"
    );
    assert_eq!(
        field(bad(&|v| v["trust_domain"] = "Zones.test".into())),
        "trust_domain"
    );
    assert_eq!(
        field(bad(&|v| v["trust_domain"] = "spiffe://zones.test".into())),
        "trust_domain"
    );
    for template in [
        "zone/{zone_name}",
        "/zone/{zone}",
        "/zone/{zone_name",
        "/zone/zone_name}",
        "/zone/{{zone_name}}",
        "/zone/",
        "/zone//{zone_id}",
        "/zone/../{zone_id}",
        "/zone:{zone_id}",
        "/zone/%2F{zone_id}",
        "",
    ] {
        let e = bad(&|v| v["path_template"] = template.into());
        assert_eq!(field(e.clone()), "path_template", "{template}: {e}");
    }
    let unknown = bad(&|v| v["path_template"] = "/{zone}".into());
    assert!(
        unknown.to_string().contains("unknown placeholder {zone}"),
        "{unknown}"
    );
    let ttl = bad(&|v| v["x509_svid_ttl_seconds"] = 604_801.into());
    assert_eq!(
        ttl.to_string(),
        "x509_svid_ttl_seconds: 604801 is outside 10..=604800 seconds"
    );
    assert_eq!(
        field(bad(&|v| v["x509_svid_ttl_seconds"] = 9.into())),
        "x509_svid_ttl_seconds"
    );
    assert_eq!(
        field(bad(&|v| v["jwt_svid_ttl_seconds"] = 86_401.into())),
        "jwt_svid_ttl_seconds"
    );
    assert_eq!(
        field(bad(&|v| v["jwt_svid_ttl_seconds"] = 0.into())),
        "jwt_svid_ttl_seconds"
    );
    assert_eq!(
        field(bad(&|v| v["trusted_kernels"] = serde_json::json!([]))),
        "trusted_kernels"
    );
    let upper = KERNEL.replace('1', "A");
    let k1 = bad(&|v| v["trusted_kernels"] = serde_json::json!([KERNEL, upper]));
    assert!(k1.to_string().starts_with("trusted_kernels[1]: "), "{k1}");
    let no_prefix = &KERNEL["sha256:".len()..];
    assert_eq!(
        field(bad(
            &|v| v["trusted_initrds"] = serde_json::json!([no_prefix])
        )),
        "trusted_initrds[0]"
    );
    let short = &KERNEL[..KERNEL.len() - 1];
    assert_eq!(
        field(bad(&|v| v["trusted_kernels"] = serde_json::json!([short]))),
        "trusted_kernels[0]"
    );
    let extra = bad(&|v| v["trusted_cmdlines"] = serde_json::json!([]));
    assert!(
        matches!(extra, PolicyError::Json(ref m) if m.contains("trusted_cmdlines")),
        "{extra}"
    );
    let missing = bad(&|v| {
        v.as_object_mut().expect("obj").remove("trusted_kernels");
    });
    assert!(
        matches!(missing, PolicyError::Json(ref m) if m.contains("trusted_kernels")),
        "{missing}"
    );
    assert!(matches!(
        IdentityPolicy::from_json(b"{"),
        Err(PolicyError::Json(_))
    ));
    assert!(matches!(
        IdentityPolicy::from_json(&vec![b' '; MAX_POLICY_LEN + 1]),
        Err(PolicyError::TooLarge(_))
    ));
}

#[test]
fn test_policy_admit_renders_each_placeholder() {
    let f = facts();
    for (template, path) in [
        ("/zone/{zone_id}", "/zone/z-0001".to_string()),
        ("/zone/{zone_name}", "/zone/web".to_string()),
        (
            "/host/{host_id}/zone/{zone_id}",
            "/host/host-a/zone/z-0001".to_string(),
        ),
        ("/image/{image_digest}", format!("/image/{IMAGE_HEX}")),
        (
            "/ns/{pod_namespace}/sa/{service_account}",
            "/ns/prod/sa/api".to_string(),
        ),
        ("/zone-{zone_name}.v1", "/zone-web.v1".to_string()),
        ("/static", "/static".to_string()),
    ] {
        let id = policy(template).admit(&f).expect(template);
        assert_eq!(
            id.to_string(),
            format!("spiffe://zones.test{path}"),
            "{template}"
        );
    }
}

#[test]
fn test_policy_admit_refuses_with_every_reason() {
    let p = policy("/ns/{pod_namespace}/zone/{zone_name}");
    let mut f = facts();
    f.kernel = KERNEL.replace('1', "9");
    f.pod_namespace = None;
    let reasons = p.admit(&f).expect_err("refused");
    assert_eq!(
        reasons,
        vec![
            format!(
                "kernel {} is not one of the policy's trusted_kernels",
                f.kernel
            ),
            "the path template needs {pod_namespace}, which is not known for this zone".to_string(),
        ]
    );
    let mut f = facts();
    f.initrd = Some(KERNEL.into());
    assert_eq!(
        policy("/zone/{zone_id}").admit(&f),
        Err(vec![format!(
            "initrd {KERNEL} is not one of the policy's trusted_initrds"
        )])
    );
    // No initrd at all needs no trusted_initrds entry; a policy without initrds refuses one.
    let mut f = facts();
    f.initrd = None;
    policy("/zone/{zone_id}").admit(&f).expect("no initrd");
    let mut no_initrds = policy("/zone/{zone_id}");
    no_initrds.trusted_initrds.clear();
    assert!(no_initrds.admit(&facts()).is_err());
    let mut f = facts();
    f.kernel.clear();
    assert_eq!(
        policy("/zone/{zone_id}").admit(&f),
        Err(vec!["the zone's kernel was not measured".to_string()])
    );
}

#[test]
fn test_policy_admit_refuses_values_that_are_not_path_segments() {
    let p = policy("/zone/{zone_name}");
    for name in ["a/b", "web:1", "..", ".", "", "we b", "ä"] {
        let mut f = facts();
        f.zone_name = Some(name.into());
        let reasons = p.admit(&f).expect_err(name);
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(reasons[0].contains("{zone_name}"), "{reasons:?}");
    }
    let mut f = facts();
    f.zone_name = None;
    assert_eq!(
        p.admit(&f),
        Err(vec![
            "the path template needs {zone_name}, which is not known for this zone".to_string()
        ])
    );
    let img = policy("/image/{image_digest}");
    for digest in [Some(""), None] {
        let mut f = facts();
        f.image_digest = digest.map(str::to_string);
        let reasons = img.admit(&f).expect_err("no image");
        assert!(reasons[0].contains("needs {image_digest}"), "{reasons:?}");
    }
    let mut f = facts();
    f.image_digest = Some(format!("sha512:{IMAGE_HEX}"));
    assert!(img.admit(&f).expect_err("sha512")[0].contains("{image_digest}"));
    // A policy altered in code after from_json is checked again.
    let mut altered = policy("/zone/{zone_id}");
    altered.path_template = "/zone/{nope}".into();
    assert!(altered.admit(&facts()).expect_err("invalid")[0].contains("path_template"));
}

#[test]
fn test_facts_from_verified() {
    let image = format!("sha256:{IMAGE_HEX}");
    let mut verified = Verified {
        zone_id: "z-0001".into(),
        host_id: "host-a".into(),
        pcrs: BTreeMap::new(),
        components: BTreeMap::from([
            ("kernel".to_string(), KERNEL.to_string()),
            ("initrd".to_string(), INITRD.to_string()),
            ("cmdline".to_string(), "sha256:44".to_string()),
        ]),
        claims: BTreeMap::from([
            ("zone-id".to_string(), "z-0001".to_string()),
            ("image-manifest-digest".to_string(), image.clone()),
        ]),
        manifest: ZoneManifest::default(),
        reset_count: 0,
    };
    let f = Facts::from_verified(&verified, Some("web"));
    assert_eq!(f, facts_without_pod(&image));
    policy("/zone/{zone_name}/{image_digest}")
        .admit(&f)
        .expect("admitted");
    verified.components.remove("initrd");
    verified
        .claims
        .insert("image-manifest-digest".into(), String::new());
    let bare = Facts::from_verified(&verified, None);
    assert_eq!(bare.initrd, None);
    assert_eq!(bare.image_digest, None);
    assert_eq!(bare.zone_name, None);
}

fn facts_without_pod(image: &str) -> Facts {
    Facts {
        image_digest: Some(image.to_string()),
        pod_namespace: None,
        service_account: None,
        ..facts()
    }
}
