//! The virtio-mmio transport, version 2 (virtio 1.2, section 4.2.2): the register window a
//! driver programs to negotiate features, set up queues and start a device.
//!
//! Register accesses come from the guest and are checked: only aligned 32-bit accesses touch
//! registers, queue sizes must not exceed the device's maximum, and a device is activated only
//! after `FEATURES_OK` with every queue it needs ready and inside guest memory.

use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::{Activation, GuestMemory, VirtioDevice, VirtioInterrupt};
use crate::devices::bus::BusDevice;

const MAGIC_VALUE: u32 = 0x7472_6976; // "virt"
const MMIO_VERSION: u32 = 2;
const VENDOR_ID: u32 = 0x5a4f_4e45; // "ZONE"

const REG_MAGIC: u64 = 0x000;
const REG_VERSION: u64 = 0x004;
const REG_DEVICE_ID: u64 = 0x008;
const REG_VENDOR_ID: u64 = 0x00c;
const REG_DEVICE_FEATURES: u64 = 0x010;
const REG_DEVICE_FEATURES_SEL: u64 = 0x014;
const REG_DRIVER_FEATURES: u64 = 0x020;
const REG_DRIVER_FEATURES_SEL: u64 = 0x024;
const REG_QUEUE_SEL: u64 = 0x030;
const REG_QUEUE_NUM_MAX: u64 = 0x034;
const REG_QUEUE_NUM: u64 = 0x038;
const REG_QUEUE_READY: u64 = 0x044;
/// Guest writes here to notify a queue; the VMM may route it through an ioeventfd instead.
pub const REG_QUEUE_NOTIFY: u64 = 0x050;
const REG_INTERRUPT_STATUS: u64 = 0x060;
const REG_INTERRUPT_ACK: u64 = 0x064;
const REG_STATUS: u64 = 0x070;
const REG_QUEUE_DESC_LOW: u64 = 0x080;
const REG_QUEUE_DESC_HIGH: u64 = 0x084;
const REG_QUEUE_DRIVER_LOW: u64 = 0x090;
const REG_QUEUE_DRIVER_HIGH: u64 = 0x094;
const REG_QUEUE_DEVICE_LOW: u64 = 0x0a0;
const REG_QUEUE_DEVICE_HIGH: u64 = 0x0a4;
const REG_CONFIG_GENERATION: u64 = 0x0fc;
const CONFIG_SPACE: u64 = 0x100;

/// Device status bits (virtio 1.2, section 2.1).
const STATUS_ACKNOWLEDGE: u32 = 1;
const STATUS_DRIVER: u32 = 2;
const STATUS_DRIVER_OK: u32 = 4;
const STATUS_FEATURES_OK: u32 = 8;
const STATUS_NEEDS_RESET: u32 = 0x40;
const STATUS_FAILED: u32 = 0x80;

#[derive(Debug, thiserror::Error)]
pub enum MmioError {
    #[error("cannot create a queue of size {0}")]
    Queue(u16, #[source] virtio_queue::Error),
    #[error("cannot create a queue notification event")]
    Event(#[source] std::io::Error),
}

/// A virtio device behind its virtio-mmio register window.
pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    mem: GuestMemory,
    interrupt: Arc<VirtioInterrupt>,
    queues: Vec<Queue>,
    queue_events: Vec<EventFd>,
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    activated: bool,
}

impl std::fmt::Debug for MmioTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmioTransport")
            .field("device_type", &self.device.device_type())
            .field("status", &self.status)
            .field("activated", &self.activated)
            .finish_non_exhaustive()
    }
}

