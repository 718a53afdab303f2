//! The zone agent: PID 1 inside a zone.
//!
//! `main.rs` does the PID 1 duties (early mounts, signals, power off); everything else (the
//! `zone.agent.v1` service, containers and their processes) lives here so that it can be
//! tested on the host, served over a Unix socket instead of vsock.

pub mod attestation;
pub mod container;
pub mod containers;
pub mod identity;
pub mod lifeline;
pub mod mounts;
pub mod network;
pub mod oom;
pub mod power;
pub mod process;
pub mod reaper;
pub mod request_error;
pub mod server;
pub mod service;
pub mod signals;
pub mod stdio;
pub mod sysinfo;
pub mod tty;
pub mod vsock;
pub mod wire_spec;
