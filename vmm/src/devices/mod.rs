//! Device models. No device imports the VM or vCPU code: interrupts reach devices as
//! [`virtio::IrqTrigger`]s and register accesses through the [`bus::Bus`].

pub mod bus;
pub mod i8042;
pub mod power;
pub mod serial;
pub mod tpm;
pub mod virtio;
