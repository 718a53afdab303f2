//! Where the shim finds the zone's kernel, initrd and VMM, and how big zones are.
//!
//! Sources, later ones winning: built-in defaults; a TOML file (its path from the runtime's
//! options, `ConfigPath` in containerd's `[...runtimes.zone.options]`, or env
//! `ZONES_SHIM_CONFIG`); the environment (`ZONES_KERNEL`, `ZONES_INITRD` as for zonectl, and
//! `ZONES_VMM`). The VMM defaults to `zone-vmm` next to the shim's executable, else on PATH.
//! The identity authority's settings (`identity_policy`, `identity_dir`, `ca_dir` in the
//! file) follow zonectl's environment: `ZONES_IDENTITY_POLICY`, `ZONES_IDENTITY_DIR`,
//! `ZONES_CA_DIR`, `ZONES_HOST_TPM`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;
use zone_identity::config::{
    DEFAULT_CA_DIR, DEFAULT_IDENTITY_DIR, DEFAULT_POLICY, ENV_CA_DIR, ENV_HOST_TPM,
    ENV_IDENTITY_DIR, ENV_POLICY,
};
use zone_identity::AuthorityConfig;

/// Zone state directories, as zonectl's (`zonectl ps` skips those without its state file).
pub const DEFAULT_STATE_ROOT: &str = "/run/zones";
/// Container root file system images.
pub const DEFAULT_DISK_ROOT: &str = "/var/lib/zones/shim";

#[derive(Debug, Error)]
pub enum SettingsError {
    #[error("reading {0}")]
    Read(PathBuf, #[source] std::io::Error),
    #[error("parsing {0}")]
    Parse(PathBuf, #[source] toml::de::Error),
    #[error("no zone kernel: set ZONES_KERNEL or `kernel` in the shim's config file")]
    NoKernel,
    #[error("no zone initrd: set ZONES_INITRD or `initrd` in the shim's config file")]
    NoInitrd,
    #[error("{what} not found: {path}")]
    Missing { what: &'static str, path: PathBuf },
    #[error("ZONES_HOST_TPM: {0}")]
    HostTpm(String),
}

/// The TOML file's shape; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    kernel: Option<PathBuf>,
    initrd: Option<PathBuf>,
    vmm: Option<PathBuf>,
    memory_mib: Option<u64>,
    cpus: Option<u32>,
    spare_disks: Option<u32>,
    spare_disk_mib: Option<u64>,
    state_root: Option<PathBuf>,
    disk_root: Option<PathBuf>,
    tpm: Option<bool>,
    identity_policy: Option<PathBuf>,
    identity_dir: Option<PathBuf>,
    ca_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub vmm: PathBuf,
    pub memory_mib: u64,
    pub cpus: u32,
    /// Empty disks a pod's zone starts with, for the pod's later containers (the VMM attaches
    /// disks only at start).
    pub spare_disks: u32,
    pub spare_disk_mib: u64,
    pub state_root: PathBuf,
    pub disk_root: PathBuf,
    /// Each pod's zone gets a vTPM (swtpm, run by the VMM), which its workload identity
    /// needs; `tpm = false` in the file does without.
    pub tpm: bool,
    /// This host's identity authority (the same settings and environment as zonectl's).
    pub authority: AuthorityConfig,
}

impl Settings {
    /// Reads the settings; `config_path` from the runtime options, if any.
    pub fn load(config_path: Option<&Path>) -> Result<Settings, SettingsError> {
        let env_path = std::env::var_os("ZONES_SHIM_CONFIG").map(PathBuf::from);
        let file = match config_path.map(Path::to_path_buf).or(env_path) {
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| SettingsError::Read(path.clone(), e))?;
                toml::from_str(&text).map_err(|e| SettingsError::Parse(path, e))?
            }
            None => File::default(),
        };
        let env = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let settings = Settings {
            kernel: env("ZONES_KERNEL")
                .or(file.kernel)
                .ok_or(SettingsError::NoKernel)?,
            initrd: env("ZONES_INITRD")
                .or(file.initrd)
                .ok_or(SettingsError::NoInitrd)?,
            vmm: env("ZONES_VMM").or(file.vmm).unwrap_or_else(default_vmm),
            memory_mib: file.memory_mib.unwrap_or(256),
            cpus: file.cpus.unwrap_or(1),
            spare_disks: file.spare_disks.unwrap_or(4),
            spare_disk_mib: file.spare_disk_mib.unwrap_or(1024),
            state_root: file.state_root.unwrap_or_else(|| DEFAULT_STATE_ROOT.into()),
            disk_root: file.disk_root.unwrap_or_else(|| DEFAULT_DISK_ROOT.into()),
            tpm: file.tpm.unwrap_or(true),
            authority: AuthorityConfig {
                policy: env(ENV_POLICY)
                    .or(file.identity_policy)
                    .unwrap_or_else(|| DEFAULT_POLICY.into()),
                identity_dir: env(ENV_IDENTITY_DIR)
                    .or(file.identity_dir)
                    .unwrap_or_else(|| DEFAULT_IDENTITY_DIR.into()),
                ca_dir: env(ENV_CA_DIR)
                    .or(file.ca_dir)
                    .unwrap_or_else(|| DEFAULT_CA_DIR.into()),
                host_tpm: std::env::var(ENV_HOST_TPM)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .map(|v| v.parse().map_err(SettingsError::HostTpm))
                    .transpose()?,
            },
        };
        for (what, path) in [
            ("zone kernel", &settings.kernel),
            ("zone initrd", &settings.initrd),
        ] {
            if !path.is_file() {
                return Err(SettingsError::Missing {
                    what,
                    path: path.clone(),
                });
            }
        }
        Ok(settings)
    }
}

/// `zone-vmm` next to the shim's executable, else whatever `zone-vmm` is on PATH.
fn default_vmm() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("zone-vmm")))
        .filter(|candidate| candidate.is_file())
        .unwrap_or_else(|| PathBuf::from("zone-vmm"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_file_unknown_key_refused() {
        let err = toml::from_str::<File>("kernal = \"/k\"").unwrap_err();
        assert!(err.to_string().contains("kernal"), "{err}");
    }

    #[test]
    fn test_file_all_keys_parse() {
        let file: File = toml::from_str(
            "kernel = \"/k\"\ninitrd = \"/i\"\nmemory_mib = 512\ncpus = 2\nspare_disks = 2\n",
        )
        .unwrap();
        assert_eq!(
            (file.memory_mib, file.cpus, file.spare_disks),
            (Some(512), Some(2), Some(2))
        );
    }

    #[test]
    fn test_file_tpm_and_identity_keys_parse_and_bad_types_refused() {
        let file: File = toml::from_str(
            "tpm = false\nidentity_policy = \"/p.json\"\nidentity_dir = \"/id\"\nca_dir = \"/ca\"\n",
        )
        .unwrap();
        assert_eq!(file.tpm, Some(false));
        assert_eq!(file.identity_policy.as_deref(), Some(Path::new("/p.json")));
        assert_eq!(file.identity_dir.as_deref(), Some(Path::new("/id")));
        assert_eq!(file.ca_dir.as_deref(), Some(Path::new("/ca")));
        let err = toml::from_str::<File>("tpm = \"yes\"").unwrap_err();
        assert!(err.to_string().contains("tpm"), "{err}");
    }
}
