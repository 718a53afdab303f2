//! Times the verifier and its pieces on a good bundle from the software TPM.
//! `cargo run --release -p zone-attest --example verify_bench [iterations]`

use std::time::{Instant, SystemTime};

use zone_attest::activation::make_credential;
use zone_attest::ear;
use zone_attest::evidence::{sha256_uri, Evidence, ZoneManifest};
use zone_attest::measurements::{self, BootInputs, ZoneClaims};
use zone_attest::protocol::{enroll, respond};
use zone_attest::reference::ReferenceValues;
use zone_attest::soft_tpm::SoftTpm;
use zone_attest::verify::{verify, Policy};
use zone_attest::zone_ca::{FileCaSigner, ZoneCa};

fn time<T>(name: &str, n: u32, mut f: impl FnMut() -> T) {
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(f());
    }
    let per = start.elapsed() / n;
    println!(
        "{name:<40} {:>9.1} µs/op  ({n} runs)",
        per.as_secs_f64() * 1e6
    );
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let kernel = vec![0x5a; 8 << 20]; // an 8 MiB "kernel", hashed once by the plan
    let claims = ZoneClaims {
        zone_id: "zone-1".into(),
        image_manifest_digest: format!("sha256:{}", "1".repeat(64)),
        oci_config_digest: format!("sha256:{}", "2".repeat(64)),
    };
    let inputs = BootInputs {
        vmm_version: "zone-vmm 0.1.0",
        zone_config: b"zones-platform-config/1",
        kernel: &kernel,
        cmdline: b"console=hvc0 quiet",
        initrd: Some(b"initrd"),
        claims: &claims,
    };
    let mut tpm = SoftTpm::new();
    tpm.measure(&measurements::plan(&inputs));
    let ca = ZoneCa::new_self_signed(FileCaSigner::ephemeral(), "host-a").expect("ca");
    let enrollment = enroll(&ca, &mut tpm, "zone-1").expect("enroll");
    let reference = ReferenceValues::from_boot_inputs(&inputs);
    let s = |d: &[u8]| sha256_uri(&zone_attest::eventlog::sha256(d));
    let manifest = ZoneManifest {
        zone_id: "zone-1".into(),
        host_id: "host-a".into(),
        vmm_version: "zone-vmm 0.1.0".into(),
        kernel_digest: s(&kernel),
        initrd_digest: Some(s(b"initrd")),
        cmdline_digest: s(b"console=hvc0 quiet"),
        image_manifest_digest: claims.image_manifest_digest.clone(),
        oci_config_digest: claims.oci_config_digest.clone(),
    };
    let nonce = [9u8; 32];
    let evidence = respond(&mut tpm, &enrollment, &manifest, &nonce).expect("respond");
    let json = evidence.to_json();
    let cas = [ca.cert_der().to_vec()];
    let policy = Policy {
        trusted_cas: &cas,
        reference: &reference,
        expected_nonce: &nonce,
        now: SystemTime::now(),
    };
    verify(&evidence, &policy).expect("good bundle verifies");
    println!("evidence JSON: {} bytes", json.len());

    time("verify (parsed bundle)", n, || verify(&evidence, &policy));
    time("parse JSON + verify", n, || {
        verify(
            &Evidence::from_json(json.as_bytes()).expect("json"),
            &policy,
        )
    });
    let key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    time("parse + verify + EAR JWT", n, || {
        let r = verify(
            &Evidence::from_json(json.as_bytes()).expect("json"),
            &policy,
        );
        ear::sign_jwt(&ear::appraise(&r, &nonce, "p", SystemTime::now()), &key)
    });
    let ak = tpm.ak_public().clone();
    time("make_credential (P-256 EK)", n, || {
        make_credential(tpm.ek_public(), &ak.name(), &[1; 32], &mut rand_core::OsRng)
    });
    time("enroll (EK cert, activation, AK cert)", n / 4 + 1, || {
        enroll(&ca, &mut tpm, "zone-1")
    });
    time("reference from plan (8 MiB kernel)", 10, || {
        ReferenceValues::from_boot_inputs(&inputs)
    });
}
