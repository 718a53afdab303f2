//! The whole protocol against a real swtpm driven by tpm2-tools: the boot plan is extended into
//! the swtpm with `tpm2_pcrextend`, the zone CA enrolls its EK and AK (our MakeCredential,
//! swtpm's ActivateCredential), `tpm2_quote` answers our nonce, and our verifier and
//! `tpm2_checkquote` agree on the quote.

mod support;

use std::time::SystemTime;

use support::{hex_str, Swtpm, ToolsAttester};
use zone_attest::eventlog;
use zone_attest::evidence::{sha256_uri, ZoneManifest};
use zone_attest::measurements::{self, BootInputs, ZoneClaims};
use zone_attest::protocol::{attest, enroll, respond};
use zone_attest::reference::ReferenceValues;
use zone_attest::verify::{verify, Check, Policy, Verifier};
use zone_attest::zone_ca::{FileCaSigner, ZoneCa};

const IMAGE: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const OCI: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

fn claims() -> ZoneClaims {
    ZoneClaims {
        zone_id: "zone-7".into(),
        image_manifest_digest: IMAGE.into(),
        oci_config_digest: OCI.into(),
    }
}

fn inputs(claims: &ZoneClaims) -> BootInputs<'_> {
    BootInputs {
        vmm_version: "zone-vmm 0.1.0",
        zone_config: b"zones-platform-config/1 vcpus=1",
        kernel: b"bzImage bytes",
        cmdline: b"console=hvc0 tpm_tis.force=1",
        initrd: Some(b"initrd bytes"),
        claims,
    }
}

fn manifest() -> ZoneManifest {
    let s = |d: &[u8]| sha256_uri(&eventlog::sha256(d));
    ZoneManifest {
        zone_id: "zone-7".into(),
        host_id: "host-a".into(),
        vmm_version: "zone-vmm 0.1.0".into(),
        kernel_digest: s(b"bzImage bytes"),
        initrd_digest: Some(s(b"initrd bytes")),
        cmdline_digest: s(b"console=hvc0 tpm_tis.force=1"),
        image_manifest_digest: IMAGE.into(),
        oci_config_digest: OCI.into(),
    }
}

/// A swtpm measured with the plan, as the VMM does before the first vCPU runs.
fn measured_swtpm() -> (Swtpm, Vec<u8>) {
    let tpm = Swtpm::start();
    let c = claims();
    let plan = measurements::plan(&inputs(&c));
    for e in &plan {
        tpm.extend(e.pcr, &e.digest);
    }
    (tpm, measurements::event_log(&plan).to_bytes())
}

fn end_to_end(ek_alg: &str) {
    let (tpm, log) = measured_swtpm();
    let ca = ZoneCa::new_self_signed(FileCaSigner::ephemeral(), "host-a").expect("ca");
    let mut attester = ToolsAttester {
        tpm: &tpm,
        ek_alg,
        log,
    };
    let enrollment = enroll(&ca, &mut attester, "zone-7").expect("enrollment with swtpm");
    let c = claims();
    let reference = ReferenceValues::from_boot_inputs(&inputs(&c));
    let mut verifier = Verifier::new(vec![ca.cert_der().to_vec()], reference.clone());

    let (evidence, verdict) =
        attest(&mut attester, &enrollment, &manifest(), &mut verifier).expect("protocol");
    let verified = verdict.unwrap_or_else(|f| panic!("swtpm evidence refused: {f:?}"));
    assert_eq!(verified.zone_id, "zone-7");
    assert_eq!(
        verified.pcrs.get(&15),
        Some(&hex_str(&measurements::reference_pcrs(&inputs(&c))[15]))
    );

    // tpm2_checkquote agrees on the same bytes, and disagrees on another nonce.
    tpm.write("v.msg", &evidence.quote.attest);
    tpm.write("v.sig", &evidence.quote.signature);
    let check = |nonce: &str| {
        tpm.tool_status(&[
            "tpm2_checkquote",
            "-u",
            "ak.pub",
            "-m",
            "v.msg",
            "-s",
            "v.sig",
            "-f",
            "quote.pcrs",
            "-g",
            "sha256",
            "-q",
            nonce,
        ])
    };
    let (ok, out, err) = check(&hex_str(&evidence.nonce));
    assert!(
        ok,
        "tpm2_checkquote refused a quote our verifier accepted: {err}"
    );
    // And it saw the PCR values our verifier saw.
    for (pcr, value) in &verified.pcrs {
        assert!(
            out.to_ascii_lowercase().contains(&format!("0x{value}")),
            "tpm2_checkquote did not print PCR {pcr} = {value}:\n{out}"
        );
    }
    let mut other = evidence.nonce.clone();
    other[0] ^= 1;
    assert!(
        !check(&hex_str(&other)).0,
        "tpm2_checkquote accepted another nonce"
    );

    // Our verifier refuses the replay and a quote over another nonce.
    let refused = verifier
        .verify_response(&evidence)
        .expect_err("replayed swtpm evidence accepted");
    assert_eq!(refused[0].check, Check::Nonce);
    let e2 = respond(&mut attester, &enrollment, &manifest(), &other).expect("respond");
    let refused = verify(
        &e2,
        &Policy {
            trusted_cas: &[ca.cert_der().to_vec()],
            reference: &reference,
            expected_nonce: &evidence.nonce,
            now: SystemTime::now(),
        },
    )
    .expect_err("quote over another nonce accepted");
    assert!(refused.iter().any(|f| f.check == Check::Nonce));
}

#[test]
fn test_swtpm_rsa_ek_enroll_quote_verify() {
    end_to_end("rsa");
}

#[test]
fn test_swtpm_ecc_ek_enroll_quote_verify() {
    end_to_end("ecc");
}

#[test]
fn test_swtpm_rsa_ak_quote_verifies() {
    // An RSASSA AK (tpm2_createak -G rsa) is accepted by the quote checks as well.
    let tpm = Swtpm::start();
    tpm.create_ek_ak("rsa", "rsa");
    tpm.tool(&[
        "tpm2_quote",
        "-c",
        "ak.ctx",
        "-l",
        "sha256:0,18",
        "-q",
        "00112233",
        "-m",
        "q.msg",
        "-s",
        "q.sig",
        "-g",
        "sha256",
    ]);
    let ak = zone_attest::tpm_types::TpmPublic::from_tpm2b(&tpm.read("ak.pub")).expect("ak");
    let sig = zone_attest::tpm_types::TpmSignature::parse(&tpm.read("q.sig")).expect("sig");
    zone_attest::quote::verify_signature(&ak, &tpm.read("q.msg"), &sig).expect("RSASSA verifies");
}
