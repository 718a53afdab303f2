//! The virtio-mmio interrupt: a status register the driver reads and acknowledges
//! (`InterruptStatus`/`InterruptACK`, virtio 1.2 section 4.2.2) plus a line to raise.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};

use vmm_sys_util::eventfd::EventFd;

/// `InterruptStatus` bit: a queue has used buffers.
pub const INT_VRING: u32 = 0x1;
/// `InterruptStatus` bit: the device configuration changed.
pub const INT_CONFIG: u32 = 0x2;

/// Something that raises the device's interrupt line (an irqfd in the VMM, a counter in tests).
pub trait IrqTrigger: Send + Sync {
    fn trigger(&self) -> io::Result<()>;
}

impl IrqTrigger for EventFd {
    fn trigger(&self) -> io::Result<()> {
        self.write(1)
    }
}

/// Interrupt state shared by a device's worker and its transport.
pub struct VirtioInterrupt {
    status: AtomicU32,
    line: Box<dyn IrqTrigger>,
}

impl fmt::Debug for VirtioInterrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtioInterrupt")
            .field("status", &self.status.load(Ordering::Relaxed))
            .finish()
    }
}

impl VirtioInterrupt {
    pub fn new(line: Box<dyn IrqTrigger>) -> Self {
        Self {
            status: AtomicU32::new(0),
            line,
        }
    }

    /// Tells the driver that a queue has used buffers.
    pub fn signal_used_queue(&self) -> io::Result<()> {
        self.status.fetch_or(INT_VRING, Ordering::SeqCst);
        self.line.trigger()
    }

    /// Tells the driver that the configuration space changed.
    pub fn signal_config_change(&self) -> io::Result<()> {
        self.status.fetch_or(INT_CONFIG, Ordering::SeqCst);
        self.line.trigger()
    }

    /// The value of `InterruptStatus`.
    pub fn status(&self) -> u32 {
        self.status.load(Ordering::SeqCst)
    }

    /// Handles a write to `InterruptACK`: clears the acknowledged bits.
    pub fn ack(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::SeqCst);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    /// Counts how often the line was raised.
    #[derive(Debug, Default, Clone)]
    pub(crate) struct CountingIrq(pub Arc<AtomicUsize>);

    impl IrqTrigger for CountingIrq {
        fn trigger(&self) -> io::Result<()> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[test]
    fn test_interrupt_signal_then_ack_clears_status() {
        let irq = CountingIrq::default();
        let int = VirtioInterrupt::new(Box::new(irq.clone()));
        int.signal_used_queue().expect("counting irq cannot fail");
        int.signal_config_change()
            .expect("counting irq cannot fail");
        assert_eq!(int.status(), INT_VRING | INT_CONFIG);
        assert_eq!(irq.0.load(Ordering::SeqCst), 2);
        int.ack(INT_VRING);
        assert_eq!(int.status(), INT_CONFIG);
    }
}
