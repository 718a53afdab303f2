//! `TpmAttester` (our own TPM commands, no tpm2-tools) against a real swtpm: the boot plan is
//! extended with `tpm_command` as the VMM does, the EK is read as
//! the VMM reads it (`zone-vmm --tpm-ek-public`), the zone CA certifies that EK and activates
//! the attester's AK, the attester quotes the verifier's nonce and the verifier accepts it; a
//! replayed nonce is refused; tpm2-tools agree on the EK and the quote; nothing is left loaded.

mod support;

use std::time::SystemTime;

use support::{hex_str, Swtpm, SwtpmSocket};
use zone_attest::activation::make_credential;
use zone_attest::device_attester::{AttesterError, EventLogSource, TpmAttester};
use zone_attest::eventlog;
use zone_attest::evidence::{sha256_uri, ZoneManifest};
use zone_attest::measurements::{self, BootInputs, ZoneClaims};
use zone_attest::protocol::{attest, enroll_with_ek, respond, Attester};
use zone_attest::reference::ReferenceValues;
use zone_attest::tpm_command::{CommandError, Tpm};
use zone_attest::tpm_types::TpmPublic;
use zone_attest::verify::{verify, Check, Policy, Verifier};
use zone_attest::zone_ca::{FileCaSigner, ZoneCa};

const IMAGE: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const OCI: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

fn claims() -> ZoneClaims {
    ZoneClaims {
        zone_id: "zone-9".into(),
        image_manifest_digest: IMAGE.into(),
        oci_config_digest: OCI.into(),
    }
}

fn inputs(claims: &ZoneClaims) -> BootInputs<'_> {
    BootInputs {
        vmm_version: "zone-vmm 0.1.0",
        zone_config: b"zones-platform-config/1 vcpus=2",
        kernel: b"bzImage bytes",
        cmdline: b"console=ttyS0",
        initrd: Some(b"initrd bytes"),
        claims,
    }
}

fn manifest() -> ZoneManifest {
    let s = |d: &[u8]| sha256_uri(&eventlog::sha256(d));
    ZoneManifest {
        zone_id: "zone-9".into(),
        host_id: "host-b".into(),
        vmm_version: "zone-vmm 0.1.0".into(),
        kernel_digest: s(b"bzImage bytes"),
        initrd_digest: Some(s(b"initrd bytes")),
        cmdline_digest: s(b"console=ttyS0"),
        image_manifest_digest: IMAGE.into(),
        oci_config_digest: OCI.into(),
    }
}

/// What the VMM does before the first vCPU (`vtpm::measure_boot` then
/// `vtpm::endorsement_key`), with the same `tpm_command` code over the swtpm's sockets: extend
/// the plan, derive the EK and flush it.
fn vmm_side(tpm: &Swtpm) -> (Vec<u8>, TpmPublic) {
    let c = claims();
    let plan = measurements::plan(&inputs(&c));
    let mut t = Tpm::new(tpm.transport());
    for e in &plan {
        t.pcr_extend(e.pcr, &e.digest)
            .unwrap_or_else(|err| panic!("PCR_Extend {}: {err}", e.pcr));
    }
    let ek = t.create_ek().expect("CreatePrimary EK");
    let read = t.read_public(ek.handle).expect("ReadPublic EK");
    assert_eq!(
        (read.public, read.name),
        (ek.public.clone(), ek.public.name())
    );
    t.flush_context(ek.handle).expect("FlushContext EK");
    (measurements::event_log(&plan).to_bytes(), ek.public)
}

/// Transient objects and sessions the TPM holds (tpm2_getcap lists handles, one per line).
fn leftovers(tpm: &Swtpm) -> String {
    let mut out = String::new();
    for cap in ["handles-transient", "handles-loaded-session"] {
        out += tpm.tool(&["tpm2_getcap", cap]).trim();
    }
    out
}

