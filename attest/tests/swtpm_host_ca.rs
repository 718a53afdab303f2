//! The zone CA with its key in a host TPM: a second swtpm plays the host's TPM (over its Unix
//! socket server channel, through [`SocketTransport`]), a third a zone's vTPM (over TCP). The
//! CA certifies the zone's EK; the chain is checked with zone-attest's verifier and with
//! `openssl verify`; the CA reopened after the host TPM restarted has the same key and takes
//! its stored certificate; another host TPM is refused it by name. Missing swtpm, tpm2-tools
//! or openssl fail the test (never a skip).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use support::{require, Swtpm};
use zone_attest::chain::{self, Role};
use zone_attest::tpm_ca_signer::TpmCaSigner;
use zone_attest::tpm_command::Tpm;
use zone_attest::tpm_socket::{SocketAddress, SocketTransport};
use zone_attest::zone_ca::{CaSigner, ZoneCa, ZoneCaError, CERT_FILE};

/// `swtpm socket --tpm2` with its server and control channels on Unix sockets in `dir` and
/// its state in `dir/state` (kept across restarts); killed on drop.
struct UnixSwtpm {
    child: Child,
    server: PathBuf,
}

impl UnixSwtpm {
    fn start(dir: &Path) -> Self {
        require("swtpm");
        let state = dir.join("state");
        std::fs::create_dir_all(&state).expect("state dir");
        let server = dir.join("server.sock");
        let ctrl = dir.join("ctrl.sock");
        for s in [&server, &ctrl] {
            let _ = std::fs::remove_file(s);
        }
        let mut child = Command::new("swtpm")
            .args(["socket", "--tpm2"])
            .arg("--server")
            .arg(format!("type=unixio,path={}", server.display()))
            .arg("--ctrl")
            .arg(format!("type=unixio,path={}", ctrl.display()))
            .arg("--tpmstate")
            .arg(format!("dir={}", state.display()))
            .args(["--flags", "not-need-init,startup-clear"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn swtpm");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !server.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("swtpm exited before listening: {status}");
            }
            assert!(Instant::now() < deadline, "swtpm did not create {server:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, server }
    }

    fn transport(&self) -> SocketTransport {
        SocketTransport::new(SocketAddress::Unix(self.server.clone()))
    }

    fn signer(&self) -> TpmCaSigner<SocketTransport> {
        TpmCaSigner::new(self.transport())
            .expect("the CA key in the host swtpm")
            .named(format!("swtpm:unix:{}", self.server.display()))
    }

    /// How many transient objects are loaded in this TPM: `TPM2_GetCapability(TPM_CAP_HANDLES,
    /// first transient handle, 8)` sent raw (the response's TPML_HANDLE count).
    fn transient_objects(&self) -> u32 {
        use zone_attest::tpm_command::TpmTransport as _;
        let cmd = hex::decode("8001000000160000017a000000018000000000000008").expect("hex");
        let rsp = self.transport().transmit(&cmd).expect("GetCapability");
        assert_eq!(rsp[6..10], [0, 0, 0, 0], "GetCapability failed: {rsp:02x?}");
        // header(10) moreData(1) capability(4) count(4)
        u32::from_be_bytes([rsp[15], rsp[16], rsp[17], rsp[18]])
    }
}

impl Drop for UnixSwtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// `openssl verify -CAfile ca leaf`: (success, output).
fn openssl_verify(ca: &Path, leaf: &Path) -> (bool, String) {
    require("openssl");
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(ca)
        .arg(leaf)
        .output()
        .expect("run openssl");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn test_host_tpm_zone_ca_certifies_zone_ek_and_survives_restart() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let ca_dir = scratch.path().join("ca");
    let host_dir = scratch.path().join("host-tpm");
    std::fs::create_dir(&host_dir).expect("host dir");

    // The zone's vTPM (TCP) and its EK, derived with zone-attest's own commands.
    let zone = Swtpm::start();
    let mut zone_tpm = Tpm::new(SocketTransport::new(SocketAddress::Tcp(format!(
        "127.0.0.1:{}",
        zone.port
    ))));
    let ek = zone_tpm.create_ek().expect("zone EK");
    zone_tpm.flush_context(ek.handle).expect("flush EK");

    // First run: the CA is created with its key in the host TPM.
    let (ca_cert, ca_key) = {
        let host = UnixSwtpm::start(&host_dir);
        let signer = host.signer();
        assert!(signer.describe().contains("swtpm:unix:"));
        let key = signer.verifying_key();
        let ca = ZoneCa::open_or_create_with(&ca_dir, "host-a", signer).expect("create the CA");
        assert!(ca_dir.join(CERT_FILE).exists());
        assert!(
            !ca_dir.join(zone_attest::zone_ca::KEY_FILE).exists(),
            "no key file with a host TPM"
        );
        let ek_cert = ca.issue_ek_cert("zone-1", &ek.public).expect("EK cert");
        // zone-attest's verifier.
        let certified = chain::verify_leaf(&ek_cert, ca.cert_der(), Role::Ek, SystemTime::now())
            .expect("EK chain verifies");
        assert_eq!(
            (certified.zone_id.as_str(), certified.host_id.as_str()),
            ("zone-1", "host-a")
        );
        assert_eq!(
            certified.spki_der,
            ek.public.to_spki_der().expect("EK SPKI")
        );
        // openssl.
        let ek_pem = scratch.path().join("ek.pem");
        std::fs::write(&ek_pem, pem("CERTIFICATE", &ek_cert)).expect("write ek.pem");
        let (ok, out) = openssl_verify(&ca_dir.join(CERT_FILE), &ek_pem);
        assert!(ok && out.contains("OK"), "openssl verify: {out}");
        // A tampered certificate fails both.
        let mut bad = ek_cert.clone();
        let n = bad.len();
        bad[n - 5] ^= 1;
        assert!(chain::verify_leaf(&bad, ca.cert_der(), Role::Ek, SystemTime::now()).is_err());
        let bad_pem = scratch.path().join("bad.pem");
        std::fs::write(&bad_pem, pem("CERTIFICATE", &bad)).expect("write bad.pem");
        let (ok, out) = openssl_verify(&ca_dir.join(CERT_FILE), &bad_pem);
        assert!(!ok, "openssl accepted a tampered certificate: {out}");
        // The signer left nothing loaded in the host TPM.
        assert_eq!(host.transient_objects(), 0, "transient objects left");
        (ca.cert_der().to_vec(), key)
    };

    // Second run: a new swtpm process on the same state, a new signer: the same key, and the
    // stored certificate is accepted.
    {
        let host = UnixSwtpm::start(&host_dir);
        let signer = host.signer();
        assert_eq!(
            signer.verifying_key(),
            ca_key,
            "the TPM derived another key"
        );
        let ca = ZoneCa::open_or_create_with(&ca_dir, "host-a", signer).expect("reopen the CA");
        assert_eq!(ca.cert_der(), ca_cert);
        let ek_cert = ca.issue_ek_cert("zone-2", &ek.public).expect("EK cert");
        chain::verify_leaf(&ek_cert, &ca_cert, Role::Ek, SystemTime::now())
            .expect("certificate from the reopened CA verifies under the stored one");
        // The same CA under another host id is refused.
        let e = ZoneCa::open_or_create_with(&ca_dir, "host-b", host.signer())
            .expect_err("other host id");
        assert!(matches!(e, ZoneCaError::CertHost(..)), "{e}");
    }

    // Another host TPM (a third swtpm, its own state) is refused the stored certificate.
    let other_dir = scratch.path().join("other-tpm");
    std::fs::create_dir(&other_dir).expect("other dir");
    let other = UnixSwtpm::start(&other_dir);
    let signer = other.signer();
    assert_ne!(signer.verifying_key(), ca_key);
    let e = ZoneCa::open_or_create_with(&ca_dir, "host-a", signer).expect_err("other TPM");
    assert!(matches!(e, ZoneCaError::CertKey(..)), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&ca_dir.join(CERT_FILE).display().to_string()),
        "{msg}"
    );
    assert!(msg.contains("swtpm:unix:"), "{msg}");
}

#[test]
fn test_host_tpm_signer_same_key_over_tcp_and_signatures_verify() {
    use p256::ecdsa::signature::Verifier as _;
    let host = Swtpm::start();
    let addr = SocketAddress::Tcp(format!("127.0.0.1:{}", host.port));
    let a = TpmCaSigner::new(SocketTransport::new(addr.clone())).expect("signer");
    let b = TpmCaSigner::new(SocketTransport::new(addr)).expect("signer");
    assert_eq!(a.verifying_key(), b.verifying_key());
    assert_eq!(a.public(), b.public());
    let der = a.sign(b"to be signed").expect("sign");
    let sig = p256::ecdsa::Signature::from_der(der.as_bytes()).expect("DER");
    b.verifying_key()
        .verify(b"to be signed", &sig)
        .expect("verifies");
    assert!(b.verifying_key().verify(b"something else", &sig).is_err());
    // The key is not the zone's AK or EK of the same TPM.
    let mut tpm = Tpm::new(host.transport());
    let ak = tpm.create_ak().expect("AK");
    tpm.flush_context(ak.handle).expect("flush");
    assert_ne!(ak.public.key, a.public().key);
}
