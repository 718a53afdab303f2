//! TaskOOM: the zone's agent reports the containers whose processes the kernel killed for
//! want of memory (`OomEvents`); each report becomes a TaskOOM event for containerd, which
//! CRI shows as the container's OOMKilled reason.

use containerd_shim_protos::events::task::TaskOOM;
use containerd_shim_protos::topics::TASK_OOM_EVENT_TOPIC;
use zone_proto::agent::v1::OomEventsRequest;

use crate::events::Events;
use crate::vsock::Client;

/// Forwards the zone's OOM reports until its agent connection ends (the zone stops).
pub fn forward(mut client: Client, events: Events) {
    tokio::spawn(async move {
        let mut reports = match client.oom_events(OomEventsRequest {}).await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                tracing::warn!(error = %status.message(), "no OOM events from this zone");
                return;
            }
        };
        while let Ok(Some(report)) = reports.message().await {
            tracing::warn!(container = %report.container_id, "OOM kill in the zone");
            events.publish(
                TASK_OOM_EVENT_TOPIC,
                TaskOOM {
                    container_id: report.container_id,
                    ..Default::default()
                },
            );
        }
    });
}
