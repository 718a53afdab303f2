//! Our `make_credential` against a real swtpm's `TPM2_ActivateCredential` (tpm2-tools 5).

mod support;

use support::Swtpm;
use zone_attest::activation::{make_credential, CredentialChallenge};
use zone_attest::tpm_types::TpmPublic;

fn round_trip(ek_alg: &str) {
    let tpm = Swtpm::start();
    tpm.create_ek_ak(ek_alg, "ecc");
    let ek =
        TpmPublic::from_tpm2b(&tpm.read("ek.pub")).expect("EK TPM2B_PUBLIC from tpm2_createek");
    let ak =
        TpmPublic::from_tpm2b(&tpm.read("ak.pub")).expect("AK TPM2B_PUBLIC from tpm2_createak");
    assert_eq!(
        ak.name(),
        tpm.read("ak.name"),
        "our AK name equals the TPM's"
    );

    let secret = b"zones-credential-0123456789abcde";
    let ch =
        make_credential(&ek, &ak.name(), secret, &mut rand_core::OsRng).expect("make_credential");
    tpm.write("cred.file", &ch.to_tpm2_tools());
    let (ok, got, err) = tpm.activate("cred.file");
    assert!(
        ok,
        "tpm2_activatecredential refused our {ek_alg} credential: {err}"
    );
    assert_eq!(got, secret, "swtpm recovered another secret");

    // The same credential bound to another name must not activate with this AK.
    let mut other_name = ak.name();
    other_name[5] ^= 1;
    let ch =
        make_credential(&ek, &other_name, secret, &mut rand_core::OsRng).expect("make_credential");
    tpm.write("cred.bad", &ch.to_tpm2_tools());
    let (ok, _, _) = tpm.activate("cred.bad");
    assert!(!ok, "swtpm activated a credential made for another AK name");
}

#[test]
fn test_make_credential_rsa_ek_activates_on_swtpm() {
    round_trip("rsa");
}

#[test]
fn test_make_credential_ecc_ek_activates_on_swtpm() {
    round_trip("ecc");
}

#[test]
fn test_credential_file_from_tpm2_makecredential_parses() {
    let tpm = Swtpm::start();
    tpm.create_ek_ak("rsa", "ecc");
    tpm.write("secret.in", b"0123456789abcdef");
    let name = support::hex_str(&tpm.read("ak.name"));
    tpm.tool(&[
        "tpm2_makecredential",
        "-T",
        "none",
        "-u",
        "ek.pub",
        "-s",
        "secret.in",
        "-n",
        &name,
        "-o",
        "tools.cred",
    ]);
    let ch = CredentialChallenge::from_tpm2_tools(&tpm.read("tools.cred")).expect("parses");
    assert_eq!(ch.encrypted_secret.len(), 256, "RSA-2048 OAEP seed");
}
