//! Zone configuration: what a user writes (command line flags or a TOML file) and the checked
//! form the VMM builds from. Parsing and checking live here so that every bad value gets an
//! error naming the setting, before anything is created.

mod net;

use std::path::{Path, PathBuf};

use serde::Deserialize;
use zone_attest::measurements::{PlatformConfig, ZoneClaims, CLAIM_KEYS};

pub use net::{MacAddr, NetBackend, NetConfig, ZoneNet, DEFAULT_MTU};

/// Kernel command line used when none is given.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=k panic=-1 quiet";
pub const DEFAULT_MEMORY_MIB: u64 = 256;
/// Smallest zone: a tinyconfig kernel and its initrd need a few MiB of working room.
pub const MIN_MEMORY_MIB: u64 = 16;
/// Largest zone: guest physical addresses beyond 1 TiB need more page-table setup.
pub const MAX_MEMORY_MIB: u64 = 1 << 20;
pub use crate::arch::x86_64::acpi::layout::MAX_VCPUS;
/// Guest CIDs 0-2 are reserved (hypervisor, local, host); u32::MAX is "any".
pub const DEFAULT_GUEST_CID: u64 = 3;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("no kernel given (use --kernel PATH or `kernel = \"...\"` in the config file)")]
    MissingKernel,
    #[error("{what} {path}: {reason}")]
    BadPath {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("memory {0:?}: expected a size such as 256M, 1G or 512 (MiB)")]
    BadSize(String),
    #[error("memory must be between {MIN_MEMORY_MIB} MiB and {MAX_MEMORY_MIB} MiB, got {0} MiB")]
    MemoryOutOfRange(u64),
    #[error("cpus must be between 1 and {MAX_VCPUS}, got {0}")]
    CpusOutOfRange(u64),
    #[error("disk {0:?}: expected PATH or PATH,ro")]
    BadDiskSpec(String),
    #[error("vsock guest CID {0} is reserved; use 3 or more")]
    BadGuestCid(u64),
    #[error("cannot read config file {path}: {reason}")]
    ReadFile { path: PathBuf, reason: String },
    #[error("config file {path}: {reason}")]
    ParseFile { path: PathBuf, reason: String },
    #[error("zone claim {0:?}: expected KEY=VALUE with KEY one of {keys}", keys = CLAIM_KEYS.join(", "))]
    BadClaim(String),
    #[error("zone claim {0:?}: the value must be at most {MAX_CLAIM_LEN} printable characters")]
    BadClaimValue(String),
    #[error("net {spec:?}: {reason}; expected tap=NAME|fd=N[,mac=aa:bb:cc:dd:ee:ff][,mtu=N]")]
    BadNetSpec { spec: String, reason: String },
    #[error("net: give exactly one of tap=NAME or fd=N")]
    NetBackend,
    #[error("net tap name {0:?}: expected 1 to 15 printable characters without '/' or ':'")]
    BadTapName(String),
    #[error("net fd={0}: expected an inherited descriptor number of 3 or more (0-2 are stdio)")]
    BadNetFd(i64),
    #[error("net mac {0:?}: expected six hex bytes such as 02:00:00:00:00:01")]
    BadMac(String),
    #[error("net mac {0}: not a unicast address (zero, or the multicast bit is set)")]
    NotUnicastMac(String),
    #[error("net mac: cannot pick a random address: {0}")]
    RandomMac(String),
    #[error("net mtu {0}: must be between 68 and 65535")]
    BadMtu(u64),
}

/// Longest zone claim value.
pub const MAX_CLAIM_LEN: usize = 512;
/// The TPM interface zones get.
pub const TPM_INTERFACE: &str = "crb";

/// The zone's vTPM as written: a swtpm the VMM starts, with its state in `state_dir`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmConfig {
    /// swtpm's state directory. Created if missing, and then removed when the zone ends; an
    /// existing directory (a provisioned vTPM) is used and kept.
    pub state_dir: PathBuf,
    /// Where to write the measured-boot event log (also in guest memory for the kernel).
    #[serde(default)]
    pub event_log: Option<PathBuf>,
    /// Where to write the endorsement key's `TPM2B_PUBLIC`, read from the vTPM before the
    /// first vCPU runs (for the zone CA's EK certificate).
    #[serde(default)]
    pub ek_public: Option<PathBuf>,
    /// The swtpm binary [default: `swtpm` from PATH].
    #[serde(default)]
    pub swtpm: Option<PathBuf>,
    /// Zone claims for PCR 15, `KEY=VALUE`.
    #[serde(default)]
    pub claims: Vec<String>,
}

