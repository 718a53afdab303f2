//! The virtio-blk device model: features, configuration space and the worker lifecycle.

use std::path::PathBuf;
use std::sync::Arc;

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX,
    VIRTIO_BLK_F_SIZE_MAX,
};

use super::disk::DiskImage;
use super::handler::BlockHandler;
use super::{BlockError, QUEUE_SIZE, SECTOR_SIZE, SEG_MAX, SIZE_MAX};
use crate::devices::virtio::worker::Worker;
use crate::devices::virtio::{
    read_config_bytes, ActivateError, Activation, SingleQueue, VirtioDevice, TYPE_BLOCK,
    VIRTIO_F_VERSION_1,
};

/// Bytes of `struct virtio_blk_config` we fill: capacity, size_max, seg_max, geometry, blk_size.
/// Later fields (topology, writeback, ...) belong to features we do not offer and read as 0.
const CONFIG_LEN: usize = 24;

/// What to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockConfig {
    /// A raw image: a regular file (or block device) whose size is a multiple of 512.
    pub path: PathBuf,
    /// Open the image read-only and offer `VIRTIO_BLK_F_RO`.
    pub read_only: bool,
}

/// A virtio-blk device backed by a raw image.
#[derive(Debug)]
pub struct Block {
    disk: Arc<DiskImage>,
    config: [u8; CONFIG_LEN],
    worker: Option<Worker>,
}

impl Block {
    /// Opens the image. Fails if it is missing, not a file, empty or not whole sectors.
    pub fn new(config: BlockConfig) -> Result<Self, BlockError> {
        let disk = DiskImage::open(&config.path, config.read_only)?;
        tracing::debug!(
            path = %config.path.display(),
            sectors = disk.sectors(),
            read_only = disk.read_only(),
            "virtio-blk disk opened"
        );
        Ok(Self {
            config: config_space(disk.sectors()),
            disk: Arc::new(disk),
            worker: None,
        })
    }

    /// Capacity in 512-byte sectors.
    pub fn capacity(&self) -> u64 {
        self.disk.sectors()
    }

    fn stop_worker(&mut self) {
        if let Some(worker) = self.worker.take() {
            worker.stop();
        }
    }
}

