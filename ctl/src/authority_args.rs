//! The options of `zonectl run` that say where this host's identity authority keeps its
//! policy and keys, and where the zone CA that certifies zone TPMs lives.

use std::path::PathBuf;

use zone_identity::config::{DEFAULT_CA_DIR, DEFAULT_IDENTITY_DIR, DEFAULT_POLICY};
use zone_identity::host_tpm::HostTpmSpec;

#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Workload identity (SPIFFE)")]
pub struct AuthorityArgs {
    /// The registration policy: the trust domain, the SPIFFE ID's path template and the
    /// kernels and initrds a zone must have booted to get an identity (see `zonectl identity
    /// --help`). Without it, the zone's workloads are told the host has no policy.
    #[arg(long, value_name = "FILE", env = "ZONES_IDENTITY_POLICY", default_value = DEFAULT_POLICY)]
    pub identity_policy: PathBuf,
    /// The identity authority's keys and bundles (created on first use), one directory per
    /// trust domain.
    #[arg(long, value_name = "DIR", env = "ZONES_IDENTITY_DIR", default_value = DEFAULT_IDENTITY_DIR)]
    pub identity_dir: PathBuf,
    /// The host's zone CA, which certifies the zone's vTPM before its evidence counts.
    #[arg(long, value_name = "DIR", env = "ZONES_CA_DIR", default_value = DEFAULT_CA_DIR)]
    pub ca_dir: PathBuf,
    /// Where the zone CA's key lives: device:PATH, swtpm:unix:PATH, swtpm:tcp:HOST:PORT or
    /// file. Default: device:/dev/tpmrm0 if it exists, else file (a key file in --ca-dir).
    #[arg(long, value_name = "SPEC", env = "ZONES_HOST_TPM")]
    pub host_tpm: Option<HostTpmSpec>,
}