/// A checked vTPM configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneTpm {
    pub state_dir: PathBuf,
    pub event_log: Option<PathBuf>,
    pub ek_public: Option<PathBuf>,
    pub swtpm: PathBuf,
    pub claims: ZoneClaims,
}

impl TryFrom<TpmConfig> for ZoneTpm {
    type Error = ConfigError;

    fn try_from(raw: TpmConfig) -> Result<Self, ConfigError> {
        let mut claims = ZoneClaims::default();
        for spec in &raw.claims {
            let (key, value) = spec
                .split_once('=')
                .ok_or_else(|| ConfigError::BadClaim(spec.clone()))?;
            if value.len() > MAX_CLAIM_LEN || value.chars().any(char::is_control) {
                return Err(ConfigError::BadClaimValue(spec.clone()));
            }
            if !claims.set(key, value) {
                return Err(ConfigError::BadClaim(spec.clone()));
            }
        }
        if let Some(log) = &raw.event_log {
            check_parent_dir("event log", log)?;
        }
        if let Some(ek) = &raw.ek_public {
            check_parent_dir("EK public file", ek)?;
        }
        check_parent_dir("vTPM state directory", &raw.state_dir)?;
        Ok(Self {
            state_dir: raw.state_dir,
            event_log: raw.event_log,
            ek_public: raw.ek_public,
            swtpm: raw.swtpm.unwrap_or_else(|| "swtpm".into()),
            claims,
        })
    }
}

fn check_parent_dir(what: &'static str, path: &Path) -> Result<(), ConfigError> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    match parent {
        Some(parent) if !parent.is_dir() => Err(ConfigError::BadPath {
            what,
            path: path.to_path_buf(),
            reason: "its directory does not exist".into(),
        }),
        _ => Ok(()),
    }
}

/// A virtio-blk disk backed by a raw image file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskConfig {
    pub path: PathBuf,
    #[serde(default)]
    pub read_only: bool,
}

impl std::str::FromStr for DiskConfig {
    type Err = ConfigError;
    /// `PATH` or `PATH,ro` (or `PATH,rw`).
    fn from_str(spec: &str) -> Result<Self, ConfigError> {
        let (path, read_only) = match spec.rsplit_once(',') {
            Some((path, "ro")) => (path, true),
            Some((path, "rw")) => (path, false),
            Some(_) => return Err(ConfigError::BadDiskSpec(spec.to_string())),
            None => (spec, false),
        };
        if path.is_empty() {
            return Err(ConfigError::BadDiskSpec(spec.to_string()));
        }
        Ok(Self {
            path: path.into(),
            read_only,
        })
    }
}

/// The zone's vsock device: guest CID and the host-side Unix socket.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VsockConfig {
    #[serde(default = "default_cid")]
    pub guest_cid: u64,
    pub socket: PathBuf,
}

fn default_cid() -> u64 {
    DEFAULT_GUEST_CID
}

/// Where the serial console goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsoleConfig {
    Stdout,
    File(PathBuf),
    Off,
}

/// Settings as written, every one optional; the config file and the flags each give one.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub cmdline: Option<String>,
    pub memory: Option<String>,
    pub cpus: Option<u64>,
    #[serde(default, rename = "disk")]
    pub disks: Vec<DiskConfig>,
    pub vsock: Option<VsockConfig>,
    pub net: Option<NetConfig>,
    pub serial_log: Option<PathBuf>,
    pub console_off: Option<bool>,
    pub tpm: Option<TpmConfig>,
}

impl RawConfig {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::ReadFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::ParseFile {
            path: path.to_path_buf(),
            reason: e.message().to_string(),
        })
    }

    /// Settings in `over` win; disks from both are kept.
    pub fn overlay(mut self, over: RawConfig) -> Self {
        self.kernel = over.kernel.or(self.kernel);
        self.initrd = over.initrd.or(self.initrd);
        self.cmdline = over.cmdline.or(self.cmdline);
        self.memory = over.memory.or(self.memory);
        self.cpus = over.cpus.or(self.cpus);
        self.disks.extend(over.disks);
        self.vsock = over.vsock.or(self.vsock);
        self.net = over.net.or(self.net);
        self.serial_log = over.serial_log.or(self.serial_log);
        self.console_off = over.console_off.or(self.console_off);
        self.tpm = over.tpm.or(self.tpm);
        self
    }
}

