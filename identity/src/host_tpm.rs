//! Where the host's zone CA key lives: `--host-tpm SPEC` / `ZONES_HOST_TPM`.
//!
//! | SPEC | the CA key |
//! |---|---|
//! | `device:PATH` | in the TPM behind a character device (`device:/dev/tpmrm0`) |
//! | `swtpm:unix:PATH` | in a TPM serving raw commands on a Unix socket (swtpm's `--server type=unixio,path=PATH`) |
//! | `swtpm:tcp:HOST:PORT` | the same over TCP (swtpm's `--server type=tcp,port=PORT`) |
//! | `file` | in the PKCS#8 file `zone-ca-key.pem` of the CA directory (the weaker fallback) |
//!
//! Without a SPEC: `/dev/tpmrm0` if it exists, else `file` (with a warning saying what is weaker).
//! A TPM key is the owner-hierarchy primary key of zone-attest's CA template, derived again on
//! every use: nothing but the CA certificate is kept on disk.

use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Context as _;
use zone_attest::device_attester::{DeviceTransport, TPMRM_DEVICE};
use zone_attest::tpm_ca_signer::TpmCaSigner;
use zone_attest::tpm_socket::{SocketAddress, SocketTransport};
use zone_attest::zone_ca::{CaSigner, FileCaSigner, ZoneCa, KEY_FILE};

/// Where the zone CA key lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostTpmSpec {
    /// A TPM character device.
    Device(PathBuf),
    /// A TPM serving raw commands on a socket (swtpm's server channel).
    Swtpm(SocketAddress),
    /// No TPM: a key file in the CA directory.
    File,
}

const SYNTAX: &str = "device:PATH, swtpm:unix:PATH, swtpm:tcp:HOST:PORT or file";

impl FromStr for HostTpmSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("host TPM {s:?}: {why} (expected {SYNTAX})");
        if s == "file" {
            return Ok(HostTpmSpec::File);
        }
        if let Some(path) = s.strip_prefix("device:") {
            if path.is_empty() {
                return Err(bad("no device path"));
            }
            return Ok(HostTpmSpec::Device(PathBuf::from(path)));
        }
        if let Some(path) = s.strip_prefix("swtpm:unix:") {
            if path.is_empty() {
                return Err(bad("no socket path"));
            }
            return Ok(HostTpmSpec::Swtpm(SocketAddress::Unix(PathBuf::from(path))));
        }
        if let Some(addr) = s.strip_prefix("swtpm:tcp:") {
            let Some((host, port)) = addr.rsplit_once(':') else {
                return Err(bad("no port"));
            };
            if host.is_empty() {
                return Err(bad("no host"));
            }
            match port.parse::<u16>() {
                Ok(p) if p != 0 => {}
                _ => return Err(bad("the port is not 1 to 65535")),
            }
            return Ok(HostTpmSpec::Swtpm(SocketAddress::Tcp(addr.to_string())));
        }
        Err(bad("unknown kind"))
    }
}

impl std::fmt::Display for HostTpmSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostTpmSpec::Device(p) => write!(f, "device:{}", p.display()),
            HostTpmSpec::Swtpm(a) => write!(f, "swtpm:{a}"),
            HostTpmSpec::File => f.write_str("file"),
        }
    }
}

/// The spec to use: `given`, else the device `default_device` if it exists, else `file`.
pub fn choose(given: Option<HostTpmSpec>, default_device: &Path) -> HostTpmSpec {
    match given {
        Some(spec) => spec,
        None if default_device.exists() => HostTpmSpec::Device(default_device.to_path_buf()),
        None => HostTpmSpec::File,
    }
}

/// [`choose`] with the kernel's resource-managed TPM as the default.
pub fn choose_default(given: Option<HostTpmSpec>) -> HostTpmSpec {
    choose(given, Path::new(TPMRM_DEVICE))
}

/// What a file-backed CA key gives up, for the warning.
pub fn file_key_warning(key: &Path) -> String {
    format!(
        "no host TPM: the zone CA's key is the file {}. That is weaker than a key in a TPM: \
         anyone who can read the file (root on this host, a backup, a copy of the disk) can \
         copy the key and issue EK and AK certificates for any zone, from any machine, and \
         nothing ties the CA to this host's hardware. Give --host-tpm (or ZONES_HOST_TPM) to \
         keep the key in a TPM ({SYNTAX})",
        key.display()
    )
}