impl MmioTransport {
    pub fn new(
        device: Box<dyn VirtioDevice>,
        mem: GuestMemory,
        interrupt: Arc<VirtioInterrupt>,
    ) -> Result<Self, MmioError> {
        let queues = fresh_queues(device.as_ref())?;
        let queue_events = queues
            .iter()
            .map(|_| EventFd::new(EFD_NONBLOCK).map_err(MmioError::Event))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            device,
            mem,
            interrupt,
            queues,
            queue_events,
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            activated: false,
        })
    }

    /// One event per queue; the VMM registers each as an ioeventfd on [`REG_QUEUE_NOTIFY`]
    /// with the queue index as the value.
    pub fn queue_events(&self) -> &[EventFd] {
        &self.queue_events
    }

    pub fn device_type(&self) -> u32 {
        self.device.device_type()
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        // Queue setup is only allowed before the device runs (section 4.2.3.2).
        if self.activated {
            return None;
        }
        let sel = usize::try_from(self.queue_sel).ok()?;
        self.queues.get_mut(sel)
    }

    fn read_register(&self, offset: u64) -> u32 {
        let sel = usize::try_from(self.queue_sel).ok();
        let queue = sel.and_then(|s| self.queues.get(s));
        match offset {
            REG_MAGIC => MAGIC_VALUE,
            REG_VERSION => MMIO_VERSION,
            REG_DEVICE_ID => self.device.device_type(),
            REG_VENDOR_ID => VENDOR_ID,
            REG_DEVICE_FEATURES => match self.device_features_sel {
                0 => self.device.device_features() as u32,
                1 => (self.device.device_features() >> 32) as u32,
                _ => 0,
            },
            REG_QUEUE_NUM_MAX => queue.map_or(0, |q| u32::from(q.max_size())),
            REG_QUEUE_READY => queue.map_or(0, |q| u32::from(q.ready())),
            REG_INTERRUPT_STATUS => self.interrupt.status(),
            REG_STATUS => self.status,
            REG_CONFIG_GENERATION => 0,
            _ => 0,
        }
    }

    fn write_register(&mut self, offset: u64, value: u32) {
        match offset {
            REG_DEVICE_FEATURES_SEL => self.device_features_sel = value,
            REG_DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            REG_DRIVER_FEATURES if self.status & STATUS_FEATURES_OK == 0 => {
                let shift = match self.driver_features_sel {
                    0 => 0,
                    1 => 32,
                    _ => return,
                };
                let mask = 0xffff_ffffu64 << shift;
                self.driver_features =
                    (self.driver_features & !mask) | ((u64::from(value) << shift) & mask);
            }
            REG_QUEUE_SEL => self.queue_sel = value,
            REG_QUEUE_NUM => {
                if let Some(q) = self.selected_queue() {
                    // QueueT::set_size ignores sizes that are zero, too big or not a power of two;
                    // the queue then fails validation at activation.
                    q.set_size(u16::try_from(value).unwrap_or(0));
                }
            }
            REG_QUEUE_READY => {
                if let Some(q) = self.selected_queue() {
                    q.set_ready(value == 1);
                }
            }
            REG_QUEUE_DESC_LOW => {
                self.set_queue_addr(|q, v| q.set_desc_table_address(Some(v), None), value)
            }
            REG_QUEUE_DESC_HIGH => {
                self.set_queue_addr(|q, v| q.set_desc_table_address(None, Some(v)), value)
            }
            REG_QUEUE_DRIVER_LOW => {
                self.set_queue_addr(|q, v| q.set_avail_ring_address(Some(v), None), value)
            }
            REG_QUEUE_DRIVER_HIGH => {
                self.set_queue_addr(|q, v| q.set_avail_ring_address(None, Some(v)), value)
            }
            REG_QUEUE_DEVICE_LOW => {
                self.set_queue_addr(|q, v| q.set_used_ring_address(Some(v), None), value)
            }
            REG_QUEUE_DEVICE_HIGH => {
                self.set_queue_addr(|q, v| q.set_used_ring_address(None, Some(v)), value)
            }
            REG_QUEUE_NOTIFY => {
                // Normally absorbed by an ioeventfd; without one, forward it.
                if let Some(evt) = usize::try_from(value)
                    .ok()
                    .and_then(|i| self.queue_events.get(i))
                {
                    let _ = evt.write(1);
                }
            }
            REG_INTERRUPT_ACK => self.interrupt.ack(value),
            REG_STATUS => self.write_status(value),
            _ => {}
        }
    }

    fn set_queue_addr(&mut self, set: impl FnOnce(&mut Queue, u32), value: u32) {
        if let Some(q) = self.selected_queue() {
            set(q, value);
        }
    }

    fn write_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        // The driver may only add bits (section 2.1.2), except FAILED which ends everything.
        if value & !self.status & STATUS_FAILED != 0 {
            self.status |= STATUS_FAILED;
            return;
        }
        let mut value = value;
        let added = value & !self.status;
        if added & STATUS_FEATURES_OK != 0 {
            self.driver_features &= self.device.device_features();
            if self.driver_features & super::VIRTIO_F_VERSION_1 == 0 {
                // A legacy driver: we only speak virtio 1.x, so FEATURES_OK does not stick.
                value &= !STATUS_FEATURES_OK;
            }
        }
        self.status = value;
        if added & STATUS_DRIVER_OK != 0 && !self.activated {
            self.activate();
        }
    }

    fn activate(&mut self) {
        let needed = STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK;
        let queues_ok = self
            .queues
            .iter()
            .all(|q| q.ready() && q.is_valid(&self.mem));
        if self.status & needed != needed || !queues_ok {
            tracing::warn!(
                device = self.device.device_type(),
                "driver started the device without a valid setup"
            );
            self.status |= STATUS_NEEDS_RESET;
            let _ = self.interrupt.signal_config_change();
            return;
        }
        let queues = std::mem::take(&mut self.queues);
        let queue_events = match self.queue_events.iter().map(EventFd::try_clone).collect() {
            Ok(events) => events,
            Err(e) => {
                tracing::error!("cannot clone queue events: {e}");
                self.status |= STATUS_NEEDS_RESET;
                return;
            }
        };
        let activation = Activation {
            mem: self.mem.clone(),
            driver_features: self.driver_features,
            queues,
            queue_events,
            interrupt: self.interrupt.clone(),
        };
        match self.device.activate(activation) {
            Ok(()) => self.activated = true,
            Err(e) => {
                tracing::error!(device = self.device.device_type(), "cannot activate: {e}");
                self.status |= STATUS_NEEDS_RESET;
                let _ = self.interrupt.signal_config_change();
            }
        }
    }

    fn reset(&mut self) {
        self.device.reset();
        self.activated = false;
        self.status = 0;
        self.driver_features = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.queue_sel = 0;
        self.interrupt.ack(u32::MAX);
        match fresh_queues(self.device.as_ref()) {
            Ok(queues) => self.queues = queues,
            Err(e) => {
                tracing::error!("cannot recreate queues on reset: {e}");
                self.status = STATUS_NEEDS_RESET;
            }
        }
        // Drain notifications from before the reset.
        for evt in &self.queue_events {
            let _ = evt.read();
        }
    }

    /// Stops the device's worker; used when the VMM shuts down.
    pub fn shutdown(&mut self) {
        self.device.reset();
    }
}