/// A checked zone configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneConfig {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    pub memory_mib: u64,
    pub vcpus: u8,
    pub disks: Vec<DiskConfig>,
    pub vsock: Option<VsockConfig>,
    pub net: Option<ZoneNet>,
    pub console: ConsoleConfig,
    pub tpm: Option<ZoneTpm>,
}

impl ZoneConfig {
    /// The virtual hardware as measured into PCR 1.
    pub fn platform_config(&self) -> PlatformConfig {
        PlatformConfig {
            vcpus: u32::from(self.vcpus),
            memory_mib: self.memory_mib,
            disks_read_only: self.disks.iter().map(|d| d.read_only).collect(),
            vsock_cid: self.vsock.as_ref().map(|v| v.guest_cid),
            rng: true,
            tpm: self.tpm.as_ref().map(|_| TPM_INTERFACE.to_string()),
        }
    }
}

/// Parses `256M`, `1G`, `1024K` or a bare number of MiB into MiB.
pub fn parse_memory_mib(text: &str) -> Result<u64, ConfigError> {
    let bad = || ConfigError::BadSize(text.to_string());
    let t = text.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let mib = match unit
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" | "M" => Some(n),
        "G" => n.checked_mul(1024),
        "K" if n.is_multiple_of(1024) => Some(n / 1024),
        _ => None,
    };
    mib.ok_or_else(bad)
}

