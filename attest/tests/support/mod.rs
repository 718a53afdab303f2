//! A real `swtpm` on loopback TCP and `tpm2-tools` driven against it, for the interop tests.
//! Missing tools fail the test with a message naming them (never a silent skip).

#![allow(dead_code)]

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Panics with an install hint if `tool` is not on PATH.
pub fn require(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{tool} not found on PATH: these interop tests need a real swtpm and tpm2-tools \
         (`apt-get install -y swtpm swtpm-tools tpm2-tools`, or run hack/setup)"
    );
}

/// A `swtpm socket --tpm2` process on free loopback ports, killed on drop.
#[derive(Debug)]
pub struct Swtpm {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let p = l.local_addr().expect("local addr").port();
        if p < u16::MAX && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no two adjacent free loopback ports");
}

impl Swtpm {
    pub fn start() -> Self {
        require("swtpm");
        for tpm2 in [
            "tpm2_createek",
            "tpm2_createak",
            "tpm2_quote",
            "tpm2_checkquote",
        ] {
            require(tpm2);
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        std::fs::create_dir(&state).expect("state dir");
        for _attempt in 0..5 {
            let port = free_port_pair();
            let mut child = Command::new("swtpm")
                .args(["socket", "--tpm2"])
                .arg("--server")
                .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
                .arg("--ctrl")
                .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
                .arg("--tpmstate")
                .arg(format!("dir={}", state.display()))
                .args(["--flags", "not-need-init,startup-clear"])
                .stdout(Stdio::null())
                .arg("--log")
                .arg(format!("file={}", dir.path().join("swtpm.log").display()))
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn swtpm");
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // lost the port race; try another pair
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Self { child, port, dir };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("swtpm did not start listening");
    }

    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// A path in the test's scratch directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs a tpm2-tools command against this swtpm in the scratch directory; panics with its
    /// stderr if it fails. Transient objects are flushed afterwards (there is no resource manager).
    pub fn tool(&self, args: &[&str]) -> String {
        let out = self.tool_status(args);
        assert!(out.0, "{} failed:\n{}", args.join(" "), out.2);
        out.1
    }

    /// Like [`Swtpm::tool`] but returns (success, stdout, stderr) instead of panicking.
    pub fn tool_status(&self, args: &[&str]) -> (bool, String, String) {
        require(args[0]);
        let out = Command::new(args[0])
            .args(&args[1..])
            .current_dir(self.dir.path())
            .env("TPM2TOOLS_TCTI", self.tcti())
            .output()
            .expect("run tpm2-tools");
        let _ = Command::new("tpm2_flushcontext")
            .arg("-t")
            .current_dir(self.dir.path())
            .env("TPM2TOOLS_TCTI", self.tcti())
            .output();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
    }

    pub fn write(&self, name: &str, data: &[u8]) {
        std::fs::write(self.path(name), data).unwrap_or_else(|e| panic!("write {name}: {e}"));
    }

    /// `tpm2_createek` with `alg` ("rsa" or "ecc") then `tpm2_createak` (ECDSA P-256 or
    /// RSASSA-2048 per `ak_alg`); leaves ek.ctx, ek.pub, ak.ctx, ak.pub, ak.name.
    pub fn create_ek_ak(&self, ek_alg: &str, ak_alg: &str) {
        self.tool(&[
            "tpm2_createek",
            "-c",
            "ek.ctx",
            "-G",
            ek_alg,
            "-u",
            "ek.pub",
        ]);
        let scheme = if ak_alg == "ecc" { "ecdsa" } else { "rsassa" };
        self.tool(&[
            "tpm2_createak",
            "-C",
            "ek.ctx",
            "-c",
            "ak.ctx",
            "-G",
            ak_alg,
            "-g",
            "sha256",
            "-s",
            scheme,
            "-u",
            "ak.pub",
            "-n",
            "ak.name",
            "-f",
            "tss",
        ]);
    }

    /// `tpm2_activatecredential` of `cred.file` with the EK's policy session; returns the secret.
    pub fn activate(&self, cred_file: &str) -> (bool, Vec<u8>, String) {
        self.tool(&[
            "tpm2_startauthsession",
            "--policy-session",
            "-S",
            "session.ctx",
        ]);
        let (ok_p, _, err_p) =
            self.tool_status(&["tpm2_policysecret", "-S", "session.ctx", "-c", "e"]);
        assert!(ok_p, "tpm2_policysecret failed: {err_p}");
        let (ok, _, err) = self.tool_status(&[
            "tpm2_activatecredential",
            "-c",
            "ak.ctx",
            "-C",
            "ek.ctx",
            "-i",
            cred_file,
            "-o",
            "secret.out",
            "-P",
            "session:session.ctx",
        ]);
        let _ = self.tool_status(&["tpm2_flushcontext", "session.ctx"]);
        let secret = if ok {
            self.read("secret.out")
        } else {
            Vec::new()
        };
        (ok, secret, err)
    }

    /// `tpm2_pcrextend` of the SHA-256 bank (at locality 0, where tpm2-tools always are).
    pub fn extend(&self, pcr: u32, digest: &[u8; 32]) {
        self.tool(&[
            "tpm2_pcrextend",
            &format!("{pcr}:sha256={}", hex_str(digest)),
        ]);
    }
}

/// A [`zone_attest::tpm_command::TpmTransport`] to this swtpm's TCP server: one connection per
/// command (swtpm serves one client at a time, and tpm2-tools connect in between).
#[derive(Debug, Clone, Copy)]
pub struct SwtpmSocket {
    pub port: u16,
}

impl Swtpm {
    pub fn transport(&self) -> SwtpmSocket {
        SwtpmSocket { port: self.port }
    }
}

impl zone_attest::tpm_command::TpmTransport for SwtpmSocket {
    fn transmit(&mut self, command: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.write_all(command)?;
        let mut rsp = vec![0u8; 10];
        s.read_exact(&mut rsp)?;
        let size = u32::from_be_bytes([rsp[2], rsp[3], rsp[4], rsp[5]]) as usize;
        if !(10..=zone_attest::tpm_command::MAX_RESPONSE).contains(&size) {
            return Err(std::io::Error::other(format!("response size {size}")));
        }
        rsp.resize(size, 0);
        s.read_exact(&mut rsp[10..])?;
        Ok(rsp)
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn hex_str(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

/// An [`zone_attest::protocol::Attester`] that drives the swtpm with tpm2-tools, as a host-side
/// `zonectl attest` could before tss-esapi is wired in.
#[derive(Debug)]
pub struct ToolsAttester<'a> {
    pub tpm: &'a Swtpm,
    pub ek_alg: &'a str,
    pub log: Vec<u8>,
}

#[derive(Debug)]
pub struct ToolError(pub String);

impl std::fmt::Display for ToolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ToolError {}

impl zone_attest::protocol::Attester for ToolsAttester<'_> {
    type Error = ToolError;

    fn ek_public(&mut self) -> Result<zone_attest::tpm_types::TpmPublic, ToolError> {
        if !self.tpm.path("ek.pub").exists() {
            self.tpm.create_ek_ak(self.ek_alg, "ecc");
        }
        zone_attest::tpm_types::TpmPublic::from_tpm2b(&self.tpm.read("ek.pub"))
            .map_err(|e| ToolError(e.to_string()))
    }

    fn ak_public(&mut self) -> Result<zone_attest::tpm_types::TpmPublic, ToolError> {
        if !self.tpm.path("ak.pub").exists() {
            self.tpm.create_ek_ak(self.ek_alg, "ecc");
        }
        zone_attest::tpm_types::TpmPublic::from_tpm2b(&self.tpm.read("ak.pub"))
            .map_err(|e| ToolError(e.to_string()))
    }

    fn activate_credential(
        &mut self,
        challenge: &zone_attest::activation::CredentialChallenge,
    ) -> Result<Vec<u8>, ToolError> {
        self.tpm.write("challenge.cred", &challenge.to_tpm2_tools());
        match self.tpm.activate("challenge.cred") {
            (true, secret, _) => Ok(secret),
            (false, _, err) => Err(ToolError(format!("tpm2_activatecredential: {err}"))),
        }
    }

    fn quote(
        &mut self,
        nonce: &[u8],
        pcrs: &[u32],
    ) -> Result<zone_attest::protocol::RawQuote, ToolError> {
        let mut sorted = pcrs.to_vec();
        sorted.sort_unstable();
        let list = sorted
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        // PCR values come from tpm2_quote's YAML on stdout; quote.pcrs keeps tpm2-tools' own
        // serialized form for tpm2_checkquote (its `-F values` reader takes at most 8 PCRs).
        let (ok, out, err) = self.tpm.tool_status(&[
            "tpm2_quote",
            "-c",
            "ak.ctx",
            "-l",
            &format!("sha256:{list}"),
            "-q",
            &hex_str(nonce),
            "-m",
            "quote.msg",
            "-s",
            "quote.sig",
            "-o",
            "quote.pcrs",
            "-g",
            "sha256",
        ]);
        if !ok {
            return Err(ToolError(format!("tpm2_quote: {err}")));
        }
        let mut pcrs = std::collections::BTreeMap::new();
        for line in out.lines() {
            let Some((idx, val)) = line.trim().split_once(':') else {
                continue;
            };
            let (Ok(idx), Some(val)) = (idx.trim().parse::<u32>(), val.trim().strip_prefix("0x"))
            else {
                continue;
            };
            let bytes = hex::decode(val).map_err(|e| ToolError(format!("PCR {idx}: {e}")))?;
            let value = <[u8; 32]>::try_from(bytes.as_slice())
                .map_err(|_| ToolError(format!("PCR {idx}: not SHA-256")))?;
            pcrs.insert(idx, value);
        }
        if pcrs.keys().copied().collect::<Vec<_>>() != sorted {
            return Err(ToolError(format!(
                "tpm2_quote printed PCRs {:?}",
                pcrs.keys()
            )));
        }
        Ok(zone_attest::protocol::RawQuote {
            attest: self.tpm.read("quote.msg"),
            signature: self.tpm.read("quote.sig"),
            pcrs,
        })
    }

    fn event_log(&mut self) -> Result<Vec<u8>, ToolError> {
        Ok(self.log.clone())
    }
}
