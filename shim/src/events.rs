//! Task events to containerd, in the order they happen.
//!
//! Every event goes through one channel to one task that forwards them one by one with
//! containerd-shim's `RemotePublisher` (ttrpc `Events.Forward` on `TTRPC_ADDRESS`, which
//! reconnects when containerd restarts). Callers queue an event at the moment it happens
//! while holding the task state, so the order is: TaskCreate, TaskStart, TaskExit,
//! TaskDelete for a container, and TaskExecAdded, TaskExecStarted, TaskExit for an exec;
//! TaskExit is only queued by the process's watcher, which starts after TaskStart is queued.

use containerd_shim::publisher::RemotePublisher;
use containerd_shim_protos::protobuf::MessageDyn;
use containerd_shim_protos::ttrpc::context::Context;
use tokio::sync::mpsc;

/// One event: its topic (`/tasks/exit`...) and message.
pub type Event = (&'static str, Box<dyn MessageDyn>);

#[derive(Debug, Clone)]
pub struct Events {
    tx: mpsc::UnboundedSender<Event>,
}

impl Events {
    /// Forwards events to containerd's ttrpc address under `namespace`.
    pub fn to_containerd(ttrpc_address: String, namespace: String) -> Events {
        let (events, mut rx) = Events::channel();
        tokio::spawn(async move {
            let publisher = loop {
                match RemotePublisher::new(&ttrpc_address).await {
                    Ok(publisher) => break publisher,
                    Err(e) => {
                        tracing::warn!(address = %ttrpc_address, error = %e, "connecting to containerd's events; retrying");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            };
            while let Some((topic, event)) = rx.recv().await {
                tracing::debug!(topic, "event");
                if let Err(e) = publisher
                    .publish(Context::default(), topic, &namespace, event)
                    .await
                {
                    tracing::warn!(topic, error = %e, "publishing an event");
                }
            }
        });
        events
    }

    /// Events that go to the returned receiver (tests).
    pub fn channel() -> (Events, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Events { tx }, rx)
    }

    pub fn publish(&self, topic: &'static str, event: impl MessageDyn) {
        if self.tx.send((topic, Box::new(event))).is_err() {
            tracing::warn!(topic, "event dropped: the publisher is gone");
        }
    }
}
