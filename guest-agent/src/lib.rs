//! The zone agent: PID 1 inside a zone.
//!
//! `main.rs` does the PID 1 duties (early mounts, signals, power off); the pieces that do not
//! need to be PID 1 (the request loop and the command runner) live here so they can be tested
//! on the host, over any byte stream.

pub mod container;
pub mod mounts;
pub mod power;
pub mod reaper;
pub mod runner;
pub mod session;
pub mod signals;
pub mod sysinfo;
pub mod tty;
pub mod vsock;