fn check_file(what: &'static str, path: &Path) -> Result<(), ConfigError> {
    let bad = |reason: String| ConfigError::BadPath {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    if !meta.is_file() {
        return Err(bad("not a regular file".into()));
    }
    Ok(())
}

impl TryFrom<RawConfig> for ZoneConfig {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, ConfigError> {
        let kernel = raw.kernel.ok_or(ConfigError::MissingKernel)?;
        check_file("kernel", &kernel)?;
        if let Some(initrd) = &raw.initrd {
            check_file("initrd", initrd)?;
        }
        let memory_mib = match &raw.memory {
            Some(text) => parse_memory_mib(text)?,
            None => DEFAULT_MEMORY_MIB,
        };
        if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&memory_mib) {
            return Err(ConfigError::MemoryOutOfRange(memory_mib));
        }
        let cpus = raw.cpus.unwrap_or(1);
        let vcpus = u8::try_from(cpus)
            .ok()
            .filter(|n| (1..=MAX_VCPUS).contains(n))
            .ok_or(ConfigError::CpusOutOfRange(cpus))?;
        for disk in &raw.disks {
            check_file("disk", &disk.path)?;
        }
        if let Some(vsock) = &raw.vsock {
            if vsock.guest_cid < 3 || vsock.guest_cid >= u64::from(u32::MAX) {
                return Err(ConfigError::BadGuestCid(vsock.guest_cid));
            }
            let parent = vsock.socket.parent().filter(|p| !p.as_os_str().is_empty());
            if let Some(parent) = parent {
                if !parent.is_dir() {
                    return Err(ConfigError::BadPath {
                        what: "vsock socket",
                        path: vsock.socket.clone(),
                        reason: "its directory does not exist".into(),
                    });
                }
            }
        }
        let console = match (raw.console_off, raw.serial_log) {
            (Some(true), _) => ConsoleConfig::Off,
            (_, Some(path)) => ConsoleConfig::File(path),
            _ => ConsoleConfig::Stdout,
        };
        Ok(Self {
            kernel,
            initrd: raw.initrd,
            cmdline: raw.cmdline.unwrap_or_else(|| DEFAULT_CMDLINE.to_string()),
            memory_mib,
            vcpus,
            disks: raw.disks,
            vsock: raw.vsock,
            net: raw.net.map(ZoneNet::try_from).transpose()?,
            console,
            tpm: raw.tpm.map(ZoneTpm::try_from).transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_with_kernel() -> (tempfile::NamedTempFile, RawConfig) {
        let kernel = tempfile::NamedTempFile::new().expect("tmp");
        let raw = RawConfig {
            kernel: Some(kernel.path().to_path_buf()),
            ..Default::default()
        };
        (kernel, raw)
    }

    #[test]
    fn test_parse_memory_mib_units() {
        assert_eq!(parse_memory_mib("256"), Ok(256));
        assert_eq!(parse_memory_mib("256M"), Ok(256));
        assert_eq!(parse_memory_mib("2G"), Ok(2048));
        assert_eq!(parse_memory_mib("1GiB"), Ok(1024));
        assert_eq!(parse_memory_mib("2048K"), Ok(2));
        for bad in ["", "M", "-1", "1.5G", "12X", "1000K"] {
            assert!(parse_memory_mib(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn test_disk_spec_parses_ro_and_rejects_junk() {
        let d: DiskConfig = "/a/b.img,ro".parse().expect("parse");
        assert_eq!((d.path.to_str(), d.read_only), (Some("/a/b.img"), true));
        let d: DiskConfig = "/a/b.img".parse().expect("parse");
        assert!(!d.read_only);
        assert!("/a,readonly".parse::<DiskConfig>().is_err());
        assert!(",ro".parse::<DiskConfig>().is_err());
    }

    #[test]
    fn test_config_defaults_and_range_checks() {
        let (_k, raw) = raw_with_kernel();
        let cfg = ZoneConfig::try_from(raw.clone()).expect("valid");
        assert_eq!((cfg.memory_mib, cfg.vcpus), (DEFAULT_MEMORY_MIB, 1));
        assert_eq!(cfg.console, ConsoleConfig::Stdout);
        let zero = RawConfig {
            memory: Some("0".into()),
            ..raw.clone()
        };
        assert_eq!(
            ZoneConfig::try_from(zero),
            Err(ConfigError::MemoryOutOfRange(0))
        );
        let cpus = RawConfig {
            cpus: Some(0),
            ..raw.clone()
        };
        assert_eq!(
            ZoneConfig::try_from(cpus),
            Err(ConfigError::CpusOutOfRange(0))
        );
        let cpus = RawConfig {
            cpus: Some(300),
            ..raw
        };
        assert_eq!(
            ZoneConfig::try_from(cpus),
            Err(ConfigError::CpusOutOfRange(300))
        );
    }

    #[test]
    fn test_config_missing_paths_named() {
        assert_eq!(
            ZoneConfig::try_from(RawConfig::default()),
            Err(ConfigError::MissingKernel)
        );
        let (_k, raw) = raw_with_kernel();
        let disk = RawConfig {
            disks: vec!["/nonexistent/disk.img".parse().expect("spec")],
            ..raw.clone()
        };
        let err = ZoneConfig::try_from(disk).expect_err("missing disk");
        assert!(
            err.to_string().starts_with("disk /nonexistent/disk.img"),
            "{err}"
        );
        let dir = RawConfig {
            kernel: Some("/".into()),
            ..raw.clone()
        };
        assert!(ZoneConfig::try_from(dir)
            .expect_err("dir")
            .to_string()
            .contains("not a regular file"));
        let vsock = RawConfig {
            vsock: Some(VsockConfig {
                guest_cid: 2,
                socket: "/tmp/v.sock".into(),
            }),
            ..raw
        };
        assert_eq!(
            ZoneConfig::try_from(vsock),
            Err(ConfigError::BadGuestCid(2))
        );
    }

    #[test]
    fn test_tpm_config_toml_ek_public_checked() {
        let raw: TpmConfig =
            toml::from_str("state_dir = \"/tmp/zone-vtpm\"\nek_public = \"/tmp/ek.pub\"\n")
                .expect("toml");
        assert_eq!(raw.ek_public, Some(PathBuf::from("/tmp/ek.pub")));
        let tpm = ZoneTpm::try_from(raw.clone()).expect("valid");
        assert_eq!(tpm.ek_public, Some(PathBuf::from("/tmp/ek.pub")));
        let missing_dir = TpmConfig {
            ek_public: Some("/nonexistent-zones-dir/ek.pub".into()),
            ..raw
        };
        assert!(ZoneTpm::try_from(missing_dir).is_err());
    }

    #[test]
    fn test_tpm_config_claims_checked() {
        let (_k, raw) = raw_with_kernel();
        let with = |claims: &[&str]| RawConfig {
            tpm: Some(TpmConfig {
                state_dir: "/tmp/zone-vtpm-test".into(),
                event_log: None,
                ek_public: None,
                swtpm: None,
                claims: claims.iter().map(|c| c.to_string()).collect(),
            }),
            ..raw.clone()
        };
        let cfg = ZoneConfig::try_from(with(&["zone-id=z1", "oci-config-digest=sha256:ab"]))
            .expect("valid");
        let tpm = cfg.tpm.as_ref().expect("tpm");
        assert_eq!(tpm.claims.zone_id, "z1");
        assert_eq!(tpm.claims.oci_config_digest, "sha256:ab");
        assert_eq!(tpm.swtpm, PathBuf::from("swtpm"));
        assert_eq!(cfg.platform_config().tpm.as_deref(), Some("crb"));
        for bad in ["zone-id", "colour=blue", "zone-id=a\nb"] {
            assert!(ZoneConfig::try_from(with(&[bad])).is_err(), "{bad}");
        }
        let long = format!("zone-id={}", "x".repeat(MAX_CLAIM_LEN + 1));
        assert!(matches!(
            ZoneConfig::try_from(with(&[&long])),
            Err(ConfigError::BadClaimValue(_))
        ));
    }

    #[test]
    fn test_config_file_parses_and_flags_override() {
        let (k, _) = raw_with_kernel();
        let mut file = tempfile::NamedTempFile::new().expect("tmp");
        let text = format!(
            "kernel = {:?}\nmemory = \"1G\"\ncpus = 2\n[[disk]]\npath = {:?}\nread_only = true\n",
            k.path(),
            k.path()
        );
        std::io::Write::write_all(&mut file, text.as_bytes()).expect("write");
        let from_file = RawConfig::from_file(file.path()).expect("parse");
        let flags = RawConfig {
            cpus: Some(4),
            ..Default::default()
        };
        let cfg = ZoneConfig::try_from(from_file.overlay(flags)).expect("valid");
        assert_eq!((cfg.memory_mib, cfg.vcpus, cfg.disks.len()), (1024, 4, 1));
        assert!(cfg.disks[0].read_only);

        std::io::Write::write_all(&mut file, b"bogus_key = 1\n").expect("write");
        let err = RawConfig::from_file(file.path()).expect_err("unknown key");
        assert!(err.to_string().contains("bogus_key"), "{err}");
    }

    #[test]
    fn test_config_file_net_table_parses_and_flag_overrides() {
        let (k, _) = raw_with_kernel();
        let mut file = tempfile::NamedTempFile::new().expect("tmp");
        let text = format!(
            "kernel = {:?}\n[net]\ntap = \"zt0\"\nmac = \"02:00:00:00:00:09\"\nmtu = 9000\n",
            k.path()
        );
        std::io::Write::write_all(&mut file, text.as_bytes()).expect("write");
        let from_file = RawConfig::from_file(file.path()).expect("parse");

        let cfg = ZoneConfig::try_from(from_file.clone()).expect("valid");
        let flags = RawConfig {
            net: Some("fd=5".parse().expect("spec")),
            ..Default::default()
        };
        let over = ZoneConfig::try_from(from_file.overlay(flags)).expect("valid");

        let net = cfg.net.expect("net");
        assert_eq!(net.backend, NetBackend::Tap("zt0".into()));
        assert_eq!(
            (net.mac.to_string(), net.mtu),
            ("02:00:00:00:00:09".into(), 9000)
        );
        assert_eq!(over.net.expect("net").backend, NetBackend::Fd(5));
    }

    #[test]
    fn test_config_file_net_bad_values_named() {
        let (_k, raw) = raw_with_kernel();
        let with = |text: &str| {
            let net: NetConfig = toml::from_str(text).expect("toml");
            ZoneConfig::try_from(RawConfig {
                net: Some(net),
                ..raw.clone()
            })
        };

        assert_eq!(with("mtu = 1500"), Err(ConfigError::NetBackend));
        assert_eq!(with("fd = 1"), Err(ConfigError::BadNetFd(1)));
        assert_eq!(
            with("tap = \"t\"\nmtu = 70000"),
            Err(ConfigError::BadMtu(70000))
        );
        assert!(matches!(
            with("tap = \"t\"\nmac = \"03:00:00:00:00:01\""),
            Err(ConfigError::NotUnicastMac(_))
        ));
        assert!(toml::from_str::<NetConfig>("tap = \"t\"\nspeed = 1").is_err());
    }
}
