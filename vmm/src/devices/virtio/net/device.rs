//! The virtio-net device model: features, configuration space (section 5.1.4) and the
//! worker's lifecycle.

use std::sync::Arc;

use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6,
    VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_MAC, VIRTIO_NET_F_MRG_RXBUF,
    VIRTIO_NET_F_MTU, VIRTIO_NET_S_LINK_UP,
};
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use virtio_queue::QueueT;

use super::handler::NetHandler;
use super::tap::{Tap, TapIo};
use super::{QUEUE_SIZE, RX_QUEUE, TX_QUEUE};
use crate::devices::virtio::worker::Worker;
use crate::devices::virtio::{
    read_config_bytes, ActivateError, Activation, VirtioDevice, TYPE_NET, VIRTIO_F_VERSION_1,
};

const QUEUE_SIZES: [u16; 2] = [QUEUE_SIZE; 2];
/// `struct virtio_net_config` up to `mtu`: mac[6], status, max_virtqueue_pairs, mtu.
const CONFIG_LEN: usize = 12;

/// Offloads passed through the header. The guest may send partial checksums and TSO
/// packets (the tap validates each header); what it accepts (`GUEST_*`) is what the tap may
/// hand out, set with `TUNSETOFFLOAD` at activation.
const OFFLOAD_FEATURES: u64 = 1 << VIRTIO_NET_F_CSUM
    | 1 << VIRTIO_NET_F_GUEST_CSUM
    | 1 << VIRTIO_NET_F_HOST_TSO4
    | 1 << VIRTIO_NET_F_HOST_TSO6
    | 1 << VIRTIO_NET_F_GUEST_TSO4
    | 1 << VIRTIO_NET_F_GUEST_TSO6;

/// What the guest sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetDeviceConfig {
    pub mac: [u8; 6],
    /// Offered with `VIRTIO_NET_F_MTU`.
    pub mtu: u16,
}

/// A virtio-net device backed by a tap.
#[derive(Debug)]
pub struct Net {
    tap: Arc<dyn TapIo>,
    config: [u8; CONFIG_LEN],
    worker: Option<Worker>,
}

impl Net {
    pub fn new(tap: Tap, config: NetDeviceConfig) -> Self {
        tracing::debug!(tap = tap.name(), "virtio-net tap attached");
        Self::with_backend(Arc::new(tap), config)
    }

    pub(super) fn with_backend(tap: Arc<dyn TapIo>, config: NetDeviceConfig) -> Self {
        Self {
            tap,
            config: config_space(config),
            worker: None,
        }
    }

    fn stop_worker(&mut self) {
        if let Some(worker) = self.worker.take() {
            worker.stop();
        }
    }
}

/// `struct virtio_net_config`, little-endian. `status` reads LINK_UP although
/// `VIRTIO_NET_F_STATUS` is not offered (the driver then assumes the link is up anyway), and
/// `max_virtqueue_pairs` is 1.
fn config_space(config: NetDeviceConfig) -> [u8; CONFIG_LEN] {
    let mut space = [0u8; CONFIG_LEN];
    space[0..6].copy_from_slice(&config.mac);
    space[6..8].copy_from_slice(&(VIRTIO_NET_S_LINK_UP as u16).to_le_bytes());
    space[8..10].copy_from_slice(&1u16.to_le_bytes());
    space[10..12].copy_from_slice(&config.mtu.to_le_bytes());
    space
}

