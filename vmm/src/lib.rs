//! zone-vmm: the Zones micro-VM monitor. One process runs one zone: a KVM VM with its own
//! Linux kernel, a handful of virtio-mmio devices and a serial console.

pub mod arch;
pub mod boot;
pub mod cli;
pub mod config;
pub mod devices;
pub mod hypervisor;
pub mod vtpm;
pub mod zone;
