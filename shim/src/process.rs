//! One process of a container as containerd sees it (the init process has exec id ""):
//! created, running (started in the zone), or stopped (its exit recorded once its output has
//! drained), and the watcher that turns the agent's `WaitProcess` into `TaskExit`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use containerd_shim_protos::events::task::TaskExit;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::topics::TASK_EXIT_EVENT_TOPIC;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use zone_proto::agent::v1::WaitProcessRequest;

use crate::events::Events;
use crate::stdio::StdioPaths;
use crate::vsock::Client;

/// How long output may keep coming after the process exited (a child it left behind may
/// hold the stream open) before the exit is reported anyway.
const OUTPUT_GRACE: Duration = Duration::from_secs(5);
/// Exit status reported when the zone went away under a process.
pub const EXIT_ZONE_LOST: u32 = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub status: u32,
    pub seconds: i64,
    pub nanos: i32,
}

impl Exit {
    pub fn now(status: u32) -> Exit {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Exit {
            status,
            seconds: i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(now.subsec_nanos()).unwrap_or(0),
        }
    }

    pub fn timestamp(&self) -> Timestamp {
        Timestamp {
            seconds: self.seconds,
            nanos: self.nanos,
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Stopped,
}

#[derive(Debug)]
pub struct Process {
    pub stdio: StdioPaths,
    /// The pid inside the zone; 0 until started.
    pub pid: u32,
    started: bool,
    exit_tx: Option<watch::Sender<Option<Exit>>>,
    exit_rx: watch::Receiver<Option<Exit>>,
    /// Notified by CloseIO.
    pub stdin_close: Arc<Notify>,
    outputs: Vec<JoinHandle<()>>,
}

impl Process {
    pub fn new(stdio: StdioPaths, outputs: Vec<JoinHandle<()>>) -> Process {
        let (tx, rx) = watch::channel(None);
        Process {
            stdio,
            pid: 0,
            started: false,
            exit_tx: Some(tx),
            exit_rx: rx,
            stdin_close: Arc::new(Notify::new()),
            outputs,
        }
    }

    pub fn exit(&self) -> Option<Exit> {
        *self.exit_rx.borrow()
    }

    pub fn status(&self) -> Status {
        match (self.exit(), self.started) {
            (Some(_), _) => Status::Stopped,
            (None, true) => Status::Running,
            (None, false) => Status::Created,
        }
    }

    /// A receiver that sees the exit once it is recorded.
    pub fn exit_receiver(&self) -> watch::Receiver<Option<Exit>> {
        self.exit_rx.clone()
    }

    /// Records the exit of a process that never started (killed while created).
    pub fn exit_unstarted(&mut self, status: u32) -> Option<Exit> {
        let tx = self.exit_tx.take()?;
        let exit = Exit::now(status);
        let _ = tx.send(Some(exit));
        for output in self.outputs.drain(..) {
            output.abort();
        }
        Some(exit)
    }

    /// Marks the process started as `pid` and starts its watcher: wait for the agent's exit,
    /// let the output drain, record the exit and publish `TaskExit`.
    pub fn started(&mut self, pid: u32, watch: Watch) {
        self.pid = pid;
        self.started = true;
        let Some(tx) = self.exit_tx.take() else {
            return;
        };
        let outputs = std::mem::take(&mut self.outputs);
        tokio::spawn(async move {
            let status = watch.wait().await;
            let drained = tokio::time::timeout(OUTPUT_GRACE, async {
                for output in outputs {
                    let _ = output.await;
                }
            })
            .await;
            if drained.is_err() {
                tracing::warn!(container = %watch.container, exec = %watch.exec, "output still open {OUTPUT_GRACE:?} after the exit");
            }
            let exit = Exit::now(status);
            let _ = tx.send(Some(exit));
            let id = if watch.exec.is_empty() {
                watch.container.clone()
            } else {
                watch.exec.clone()
            };
            watch.events.publish(
                TASK_EXIT_EVENT_TOPIC,
                TaskExit {
                    container_id: watch.container.clone(),
                    id,
                    pid,
                    exit_status: exit.status,
                    exited_at: Some(exit.timestamp()).into(),
                    ..Default::default()
                },
            );
        });
    }
}

/// What a process's watcher needs.
#[derive(Debug)]
pub struct Watch {
    pub client: Client,
    pub events: Events,
    pub container: String,
    pub exec: String,
}

impl Watch {
    /// The process's exit status as a shell reports it (128 + signal when killed).
    async fn wait(&self) -> u32 {
        let reply = self
            .client
            .clone()
            .wait_process(WaitProcessRequest {
                container_id: self.container.clone(),
                exec_id: self.exec.clone(),
            })
            .await;
        match reply {
            Ok(reply) => {
                let reply = reply.into_inner();
                if reply.signal != 0 {
                    128 + reply.signal.unsigned_abs()
                } else {
                    u32::try_from(reply.exit_code).unwrap_or(EXIT_ZONE_LOST)
                }
            }
            Err(status) => {
                tracing::warn!(container = %self.container, exec = %self.exec, error = %status.message(), "waiting for the process; counting it as lost");
                EXIT_ZONE_LOST
            }
        }
    }
}
