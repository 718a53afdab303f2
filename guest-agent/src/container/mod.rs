//! Containers in a zone: several per zone (a Kubernetes pod is one zone), each with its own
//! root, mounts, cgroup and optional hostname, and processes run in them with the OCI
//! runtime-spec process settings.
//!
//! - [`config`]: the agent's own types for a container ([`ContainerConfig`]) and a process
//!   ([`ProcessConfig`]), with every check that needs no file system; [`caps`] and
//!   [`rlimits`] name capabilities and limits as the runtime spec does.
//! - [`Container::create`] mounts the root ([`rootfs`]) and the extra mounts ([`volumes`]),
//!   makes the cgroup ([`cgroup`]); [`Container::command`] resolves the user ([`users`]) and
//!   builds the child-side steps (`process.rs`: mount namespace, pivot_root, rlimits, ids,
//!   capabilities); [`Container::destroy`] undoes it all.
//! - [`zone_userland`]: a process without a container, in the zone's own busybox userland
//!   (`zonectl run --bare`).

pub mod caps;
pub mod cgroup;
pub mod config;
mod instance;
mod process;
pub mod rlimits;
pub mod rootfs;
pub mod spec;
pub mod users;
pub mod volumes;
pub mod zone_userland;

pub use caps::{default_capabilities, CapError, CapSet, Capability, CapabilitySets};
pub use cgroup::{
    CgroupError, CgroupPlace, CgroupStats, CpuStats, Limit, Limits, MemoryStats, PidsStats,
};
pub use config::{
    ConfigError, ContainerConfig, ContainerId, MountKind, MountOptions, MountSpec, ProcessConfig,
    RootfsSource,
};
pub use instance::{Container, ContainerError, Layout, PreparedProcess};
pub use rlimits::{Rlimit, RlimitError, RlimitResource};
pub use spec::{FsType, RootfsSpec, SpecError};
pub use volumes::VolumeError;

/// PATH given to a command in a container unless the request's env sets its own.
pub const CONTAINER_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";
/// PATH given to a command in the zone's own userland unless the request's env sets its own.
pub const ZONE_PATH: &str = "/bin:/sbin:/usr/bin:/usr/sbin";
