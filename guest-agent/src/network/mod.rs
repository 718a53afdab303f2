//! The zone's network (`zone.agent.v1` ConfigureNetwork): the host read a pod's network
//! namespace (a CNI veth: MAC, MTU, addresses, routes, DNS) and sends it; the VMM gave the
//! zone's virtio-net device the veth's MAC, so the agent finds the device by MAC.
//!
//! - [`config`]: the request checked whole into [`NetworkConfig`]; a bad value is refused
//!   (INVALID_ARGUMENT naming the field) and nothing is applied.
//! - [`netlink`]: applying it with rtnetlink: links by MAC (NOT_FOUND naming a missing
//!   one, before anything changes), `lo` up, MTU, name, up, addresses, routes in order. A step
//!   failing part-way is INTERNAL, named.
//! - [`resolv`]: with at least one nameserver, the zone's resolv.conf ([`RESOLV_CONF`]),
//!   which containers created afterwards get as their read-only /etc/resolv.conf (unless
//!   their spec mounts one: see `container::volumes::mount_zone_file`).
//!
//! Once per zone: a second call is FAILED_PRECONDITION. A call refused before it changed
//! anything (bad value, missing interface) does not count.

pub mod config;
pub mod netlink;
pub mod resolv;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::Mutex;
use zone_proto::agent::v1::ConfigureNetworkRequest;

pub use config::{ConfigError, DnsConfig, InterfaceConfig, IpCidr, MacAddr, NetworkConfig};
pub use netlink::ApplyError;

use crate::request_error::{report, RequestError};

/// The zone's resolv.conf, beside the containers' directories (`/run` is the agent's
/// tmpfs).
pub const RESOLV_CONF: &str = "/run/zone/resolv.conf";
/// How long an interface may take to appear (a virtio-net device still probing).
pub const LINK_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("network already configured")]
    AlreadyConfigured,
    #[error(
        "network configuration failed part-way before ({0}); the zone's network is as that left it"
    )]
    FailedBefore(String),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("writing {0}")]
    ResolvConf(PathBuf, #[source] io::Error),
}

impl From<NetworkError> for RequestError {
    fn from(error: NetworkError) -> Self {
        let message = report(&error);
        match error {
            NetworkError::Config(_) => RequestError::InvalidArgument(message),
            NetworkError::AlreadyConfigured | NetworkError::FailedBefore(_) => {
                RequestError::FailedPrecondition(message)
            }
            NetworkError::Apply(ApplyError::LinkNotFound { .. }) => RequestError::NotFound(message),
            NetworkError::Apply(_) | NetworkError::ResolvConf(..) => {
                RequestError::Internal(message)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Unconfigured,
    Configured,
    /// Failed after changing something; the message says where.
    Failed(String),
}

/// The zone's network: configured at most once.
#[derive(Debug)]
pub struct Network {
    resolv_conf: PathBuf,
    link_wait: Duration,
    /// Held for a whole configuration: a concurrent second call waits, then is refused.
    state: Mutex<State>,
}

impl Network {
    /// A network whose resolv.conf goes to `resolv_conf`.
    pub fn new(resolv_conf: PathBuf) -> Self {
        Network {
            resolv_conf,
            link_wait: LINK_WAIT,
            state: Mutex::new(State::Unconfigured),
        }
    }

    /// The zone's: resolv.conf at [`RESOLV_CONF`].
    pub fn zone() -> Self {
        Network::new(PathBuf::from(RESOLV_CONF))
    }

    /// Waits `wait` (instead of [`LINK_WAIT`]) for interfaces to appear.
    pub fn with_link_wait(mut self, wait: Duration) -> Self {
        self.link_wait = wait;
        self
    }

    /// Where the resolv.conf goes.
    pub fn resolv_conf(&self) -> &Path {
        &self.resolv_conf
    }

    /// Checks and applies `request` in the calling thread's network namespace; returns the
    /// resolv.conf written, if the request had a nameserver.
    pub async fn configure(
        &self,
        request: &ConfigureNetworkRequest,
    ) -> Result<Option<PathBuf>, NetworkError> {
        let config = NetworkConfig::try_from(request)?;
        let mut state = self.state.lock().await;
        match &*state {
            State::Unconfigured => {}
            State::Configured => return Err(NetworkError::AlreadyConfigured),
            State::Failed(reason) => return Err(NetworkError::FailedBefore(reason.clone())),
        }
        let outcome = self.apply(&config).await;
        match &outcome {
            Ok(_) => *state = State::Configured,
            Err(NetworkError::Apply(e)) if !e.changed_anything() => {}
            Err(e) => *state = State::Failed(report(e)),
        }
        match &outcome {
            Ok(resolv_conf) => tracing::info!(
                interfaces = config.interfaces.len(),
                routes = config.routes.len(),
                resolv_conf = ?resolv_conf,
                "network configured"
            ),
            Err(e) => tracing::warn!(error = %report(e), "network configuration failed"),
        }
        outcome
    }

    async fn apply(&self, config: &NetworkConfig) -> Result<Option<PathBuf>, NetworkError> {
        netlink::apply(config, self.link_wait).await?;
        let Some(dns) = &config.dns else {
            return Ok(None);
        };
        resolv::write(&self.resolv_conf, &resolv::render(dns))
            .map_err(|e| NetworkError::ResolvConf(self.resolv_conf.clone(), e))?;
        Ok(Some(self.resolv_conf.clone()))
    }
}