/// `struct virtio_blk_config` (section 5.2.4), little-endian.
fn config_space(sectors: u64) -> [u8; CONFIG_LEN] {
    let mut config = [0u8; CONFIG_LEN];
    config[0..8].copy_from_slice(&sectors.to_le_bytes());
    config[8..12].copy_from_slice(&SIZE_MAX.to_le_bytes());
    config[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
    // 16..20 is the geometry, which we do not offer.
    config[20..24].copy_from_slice(&(SECTOR_SIZE as u32).to_le_bytes());
    config
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        TYPE_BLOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn device_features(&self) -> u64 {
        let mut features = VIRTIO_F_VERSION_1
            | 1 << VIRTIO_BLK_F_SIZE_MAX
            | 1 << VIRTIO_BLK_F_SEG_MAX
            | 1 << VIRTIO_BLK_F_BLK_SIZE
            | 1 << VIRTIO_BLK_F_FLUSH;
        if self.disk.read_only() {
            features |= 1 << VIRTIO_BLK_F_RO;
        }
        features
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError> {
        let SingleQueue {
            mem,
            queue,
            queue_evt,
            interrupt,
        } = activation.into_single_queue()?;
        self.stop_worker();
        let handler = BlockHandler::new(mem, queue, Arc::clone(&self.disk), interrupt);
        let worker = Worker::spawn("virtio-blk", move |stop| handler.run(queue_evt, stop))
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
    use crate::devices::virtio::block::testing::{header_bytes, memory, push_chain};
    use crate::devices::virtio::interrupt::tests::CountingIrq;
    use crate::devices::virtio::VirtioInterrupt;
    use std::io::Write;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};
    use virtio_bindings::virtio_blk::{VIRTIO_BLK_S_OK, VIRTIO_BLK_T_FLUSH};
    use virtio_queue::mock::MockSplitQueue;
    use virtio_queue::{Queue, QueueT};
    use vm_memory::{Bytes, GuestAddress};
    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

    fn image(sectors: usize) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("create temp file");
        file.write_all(&vec![0; sectors * 512])
            .expect("fill temp file");
        file
    }

    fn block(file: &tempfile::NamedTempFile, read_only: bool) -> Block {
        Block::new(BlockConfig {
            path: file.path().to_path_buf(),
            read_only,
        })
        .expect("open block device")
    }

    fn config_u32(block: &Block, offset: u64) -> u32 {
        let mut raw = [0u8; 4];
        block.read_config(offset, &mut raw);
        u32::from_le_bytes(raw)
    }

    #[test]
    fn test_block_new_missing_path_fails_with_stat() {
        let dir = tempfile::tempdir().expect("create temp dir");

        let result = Block::new(BlockConfig {
            path: dir.path().join("missing.img"),
            read_only: false,
        });

        assert!(matches!(result, Err(BlockError::Stat { .. })));
    }

    #[test]
    fn test_block_features_read_only_offers_ro() {
        let file = image(1);

        let features = block(&file, true).device_features();

        assert_ne!(features & VIRTIO_F_VERSION_1, 0);
        assert_ne!(features & (1 << VIRTIO_BLK_F_RO), 0);
        assert_ne!(features & (1 << VIRTIO_BLK_F_FLUSH), 0);
    }

    #[test]
    fn test_block_features_read_write_omits_ro() {
        let file = image(1);

        let features = block(&file, false).device_features();

        assert_eq!(features & (1 << VIRTIO_BLK_F_RO), 0);
    }

    #[test]
    fn test_block_config_space_reports_capacity_and_limits() {
        let file = image(6);
        let block = block(&file, false);
        let mut capacity = [0u8; 8];

        block.read_config(0, &mut capacity);

        assert_eq!(u64::from_le_bytes(capacity), 6);
        assert_eq!(block.capacity(), 6);
        assert_eq!(config_u32(&block, 8), SIZE_MAX);
        assert_eq!(config_u32(&block, 12), SEG_MAX);
        assert_eq!(config_u32(&block, 20), 512);
        assert_eq!(config_u32(&block, 200), 0);
    }

    #[test]
    fn test_block_activate_two_queues_fails_with_queue_count() {
        let file = image(1);
        let mut block = block(&file, false);
        let mem = memory(0x1_0000);
        let activation = Activation {
            mem,
            driver_features: block.device_features(),
            queues: vec![
                Queue::new(16).expect("queue"),
                Queue::new(16).expect("queue"),
            ],
            queue_events: vec![EventFd::new(0).expect("eventfd")],
            interrupt: Arc::new(VirtioInterrupt::new(Box::new(CountingIrq::default()))),
        };

        let result = block.activate(activation);

        assert!(matches!(
            result,
            Err(ActivateError::QueueCount {
                expected: 1,
                actual: 2
            })
        ));
    }

    #[test]
    fn test_block_activate_kick_serves_request_then_reset_stops() {
        let file = image(1);
        let mut block = block(&file, false);
        let mem = memory(0x10_0000);
        let vq = MockSplitQueue::new(&mem, 16);
        let kick = EventFd::new(EFD_NONBLOCK).expect("eventfd");
        let irq = CountingIrq::default();
        let activation = Activation {
            mem: mem.clone(),
            driver_features: block.device_features(),
            queues: vec![vq.create_queue().expect("queue")],
            queue_events: vec![kick.try_clone().expect("clone eventfd")],
            interrupt: Arc::new(VirtioInterrupt::new(Box::new(irq.clone()))),
        };
        block.activate(activation).expect("activate");
        mem.write_slice(&header_bytes(VIRTIO_BLK_T_FLUSH, 0), GuestAddress(0x1_0000))
            .expect("write header");
        mem.write_obj(0xffu8, GuestAddress(0x2_0000))
            .expect("mark status");
        push_chain(&vq, 0, &[(0x1_0000, 16, false), (0x2_0000, 1, true)]);

        kick.write(1).expect("kick");
        let deadline = Instant::now() + Duration::from_secs(10);
        while irq.0.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        block.reset();
        block.reset();

        let status: u8 = mem.read_obj(GuestAddress(0x2_0000)).expect("read status");
        assert_eq!(irq.0.load(Ordering::SeqCst), 1);
        assert_eq!(status, VIRTIO_BLK_S_OK as u8);
        assert!(block.worker.is_none());
    }
}
