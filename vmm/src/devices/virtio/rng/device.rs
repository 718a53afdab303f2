//! The virtio-rng device model: no features beyond `VERSION_1`, no configuration space.

use std::fs::File;
use std::sync::Arc;

use super::handler::RngHandler;
use super::{RngError, ENTROPY_SOURCE, QUEUE_SIZE};
use crate::devices::virtio::worker::Worker;
use crate::devices::virtio::{
    ActivateError, Activation, SingleQueue, VirtioDevice, TYPE_RNG, VIRTIO_F_VERSION_1,
};

/// An entropy device fed by the host's `/dev/urandom`.
#[derive(Debug)]
pub struct Rng {
    source: Arc<File>,
    worker: Option<Worker>,
}

impl Rng {
    /// Opens the entropy source.
    pub fn new() -> Result<Self, RngError> {
        let source = File::open(ENTROPY_SOURCE).map_err(RngError::Open)?;
        Ok(Self {
            source: Arc::new(source),
            worker: None,
        })
    }

    fn stop_worker(&mut self) {
        if let Some(worker) = self.worker.take() {
            worker.stop();
        }
    }
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        TYPE_RNG
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn device_features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }

    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        // virtio-rng has no configuration space (section 5.4.4).
        data.fill(0);
    }

    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError> {
        let SingleQueue {
            mem,
            queue,
            queue_evt,
            interrupt,
        } = activation.into_single_queue()?;
        self.stop_worker();
        let handler = RngHandler::new(mem, queue, Arc::clone(&self.source), interrupt);
        let worker = Worker::spawn("virtio-rng", move |stop| handler.run(queue_evt, stop))
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
    use crate::devices::virtio::VirtioInterrupt;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};
    use virtio_queue::mock::MockSplitQueue;
    use virtio_queue::Queue;
    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

    #[test]
    fn test_rng_device_reports_type_features_and_empty_config() {
        let rng = Rng::new().expect("open entropy source");
        let mut config = [0xffu8; 8];

        rng.read_config(0, &mut config);

        assert_eq!(rng.device_type(), TYPE_RNG);
        assert_eq!(rng.device_features(), VIRTIO_F_VERSION_1);
        assert_eq!(rng.queue_max_sizes(), &[QUEUE_SIZE]);
        assert_eq!(config, [0; 8]);
    }

    #[test]
    fn test_rng_activate_no_queues_fails_with_queue_count() {
        let mut rng = Rng::new().expect("open entropy source");
        let activation = Activation {
            mem: memory(0x1_0000),
            driver_features: VIRTIO_F_VERSION_1,
            queues: Vec::<Queue>::new(),
            queue_events: Vec::new(),
            interrupt: Arc::new(VirtioInterrupt::new(Box::new(CountingIrq::default()))),
        };

        let result = rng.activate(activation);

        assert!(matches!(
            result,
            Err(ActivateError::QueueCount {
                expected: 1,
                actual: 0
            })
        ));
    }

    #[test]
    fn test_rng_activate_kick_fills_buffer_then_reset_stops() {
        let mut rng = Rng::new().expect("open entropy source");
        let mem = memory(0x10_0000);
        let vq = MockSplitQueue::new(&mem, 16);
        let kick = EventFd::new(EFD_NONBLOCK).expect("eventfd");
        let irq = CountingIrq::default();
        let activation = Activation {
            mem: mem.clone(),
            driver_features: VIRTIO_F_VERSION_1,
            queues: vec![vq.create_queue().expect("queue")],
            queue_events: vec![kick.try_clone().expect("clone eventfd")],
            interrupt: Arc::new(VirtioInterrupt::new(Box::new(irq.clone()))),
        };
        rng.activate(activation).expect("activate");
        push_chain(&vq, 0, &[(0x1_0000, 256, true)]);

        kick.write(1).expect("kick");
        let deadline = Instant::now() + Duration::from_secs(10);
        while irq.0.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        rng.reset();
        rng.reset();

        assert_eq!(irq.0.load(Ordering::SeqCst), 1);
        assert_eq!(used(&vq, 0), (256, 0));
        assert!(guest_bytes(&mem, 0x1_0000, 256).iter().any(|&b| b != 0));
        assert!(rng.worker.is_none());
    }
}
