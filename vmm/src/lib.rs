//! zone-vmm: the Zones micro-VM monitor. One process runs one zone: a KVM VM with its own
//! Linux kernel, a handful of virtio-mmio devices and a serial console.

pub mod arch;
pub mod devices;