fn fresh_queues(device: &dyn VirtioDevice) -> Result<Vec<Queue>, MmioError> {
    device
        .queue_max_sizes()
        .iter()
        .map(|&max| Queue::new(max).map_err(|e| MmioError::Queue(max, e)))
        .collect()
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= CONFIG_SPACE {
            self.device.read_config(offset - CONFIG_SPACE, data);
        } else if data.len() == 4 && offset.is_multiple_of(4) {
            data.copy_from_slice(&self.read_register(offset).to_le_bytes());
        } else {
            data.fill(0);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= CONFIG_SPACE {
            self.device.write_config(offset - CONFIG_SPACE, data);
        } else if let (Ok(bytes), 0) = (<[u8; 4]>::try_from(data), offset % 4) {
            self.write_register(offset, u32::from_le_bytes(bytes));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::interrupt::tests::CountingIrq;
    use crate::devices::virtio::{ActivateError, VIRTIO_F_VERSION_1};
    use std::sync::Mutex;
    use vm_memory::GuestAddress;

    /// (driver features, queue count) of each activation.
    type ActivationLog = Arc<Mutex<Vec<(u64, usize)>>>;

    #[derive(Default)]
    struct Probe {
        activations: ActivationLog,
        resets: Arc<Mutex<usize>>,
    }

    impl VirtioDevice for Probe {
        fn device_type(&self) -> u32 {
            super::super::TYPE_RNG
        }
        fn queue_max_sizes(&self) -> &[u16] {
            &[16]
        }
        fn device_features(&self) -> u64 {
            VIRTIO_F_VERSION_1 | 0x1
        }
        fn read_config(&self, offset: u64, data: &mut [u8]) {
            super::super::read_config_bytes(&[0xaa, 0xbb], offset, data);
        }
        fn activate(&mut self, a: Activation) -> Result<(), ActivateError> {
            self.activations
                .lock()
                .expect("lock")
                .push((a.driver_features, a.queues.len()));
            Ok(())
        }
        fn reset(&mut self) {
            *self.resets.lock().expect("lock") += 1;
        }
    }

    fn transport() -> (MmioTransport, ActivationLog) {
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 0x10_0000)]).expect("mem");
        let probe = Probe::default();
        let log = probe.activations.clone();
        let int = Arc::new(VirtioInterrupt::new(Box::new(CountingIrq::default())));
        (
            MmioTransport::new(Box::new(probe), mem, int).expect("transport"),
            log,
        )
    }

    fn w(t: &mut MmioTransport, off: u64, v: u32) {
        t.write(off, &v.to_le_bytes());
    }

    fn r(t: &mut MmioTransport, off: u64) -> u32 {
        let mut b = [0u8; 4];
        t.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    fn setup_queue(t: &mut MmioTransport) {
        w(t, REG_QUEUE_SEL, 0);
        w(t, REG_QUEUE_NUM, 16);
        w(t, REG_QUEUE_DESC_LOW, 0x1000);
        w(t, REG_QUEUE_DRIVER_LOW, 0x2000);
        w(t, REG_QUEUE_DEVICE_LOW, 0x3000);
        w(t, REG_QUEUE_READY, 1);
    }

    #[test]
    fn test_mmio_identity_registers() {
        let (mut t, _) = transport();
        assert_eq!(r(&mut t, REG_MAGIC), MAGIC_VALUE);
        assert_eq!(r(&mut t, REG_VERSION), 2);
        assert_eq!(r(&mut t, REG_DEVICE_ID), 4);
        w(&mut t, REG_DEVICE_FEATURES_SEL, 1);
        assert_eq!(r(&mut t, REG_DEVICE_FEATURES), 1);
        assert_eq!(r(&mut t, REG_QUEUE_NUM_MAX), 16);
        let mut cfg = [0u8; 2];
        t.read(CONFIG_SPACE, &mut cfg);
        assert_eq!(cfg, [0xaa, 0xbb]);
    }

    #[test]
    fn test_mmio_full_handshake_activates_with_acked_features() {
        let (mut t, log) = transport();
        w(&mut t, REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        w(&mut t, REG_DRIVER_FEATURES_SEL, 0);
        w(&mut t, REG_DRIVER_FEATURES, 0xffff_ffff); // asks for more than offered
        w(&mut t, REG_DRIVER_FEATURES_SEL, 1);
        w(&mut t, REG_DRIVER_FEATURES, 1);
        w(
            &mut t,
            REG_STATUS,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK,
        );
        assert_ne!(r(&mut t, REG_STATUS) & STATUS_FEATURES_OK, 0);
        setup_queue(&mut t);
        w(&mut t, REG_STATUS, 0xf);
        assert_eq!(
            *log.lock().expect("lock"),
            vec![(VIRTIO_F_VERSION_1 | 1, 1)]
        );
        // Queue registers are frozen once running.
        w(&mut t, REG_QUEUE_NUM, 2);
        w(&mut t, REG_STATUS, 0);
        assert_eq!(r(&mut t, REG_STATUS), 0);
    }

    #[test]
    fn test_mmio_legacy_driver_refused_features_ok() {
        let (mut t, log) = transport();
        w(&mut t, REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        w(&mut t, REG_DRIVER_FEATURES, 1);
        w(
            &mut t,
            REG_STATUS,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK,
        );
        assert_eq!(r(&mut t, REG_STATUS) & STATUS_FEATURES_OK, 0);
        w(&mut t, REG_STATUS, 0xf);
        assert!(log.lock().expect("lock").is_empty());
        assert_ne!(r(&mut t, REG_STATUS) & STATUS_NEEDS_RESET, 0);
    }

    #[test]
    fn test_mmio_queue_outside_memory_not_activated() {
        let (mut t, log) = transport();
        w(&mut t, REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        w(&mut t, REG_DRIVER_FEATURES_SEL, 1);
        w(&mut t, REG_DRIVER_FEATURES, 1);
        w(
            &mut t,
            REG_STATUS,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK,
        );
        setup_queue(&mut t);
        w(&mut t, REG_QUEUE_DEVICE_HIGH, 0x10); // used ring far beyond guest memory
        w(&mut t, REG_STATUS, 0xf);
        assert!(log.lock().expect("lock").is_empty());
        assert_ne!(r(&mut t, REG_STATUS) & STATUS_NEEDS_RESET, 0);
    }

    #[test]
    fn test_mmio_unaligned_or_short_access_ignored() {
        let (mut t, _) = transport();
        let mut b = [0xffu8; 2];
        t.read(REG_MAGIC, &mut b);
        assert_eq!(b, [0, 0]);
        t.write(REG_STATUS + 1, &[1, 0, 0, 0]);
        t.write(REG_STATUS, &[1]);
        assert_eq!(r(&mut t, REG_STATUS), 0);
        w(&mut t, REG_QUEUE_SEL, 7);
        assert_eq!(r(&mut t, REG_QUEUE_NUM_MAX), 0);
        w(&mut t, REG_QUEUE_NUM, 8); // no such queue: ignored
    }
}
