//! Virtio devices (virtio 1.2, OASIS) behind the virtio-mmio transport (section 4.2).
//!
//! A device implements [`VirtioDevice`]. The transport ([`mmio::MmioTransport`]) owns the
//! register state the driver programs; when the driver sets `DRIVER_OK` it hands the device an
//! [`Activation`]: guest memory, the configured queues, one event per queue that fires when the
//! guest notifies it, and the interrupt to raise when buffers are used. A device runs its queues
//! on a [`worker::Worker`] thread of its own, so a slow backend never stalls a vCPU.

pub mod block;
pub mod interrupt;
pub mod mmio;
pub mod net;
pub mod ratelimit;
pub mod rng;
pub mod vsock;
pub mod worker;

use std::sync::Arc;

use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

pub use interrupt::{IrqTrigger, VirtioInterrupt};

/// Guest memory as devices see it.
pub type GuestMemory = GuestMemoryMmap<()>;

/// Device ids (virtio 1.2, section 5).
pub const TYPE_NET: u32 = 1;
pub const TYPE_BLOCK: u32 = 2;
pub const TYPE_RNG: u32 = 4;
pub const TYPE_VSOCK: u32 = 19;

/// Feature bit every modern (non-legacy) device offers (virtio 1.2, section 6).
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// Everything a device needs to start serving its queues.
#[derive(Debug)]
pub struct Activation {
    pub mem: GuestMemory,
    /// Features the driver accepted (a subset of [`VirtioDevice::device_features`]).
    pub driver_features: u64,
    /// The queues, in device order, as the driver configured them.
    pub queues: Vec<Queue>,
    /// `queue_events[i]` becomes readable when the guest notifies queue `i`.
    pub queue_events: Vec<EventFd>,
    pub interrupt: Arc<VirtioInterrupt>,
}

/// The parts of an [`Activation`] for a device with exactly one queue.
#[derive(Debug)]
pub struct SingleQueue {
    pub mem: GuestMemory,
    pub queue: Queue,
    pub queue_evt: EventFd,
    pub interrupt: Arc<VirtioInterrupt>,
}

impl Activation {
    /// Splits out the one queue of a single-queue device; fails if the driver set up another
    /// number of queues.
    pub fn into_single_queue(self) -> Result<SingleQueue, ActivateError> {
        let actual = self.queues.len().max(self.queue_events.len());
        match (
            <[_; 1]>::try_from(self.queues),
            <[_; 1]>::try_from(self.queue_events),
        ) {
            (Ok([queue]), Ok([queue_evt])) => Ok(SingleQueue {
                mem: self.mem,
                queue,
                queue_evt,
                interrupt: self.interrupt,
            }),
            _ => Err(ActivateError::QueueCount {
                expected: 1,
                actual,
            }),
        }
    }
}

/// Why a device could not start.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error("expected {expected} queues, the driver configured {actual}")]
    QueueCount { expected: usize, actual: usize },
    #[error("cannot start the device worker")]
    Worker(#[source] std::io::Error),
    #[error("device backend failed")]
    Backend(#[source] std::io::Error),
}

/// A virtio device model, independent of the transport that exposes it.
pub trait VirtioDevice: Send {
    /// The virtio device id ([`TYPE_BLOCK`], ...).
    fn device_type(&self) -> u32;
    /// Maximum size of each queue; the length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Features offered to the driver, including [`VIRTIO_F_VERSION_1`].
    fn device_features(&self) -> u64;
    /// Reads device configuration space; bytes out of range read as zero.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes device configuration space; the default ignores writes.
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// Starts serving the queues (driver set `DRIVER_OK`).
    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError>;
    /// Stops serving and drops the queues (driver wrote status 0). Must be idempotent.
    fn reset(&mut self);
}

/// Copies `src[offset..]` into `data`, zero-filling what lies beyond `src`.
/// Config space reads from a guest may have any offset and length.
pub fn read_config_bytes(src: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let Ok(start) = usize::try_from(offset) else {
        return;
    };
    if start >= src.len() {
        return;
    }
    let n = data.len().min(src.len() - start);
    data[..n].copy_from_slice(&src[start..start + n]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_read_config_bytes_past_end_zero_fills() {
        let mut out = [0xffu8; 4];
        read_config_bytes(&[1, 2, 3], 1, &mut out);
        assert_eq!(out, [2, 3, 0, 0]);
        read_config_bytes(&[1, 2, 3], 9, &mut out);
        assert_eq!(out, [0, 0, 0, 0]);
    }
}
