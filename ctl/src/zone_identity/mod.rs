//! A zone's workload identity, decided by this host's identity authority while the zone runs.
//!
//! `zonectl run` (and the supervisor of `run -d`) starts [`start`] once the zone's agent is up.
//! On its own thread it:
//! 1. loads the registration policy and opens the authority's keys and the zone CA
//!    ([`setup`]); anything missing is a refusal that names it;
//! 2. enrolls the zone's vTPM with the zone CA (the EK as the VMM read it before the zone ran);
//! 3. asks the agent for a fresh key, attests the zone with a quote bound to that key over a
//!    challenge it chose, and only if the evidence verifies against what this host launched
//!    and the policy admits the verified facts, issues an X.509-SVID for the key ([`round`]);
//! 4. does step 3 again halfway through the SVID's life (rotation), until the zone ends;
//! 5. meanwhile signs the JWT-SVIDs the zone's workloads ask for ([`jwt_signer`]).
//!
//! Each decision is written to the zone's `identity.json` ([`record`]) for `zonectl identity`.

pub mod jwt_signer;
pub mod record;
mod round;
mod setup;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use zone_attest::measurements::ZoneClaims;

use crate::agent_client;
use crate::authority_args::AuthorityArgs;
use crate::cli::{DiskSpec, RunArgs};
use crate::exec::BOOT_PATIENCE;
use crate::remote_attester::RemoteAttester;
use crate::size::Size;
use crate::workload::ImageDigests;
use crate::zone_dir::ZoneDir;
use crate::zone_state::BootRecord;

use record::IdentityRecord;
use round::RoundEnd;

/// How long after a failed exchange with the zone (not a refusal) the round is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// Failed exchanges in a row before the zone is refused.
const MAX_FAILED_ROUNDS: u32 = 3;

/// What the authority needs to know about a zone, fixed before it starts.
#[derive(Debug, Clone)]
pub struct IdentityPlan {
    pub args: AuthorityArgs,
    /// The host's own record of the zone's name (never the guest's word).
    pub zone_name: Option<String>,
    pub tpm: bool,
    pub boot: BootRecord,
    pub cpus: u32,
    pub memory: Size,
    pub disks: Vec<DiskSpec>,
}

impl IdentityPlan {
    pub fn new(
        args: &RunArgs,
        vmm: &Path,
        disks: &[DiskSpec],
        image: Option<&ImageDigests>,
    ) -> Self {
        Self {
            args: args.identity.clone(),
            zone_name: args.name.clone(),
            tpm: !args.no_tpm,
            boot: BootRecord {
                vmm: vmm.to_path_buf(),
                kernel: args.kernel.clone(),
                initrd: args.initrd.clone(),
                tpm: !args.no_tpm,
                image_manifest_digest: image.map(|d| d.manifest.clone()),
                oci_config_digest: image.map(|d| d.config.clone()),
            },
            cpus: args.shape.cpus,
            memory: args.shape.memory,
            disks: disks.to_vec(),
        }
    }

    /// The image claims the VMM measures into PCR 15 (the zone id aside).
    fn claims(&self) -> ZoneClaims {
        ZoneClaims {
            zone_id: String::new(),
            image_manifest_digest: self.boot.image_manifest_digest.clone().unwrap_or_default(),
            oci_config_digest: self.boot.oci_config_digest.clone().unwrap_or_default(),
        }
    }
}

/// The zone's identity thread; dropping this tells it to stop.
#[derive(Debug)]
pub struct ZoneIdentity {
    stop: watch::Sender<bool>,
}

impl Drop for ZoneIdentity {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Where the identity thread finds the zone.
#[derive(Debug, Clone)]
struct ZonePaths {
    id: String,
    vsock: PathBuf,
    record: PathBuf,
    ek_public: PathBuf,
}

/// Starts deciding `zone`'s identity under `plan`, on a thread of its own.
pub fn start(zone: &ZoneDir, plan: &IdentityPlan) -> ZoneIdentity {
    let (stop, stopped) = watch::channel(false);
    let paths = ZonePaths {
        id: zone.id().to_string(),
        vsock: zone.vsock_socket(),
        record: zone.identity_record(),
        ek_public: zone.tpm_ek_public(),
    };
    let plan = plan.clone();
    let spawned = thread::Builder::new()
        .name("zone-identity".to_string())
        .spawn(move || {
            let ending = stopped.clone();
            if let Err(e) = run(&paths, &plan, stopped) {
                // A zone that ends mid-round takes the agent with it: not worth a warning.
                if !*ending.borrow() {
                    tracing::warn!(zone = %paths.id, "workload identity: {e:#}");
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the workload identity thread: {e}");
    }
    ZoneIdentity { stop }
}

fn run(
    paths: &ZonePaths,
    plan: &IdentityPlan,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let runtime = agent_client::runtime()?;
    let mut record = IdentityRecord::pending(&plan.args.identity_policy);
    record.save(&paths.record)?;
    let client = runtime.block_on(agent_client::connect_retrying(&paths.vsock, BOOT_PATIENCE))?;
    let mut round = round::Round {
        runtime: &runtime,
        client: client.clone(),
        record: &mut record,
        record_path: &paths.record,
        current: Arc::new(Mutex::new(None)),
    };
    let setup = match setup::Setup::open(paths, plan) {
        Ok(setup) => setup,
        Err(reason) => return round.refuse(vec![reason]),
    };
    round.record.trust_domain = Some(setup.policy.trust_domain.clone());
    round.record.path_template = Some(setup.policy.path_template.clone());
    runtime.spawn(jwt_signer::serve(
        client.clone(),
        jwt_signer::Signer {
            authority: setup.authority.clone(),
            ttl: setup.policy.jwt_svid_ttl(),
            current: round.current.clone(),
        },
    ));
    let mut attester = RemoteAttester::new(client, &runtime);
    let mut setup = match setup.enroll(&paths.id, &mut attester) {
        Ok(enrolled) => enrolled,
        Err(reason) => return round.refuse(vec![reason]),
    };
    let mut failed_rounds = 0;
    loop {
        let next = match round.issue(&mut setup, &mut attester, plan.zone_name.as_deref()) {
            RoundEnd::Issued { renew_at } => {
                failed_rounds = 0;
                renew_at
            }
            RoundEnd::Refused => return Ok(()),
            RoundEnd::Failed(e) => {
                if *stopped.borrow() {
                    return Ok(());
                }
                failed_rounds += 1;
                if failed_rounds >= MAX_FAILED_ROUNDS {
                    return round.refuse(vec![format!(
                        "attesting the zone failed {failed_rounds} times in a row, last: {e:#}"
                    )]);
                }
                tracing::warn!(zone = %paths.id, "workload identity round failed: {e:#}");
                Instant::now() + RETRY_AFTER
            }
        };
        let stop = runtime.block_on(async {
            tokio::select! {
                () = tokio::time::sleep_until(next.into()) => false,
                _ = stopped.wait_for(|stop| *stop) => true,
            }
        });
        if stop {
            return Ok(());
        }
    }
}
