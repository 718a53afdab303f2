//! The zone's identity thread: what it is told about the zone, and its loop of rounds.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::config::AuthorityConfig;
use crate::jwt_signer;
use crate::record::IdentityRecord;
use crate::remote_attester::RemoteAttester;
use crate::round::{Round, RoundEnd};
use crate::setup::Setup;
use crate::Client;

/// How long after a failed exchange with the zone (not a refusal) the round is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// Failed exchanges in a row before the zone is refused.
const MAX_FAILED_ROUNDS: u32 = 3;

/// The host's own records about the zone (never the guest's word), for the path template.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneFacts {
    pub zone_id: String,
    pub zone_name: Option<String>,
    pub pod_namespace: Option<String>,
    pub service_account: Option<String>,
    /// The zone has a vTPM; without one it is refused at once.
    pub tpm: bool,
}

/// The zone's files the authority reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneFiles {
    /// The vTPM's EK public, as the VMM read it before the zone ran.
    pub ek_public: PathBuf,
    /// The boot event log the VMM wrote as it measured the zone.
    pub event_log: PathBuf,
    /// Where the decisions are recorded (`identity.json`).
    pub record: PathBuf,
}

/// Their names in a zone's state directory, the same for zonectl's zones and the shim's.
pub const EK_PUBLIC_FILE: &str = "tpm-ek.pub";
pub const EVENT_LOG_FILE: &str = "tpm-eventlog.bin";
pub const RECORD_FILE: &str = "identity.json";

impl ZoneFiles {
    /// The files of the zone whose state directory is `dir`.
    pub fn in_state_dir(dir: &Path) -> Self {
        Self {
            ek_public: dir.join(EK_PUBLIC_FILE),
            event_log: dir.join(EVENT_LOG_FILE),
            record: dir.join(RECORD_FILE),
        }
    }
}

/// Connects to the zone's agent (each caller has its own way over the VMM's vsock).
pub type Connect =
    Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = anyhow::Result<Client>>>> + Send>;

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

/// Starts deciding a zone's identity on a thread of its own, once its agent is up.
pub fn start(
    authority: AuthorityConfig,
    facts: ZoneFacts,
    files: ZoneFiles,
    connect: Connect,
) -> ZoneIdentity {
    let (stop, stopped) = watch::channel(false);
    let spawned = thread::Builder::new()
        .name("zone-identity".to_string())
        .spawn(move || {
            let ending = stopped.clone();
            if let Err(e) = run(&authority, &facts, &files, connect, stopped) {
                // A zone that ends mid-round takes the agent with it: not worth a warning.
                if !*ending.borrow() {
                    tracing::warn!(zone = %facts.zone_id, "workload identity: {e:#}");
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the workload identity thread: {e}");
    }
    ZoneIdentity { stop }
}

fn run(
    authority: &AuthorityConfig,
    facts: &ZoneFacts,
    files: &ZoneFiles,
    connect: Connect,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut record = IdentityRecord::pending(&authority.policy);
    record.save(&files.record)?;
    let client = runtime.block_on(connect())?;
    let mut round = Round {
        runtime: &runtime,
        client: client.clone(),
        record: &mut record,
        record_path: &files.record,
        current: Arc::new(Mutex::new(None)),
    };
    let setup = match Setup::open(authority, facts, files) {
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
    let mut setup = match setup.enroll(&facts.zone_id, &mut attester) {
        Ok(enrolled) => enrolled,
        Err(reason) => return round.refuse(vec![reason]),
    };
    let mut failed_rounds = 0;
    loop {
        let next = match round.issue(&mut setup, &mut attester, facts) {
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
                tracing::warn!(zone = %facts.zone_id, "workload identity round failed: {e:#}");
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
