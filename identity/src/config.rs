//! Where this host's identity authority keeps its policy and keys, and the zone CA: the same
//! defaults and environment variables for zonectl and the shim.

use std::path::PathBuf;

use crate::host_tpm::HostTpmSpec;

/// The registration policy unless configured otherwise.
pub const DEFAULT_POLICY: &str = "/etc/zones/identity-policy.json";
/// The identity authority's keys and bundles unless configured otherwise.
pub const DEFAULT_IDENTITY_DIR: &str = "/var/lib/zones/identity";
/// The host's zone CA unless configured otherwise.
pub const DEFAULT_CA_DIR: &str = "/var/lib/zones/ca";
pub const ENV_POLICY: &str = "ZONES_IDENTITY_POLICY";
pub const ENV_IDENTITY_DIR: &str = "ZONES_IDENTITY_DIR";
pub const ENV_CA_DIR: &str = "ZONES_CA_DIR";
pub const ENV_HOST_TPM: &str = "ZONES_HOST_TPM";

/// Where this host's identity authority keeps its policy and keys, and the zone CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorityConfig {
    /// The registration policy (JSON); a zone is refused when it does not exist.
    pub policy: PathBuf,
    /// The authority's keys and bundles, one directory per trust domain.
    pub identity_dir: PathBuf,
    /// The zone CA, which certifies the zone's vTPM.
    pub ca_dir: PathBuf,
    /// Where the zone CA's key lives (default: the host's TPM if it has one, else a file).
    pub host_tpm: Option<HostTpmSpec>,
}
