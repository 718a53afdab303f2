//! The zone's workload identity while `zonectl` runs it: what zone-identity's authority is
//! told about the zone, from this host's own records.

use std::path::Path;

use zone_identity::{AuthorityConfig, ZoneFacts, ZoneFiles, ZoneIdentity};

use crate::agent_client;
use crate::authority_args::AuthorityArgs;
use crate::cli::RunArgs;
use crate::exec::BOOT_PATIENCE;
use crate::zone_dir::ZoneDir;

/// What the authority needs to know about a zone, fixed before it starts.
#[derive(Debug, Clone)]
pub struct IdentityPlan {
    pub authority: AuthorityConfig,
    /// The host's own record of the zone's name (never the guest's word).
    pub zone_name: Option<String>,
    pub tpm: bool,
}

impl IdentityPlan {
    pub fn new(args: &RunArgs) -> Self {
        let AuthorityArgs {
            identity_policy,
            identity_dir,
            ca_dir,
            host_tpm,
        } = args.identity.clone();
        Self {
            authority: AuthorityConfig {
                policy: identity_policy,
                identity_dir,
                ca_dir,
                host_tpm,
            },
            zone_name: args.name.clone(),
            tpm: !args.no_tpm,
        }
    }
}

/// Starts deciding `zone`'s identity; it stops when the returned handle is dropped.
pub fn start(zone: &ZoneDir, plan: &IdentityPlan) -> ZoneIdentity {
    let facts = ZoneFacts {
        zone_id: zone.id().to_string(),
        zone_name: plan.zone_name.clone(),
        pod_namespace: None,
        service_account: None,
        tpm: plan.tpm,
    };
    let socket = zone.vsock_socket();
    zone_identity::start(
        plan.authority.clone(),
        facts,
        ZoneFiles::in_state_dir(zone.path()),
        Box::new(move || Box::pin(connect(socket))),
    )
}

async fn connect(socket: impl AsRef<Path>) -> anyhow::Result<zone_identity::Client> {
    agent_client::connect_retrying(socket.as_ref(), BOOT_PATIENCE).await
}