#[test]
fn test_tpm_attester_enrolls_quotes_and_verifies_on_swtpm() {
    let tpm = Swtpm::start();
    let (log, vmm_ek) = vmm_side(&tpm);
    let mut attester: TpmAttester<SwtpmSocket> =
        TpmAttester::new(tpm.transport(), EventLogSource::Bytes(log));

    // The guest re-derives the VMM's EK from the same template.
    assert_eq!(attester.ek_public().expect("EK"), vmm_ek);
    // And tpm2_createek (the reference client) derives it too.
    tpm.tool(&["tpm2_createek", "-G", "ecc", "-c", "ek.ctx", "-u", "ek.pub"]);
    assert_eq!(tpm.read("ek.pub"), vmm_ek.to_tpm2b());
    assert_eq!(leftovers(&tpm), "", "attester or VMM left objects loaded");

    let ca = ZoneCa::new_self_signed(FileCaSigner::ephemeral(), "host-b").expect("ca");
    let enrollment =
        enroll_with_ek(&ca, &mut attester, "zone-9", &vmm_ek).expect("enrollment on swtpm");
    assert_eq!(leftovers(&tpm), "", "activation left objects or sessions");

    let c = claims();
    let reference = ReferenceValues::from_boot_inputs(&inputs(&c));
    let mut verifier = Verifier::new(vec![ca.cert_der().to_vec()], reference.clone());
    let (evidence, verdict) =
        attest(&mut attester, &enrollment, &manifest(), &mut verifier).expect("protocol");
    let verified = verdict.unwrap_or_else(|f| panic!("TpmAttester evidence refused: {f:?}"));
    assert_eq!(verified.zone_id, "zone-9");
    assert_eq!(
        verified.pcrs.get(&15),
        Some(&hex_str(&measurements::reference_pcrs(&inputs(&c))[15]))
    );
    assert_eq!(leftovers(&tpm), "", "quote left objects loaded");

    // verify::verify on its own affirms the same evidence for its nonce.
    let policy = Policy {
        trusted_cas: &[ca.cert_der().to_vec()],
        reference: &reference,
        expected_nonce: &evidence.nonce,
        now: SystemTime::now(),
    };
    verify(&evidence, &policy).expect("verify affirms");

    // tpm2_checkquote accepts our quote with our AK.
    tpm.write("ak.pub", &enrollment.ak_public.to_tpm2b());
    tpm.write("q.msg", &evidence.quote.attest);
    tpm.write("q.sig", &evidence.quote.signature);
    tpm.tool(&[
        "tpm2_checkquote",
        "-u",
        "ak.pub",
        "-m",
        "q.msg",
        "-s",
        "q.sig",
        "-g",
        "sha256",
        "-q",
        &hex_str(&evidence.nonce),
    ]);

    // A replay: the same bundle, and a fresh quote over the used nonce, are both refused.
    let refused = verifier
        .verify_response(&evidence)
        .expect_err("replayed evidence accepted");
    assert_eq!(refused[0].check, Check::Nonce);
    let again = respond(&mut attester, &enrollment, &manifest(), &evidence.nonce).expect("respond");
    let refused = verifier
        .verify_response(&again)
        .expect_err("fresh quote over a used nonce accepted");
    assert!(
        refused.iter().any(|f| f.check == Check::Nonce),
        "{refused:?}"
    );

    // A second round with a fresh nonce still passes (the keys are re-derived, same AK).
    let (_, verdict) =
        attest(&mut attester, &enrollment, &manifest(), &mut verifier).expect("protocol");
    verdict.unwrap_or_else(|f| panic!("second round refused: {f:?}"));
}

#[test]
fn test_tpm_attester_credential_for_another_ak_fails_cleanly() {
    let tpm = Swtpm::start();
    let (log, vmm_ek) = vmm_side(&tpm);
    let mut attester = TpmAttester::new(tpm.transport(), EventLogSource::Bytes(log));
    let ak = attester.ak_public().expect("AK");
    let mut other_name = ak.name();
    other_name[3] ^= 1;
    let ch = make_credential(&vmm_ek, &other_name, b"secret", &mut rand_core::OsRng)
        .expect("make_credential");
    let err = attester
        .activate_credential(&ch)
        .expect_err("activated a credential bound to another name");
    match &err {
        AttesterError::Command(CommandError::Tpm { command, rc }) => {
            assert_eq!(*command, "ActivateCredential");
            assert!(err
                .to_string()
                .contains("TPM2_ActivateCredential returned TPM_RC"));
            assert!(*rc != 0);
        }
        other => panic!("unexpected error {other}"),
    }
    assert_eq!(
        leftovers(&tpm),
        "",
        "a failed activation left objects or its session"
    );

    // With the right name it activates.
    let ch = make_credential(&vmm_ek, &ak.name(), b"secret", &mut rand_core::OsRng)
        .expect("make_credential");
    assert_eq!(
        attester.activate_credential(&ch).expect("activates"),
        b"secret"
    );
    assert_eq!(leftovers(&tpm), "");
}