/// Opens the CA signer `spec` names; a key file lives in `ca_dir` (created 0700 if absent).
pub fn open_signer(spec: &HostTpmSpec, ca_dir: &Path) -> anyhow::Result<Box<dyn CaSigner>> {
    Ok(match spec {
        HostTpmSpec::Device(path) => {
            let transport = DeviceTransport::open(path).with_context(|| {
                format!(
                    "opening the host TPM {} (give --host-tpm file to use a key file instead)",
                    path.display()
                )
            })?;
            Box::new(
                TpmCaSigner::new(transport)
                    .with_context(|| format!("deriving the zone CA key in {spec}"))?
                    .named(spec.to_string()),
            )
        }
        HostTpmSpec::Swtpm(addr) => Box::new(
            TpmCaSigner::new(SocketTransport::new(addr.clone()))
                .with_context(|| format!("deriving the zone CA key in {spec}"))?
                .named(spec.to_string()),
        ),
        HostTpmSpec::File => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(ca_dir)
                .with_context(|| format!("creating {}", ca_dir.display()))?;
            Box::new(FileCaSigner::load_or_create(&ca_dir.join(KEY_FILE))?)
        }
    })
}

/// Opens the host's zone CA in `ca_dir` (created on first use) with `signer` holding its key.
pub fn open_zone_ca(
    ca_dir: &Path,
    host_id: &str,
    signer: Box<dyn CaSigner>,
) -> anyhow::Result<ZoneCa<Box<dyn CaSigner>>> {
    ZoneCa::open_or_create_with(ca_dir, host_id, signer)
        .with_context(|| format!("opening the zone CA in {}", ca_dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<HostTpmSpec, String> {
        s.parse()
    }

    #[test]
    fn test_host_tpm_spec_parses_each_kind_and_round_trips() {
        for (text, want) in [
            (
                "device:/dev/tpmrm0",
                HostTpmSpec::Device("/dev/tpmrm0".into()),
            ),
            (
                "swtpm:unix:/run/host-tpm/server.sock",
                HostTpmSpec::Swtpm(SocketAddress::Unix("/run/host-tpm/server.sock".into())),
            ),
            (
                "swtpm:tcp:127.0.0.1:2321",
                HostTpmSpec::Swtpm(SocketAddress::Tcp("127.0.0.1:2321".into())),
            ),
            (
                "swtpm:tcp:[::1]:2321",
                HostTpmSpec::Swtpm(SocketAddress::Tcp("[::1]:2321".into())),
            ),
            ("file", HostTpmSpec::File),
        ] {
            let got = parse(text).expect(text);
            assert_eq!(got, want);
            assert_eq!(got.to_string(), text);
        }
    }

    #[test]
    fn test_host_tpm_spec_bad_text_refused_with_the_syntax() {
        for text in [
            "",
            "tpm",
            "/dev/tpmrm0",
            "device:",
            "swtpm:",
            "swtpm:unix:",
            "swtpm:tcp:",
            "swtpm:tcp:localhost",
            "swtpm:tcp::2321",
            "swtpm:tcp:localhost:0",
            "swtpm:tcp:localhost:65536",
            "swtpm:tcp:localhost:port",
            "swtpm:udp:localhost:2321",
        ] {
            let e = parse(text).expect_err(text);
            assert!(e.contains("swtpm:tcp:HOST:PORT"), "{text}: {e}");
        }
    }

    #[test]
    fn test_host_tpm_choose_device_if_present_else_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dev = dir.path().join("tpmrm0");
        assert_eq!(choose(None, &dev), HostTpmSpec::File);
        std::fs::write(&dev, b"").expect("fake device");
        assert_eq!(choose(None, &dev), HostTpmSpec::Device(dev.clone()));
        assert_eq!(
            choose(Some(HostTpmSpec::File), &dev),
            HostTpmSpec::File,
            "an explicit choice wins"
        );
    }

    #[test]
    fn test_host_tpm_file_signer_and_warning() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_dir = dir.path().join("ca");
        let signer = open_signer(&HostTpmSpec::File, &ca_dir).expect("file signer");
        assert!(signer.describe().contains(KEY_FILE));
        assert!(ca_dir.join(KEY_FILE).exists());
        let w = file_key_warning(&ca_dir.join(KEY_FILE));
        assert!(w.contains("anyone who can read the file") && w.contains("--host-tpm"));
        // A socket nobody serves: the error names the spec.
        let spec =
            parse(&format!("swtpm:unix:{}", dir.path().join("none").display())).expect("spec");
        let e = open_signer(&spec, &ca_dir).expect_err("no TPM there");
        assert!(format!("{e:#}").contains("swtpm:unix:"), "{e:#}");
    }
}