/// The tap offloads (`TUN_F_*`) that match what the driver accepted: frames with partial
/// checksums need `GUEST_CSUM`, TSO frames need `GUEST_TSO4`/`GUEST_TSO6` on top.
pub(super) fn tap_offload(driver_features: u64) -> u32 {
    let has = |bit: u32| driver_features & (1 << bit) != 0;
    if !has(VIRTIO_NET_F_GUEST_CSUM) {
        return 0;
    }
    let mut flags = libc::TUN_F_CSUM;
    if has(VIRTIO_NET_F_GUEST_TSO4) {
        flags |= libc::TUN_F_TSO4;
    }
    if has(VIRTIO_NET_F_GUEST_TSO6) {
        flags |= libc::TUN_F_TSO6;
    }
    flags
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        TYPE_NET
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn device_features(&self) -> u64 {
        VIRTIO_F_VERSION_1
            | 1 << VIRTIO_RING_F_EVENT_IDX
            | 1 << VIRTIO_RING_F_INDIRECT_DESC
            | 1 << VIRTIO_NET_F_MAC
            | 1 << VIRTIO_NET_F_MTU
            | 1 << VIRTIO_NET_F_MRG_RXBUF
            | OFFLOAD_FEATURES
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    // write_config: the default ignores writes; the MAC is not writable without
    // VIRTIO_NET_F_CTRL_MAC_ADDR and legacy drivers are not served.

    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError> {
        let expected = QUEUE_SIZES.len();
        for actual in [activation.queues.len(), activation.queue_events.len()] {
            if actual != expected {
                return Err(ActivateError::QueueCount { expected, actual });
            }
        }
        self.stop_worker();
        let features = activation.driver_features;
        self.tap
            .set_offload(tap_offload(features))
            .map_err(ActivateError::Backend)?;
        let event_idx = features & (1 << VIRTIO_RING_F_EVENT_IDX) != 0;
        let mut queues = activation.queues;
        for queue in &mut queues {
            queue.set_event_idx(event_idx);
        }
        let mut events = activation.queue_events;
        let (Some(tx_kick), Some(rx_kick)) = (events.pop(), events.pop()) else {
            return Err(ActivateError::QueueCount {
                expected,
                actual: 0,
            });
        };
        let tx = queues.swap_remove(TX_QUEUE);
        let rx = queues.swap_remove(RX_QUEUE);
        let handler = NetHandler::new(
            activation.mem,
            rx,
            tx,
            Arc::clone(&self.tap),
            activation.interrupt,
            features & (1 << VIRTIO_NET_F_MRG_RXBUF) != 0,
        );
        let worker = Worker::spawn("virtio-net", move |stop| {
            handler.run(rx_kick, tx_kick, stop)
        })
        .map_err(ActivateError::Worker)?;
        self.worker = Some(worker);
        Ok(())
    }

    fn reset(&mut self) {
        self.stop_worker();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::block::testing::{guest_bytes, memory, push_chain, used};
    use crate::devices::virtio::interrupt::tests::CountingIrq;
    use crate::devices::virtio::net::tap::tests::{in_new_netns, ip};
    use crate::devices::virtio::net::testing::{rx_frame, tx_frame, FakeTap, Setup, A, B};
    use crate::devices::virtio::VirtioInterrupt;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};
    use virtio_queue::mock::MockSplitQueue;
    use virtio_queue::Queue;
    use vm_memory::GuestAddress;
    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

    const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

    fn net(tap: Arc<FakeTap>) -> Net {
        Net::with_backend(
            tap,
            NetDeviceConfig {
                mac: MAC,
                mtu: 9000,
            },
        )
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn test_net_device_reports_type_features_and_config() {
        let dev = net(Arc::new(FakeTap::default()));
        let mut config = [0xffu8; 16];

        dev.read_config(0, &mut config);

        let features = dev.device_features();
        assert_eq!(dev.device_type(), TYPE_NET);
        assert_eq!(dev.queue_max_sizes(), &[256, 256]);
        for bit in [
            VIRTIO_NET_F_MAC,
            VIRTIO_NET_F_MTU,
            VIRTIO_NET_F_MRG_RXBUF,
            VIRTIO_NET_F_CSUM,
            VIRTIO_NET_F_GUEST_CSUM,
            VIRTIO_NET_F_HOST_TSO4,
            VIRTIO_NET_F_HOST_TSO6,
            VIRTIO_NET_F_GUEST_TSO4,
            VIRTIO_NET_F_GUEST_TSO6,
        ] {
            assert_ne!(features & (1 << bit), 0, "bit {bit}");
        }
        assert_ne!(features & VIRTIO_F_VERSION_1, 0);
        assert_eq!(features & (1 << 17), 0, "no control queue");
        assert_eq!(features & (1 << 22), 0, "no multiqueue");
        assert_eq!(&config[..6], &MAC);
        assert_eq!(u16::from_le_bytes([config[10], config[11]]), 9000);
        assert_eq!(&config[12..], &[0; 4]);
    }

    #[test]
    fn test_net_device_config_writes_ignored() {
        let mut dev = net(Arc::new(FakeTap::default()));

        dev.write_config(0, &[0xff; 6]);

        let mut mac = [0u8; 6];
        dev.read_config(0, &mut mac);
        assert_eq!(mac, MAC);
    }

    #[test]
    fn test_net_tap_offload_follows_guest_features_only() {
        let bits = |bits: &[u32]| bits.iter().fold(0u64, |f, b| f | 1 << b);
        let host_only = bits(&[
            VIRTIO_NET_F_CSUM,
            VIRTIO_NET_F_HOST_TSO4,
            VIRTIO_NET_F_HOST_TSO6,
        ]);
        let all_guest = bits(&[
            VIRTIO_NET_F_GUEST_CSUM,
            VIRTIO_NET_F_GUEST_TSO4,
            VIRTIO_NET_F_GUEST_TSO6,
        ]);

        assert_eq!(tap_offload(host_only), 0);
        assert_eq!(tap_offload(bits(&[VIRTIO_NET_F_GUEST_TSO4])), 0);
        assert_eq!(
            tap_offload(bits(&[VIRTIO_NET_F_GUEST_CSUM])),
            libc::TUN_F_CSUM
        );
        assert_eq!(
            tap_offload(all_guest | host_only),
            libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6
        );
    }

    #[test]
    fn test_net_activate_one_queue_fails_with_queue_count() {
        let mut dev = net(Arc::new(FakeTap::default()));
        let activation = Activation {
            mem: memory(0x1_0000),
            driver_features: VIRTIO_F_VERSION_1,
            queues: vec![Queue::new(16).expect("queue")],
            queue_events: vec![EventFd::new(0).expect("eventfd")],
            interrupt: Arc::new(VirtioInterrupt::new(Box::new(CountingIrq::default()))),
        };

        let result = dev.activate(activation);

        assert!(matches!(
            result,
            Err(ActivateError::QueueCount {
                expected: 2,
                actual: 1
            })
        ));
    }

    #[test]
    fn test_net_activate_serves_both_directions_then_reset_stops() {
        let s = Setup::new(false);
        let mut dev = net(s.tap.clone());
        let rx_kick = EventFd::new(EFD_NONBLOCK).expect("eventfd");
        let tx_kick = EventFd::new(EFD_NONBLOCK).expect("eventfd");
        let features = VIRTIO_F_VERSION_1 | 1 << VIRTIO_NET_F_GUEST_CSUM;
        dev.activate(Activation {
            mem: s.mem.clone(),
            driver_features: features,
            queues: vec![
                s.rxq.create_queue().expect("queue"),
                s.txq.create_queue().expect("queue"),
            ],
            queue_events: vec![
                rx_kick.try_clone().expect("clone"),
                tx_kick.try_clone().expect("clone"),
            ],
            interrupt: Arc::new(VirtioInterrupt::new(Box::new(s.irq.clone()))),
        })
        .expect("activate");

        // A frame arrives before the guest has buffers: it waits in the tap.
        s.tap.push_inbound(rx_frame(&[0x42; 60]));
        std::thread::sleep(Duration::from_millis(20));
        let rx_before = s.rxq.used().idx().load();
        push_chain(&s.rxq, 0, &[(A, 1526, true)]);
        rx_kick.write(1).expect("kick rx");
        wait_for("rx used", || s.rxq.used().idx().load() == 1);
        tx_frame(&s.mem, B, &[0x24; 60]);
        push_chain(&s.txq, 0, &[(B, 72, false)]);
        tx_kick.write(1).expect("kick tx");
        wait_for("tx used", || s.txq.used().idx().load() == 1);
        dev.reset();
        dev.reset();

        assert_eq!(rx_before, 0);
        assert_eq!(used(&s.rxq, 0), (72, 0));
        assert_eq!(guest_bytes(&s.mem, A + 12, 60), vec![0x42; 60]);
        assert_eq!(s.tap.sent().len(), 1);
        assert_eq!(*s.tap.offload.lock().expect("lock"), Some(libc::TUN_F_CSUM));
        assert!(s.irq.0.load(Ordering::SeqCst) >= 2);
        assert!(dev.worker.is_none());
    }

    /// An ARP request for 10.0.0.1 from 10.0.0.2 (`MAC`), headed by a zero vnet header.
    fn arp_request() -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0xff; 6]);
        f.extend_from_slice(&MAC);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&MAC);
        f.extend_from_slice(&[10, 0, 0, 2]);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&[10, 0, 0, 1]);
        f.resize(12 + 60, 0);
        f
    }

    #[test]
    fn test_net_device_real_tap_in_netns_arp_answered() {
        let frames = in_new_netns(|| {
            let tap = Tap::open("zvnet0").expect("create tap");
            ip("addr add 10.0.0.1/24 dev zvnet0");
            ip("link set zvnet0 up");
            let mem: &'static _ = Box::leak(Box::new(memory(0x10_0000)));
            let rxq = MockSplitQueue::create(mem, GuestAddress(0x8_0000), 16);
            let txq = MockSplitQueue::create(mem, GuestAddress(0x9_0000), 16);
            let irq = CountingIrq::default();
            let mut h = NetHandler::new(
                mem.clone(),
                rxq.create_queue().expect("rx queue"),
                txq.create_queue().expect("tx queue"),
                Arc::new(tap),
                Arc::new(VirtioInterrupt::new(Box::new(irq))),
                true,
            );
            vm_memory::Bytes::write_slice(mem, &arp_request(), GuestAddress(A))
                .expect("write request");
            push_chain(&txq, 0, &[(A, 12, false), (A + 12, 60, false)]);
            for i in 0..8u16 {
                push_chain(&rxq, i, &[(0x2_0000 + u64::from(i) * 0x1000, 2048, true)]);
            }

            h.process_tx();
            // The kernel may also send IPv6 chatter; collect frames until the ARP reply.
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut frames = Vec::new();
            while Instant::now() < deadline && frames.len() < 8 {
                h.process_rx();
                let n = usize::from(rxq.used().idx().load());
                while frames.len() < n {
                    let (len, id) = used(&rxq, frames.len());
                    let addr = 0x2_0000 + u64::from(id) * 0x1000;
                    frames.push(guest_bytes(mem, addr, len as usize));
                }
                let is_arp_reply = |f: &Vec<u8>| f.len() >= 42 && f[24..26] == [0x08, 0x06];
                if frames.iter().any(is_arp_reply) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            frames
        });

        let reply = frames
            .iter()
            .find(|f| f.len() >= 54 && f[24..26] == [0x08, 0x06])
            .unwrap_or_else(|| panic!("no ARP reply among {} frames", frames.len()));
        assert_eq!(&reply[10..12], &1u16.to_le_bytes(), "num_buffers");
        assert_eq!(&reply[12..18], &MAC, "to the guest's MAC");
        assert_eq!(&reply[32..34], &[0, 2], "ARP reply");
        assert_eq!(&reply[40..44], &[10, 0, 0, 1], "from 10.0.0.1");
    }
}
