//! Protocol messages between Zones host processes and zone agents, generated from the
//! `.proto` sources under `proto/zone/` by `build.rs` (prost-build with protox).
//!
//! The one hand-written piece is [`frame`], the length-delimited framing every stream
//! connection uses; it is kept apart from the generated code.

pub mod frame;

/// `zone.agent.v1`: the host <-> zone agent protocol (`zone/agent/v1/agent.proto`).
pub mod agent {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/zone.agent.v1.rs"));
    }
}

/// The SPIFFE Workload API (`spiffe/workload.proto`): the standard's service, which has no
/// package, served by the zone agent to the zone's workloads.
pub mod spiffe_workload {
    include!(concat!(env!("OUT_DIR"), "/_.rs"));
}
