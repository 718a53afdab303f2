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
    read_config_bytes, ActivateError, Activation, VirtioDevice, TYPE_BLOCK, VIRTIO_F_VERSION_1,
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
        let Activation {
            mem,
            queues,
            queue_events,
            interrupt,
            ..
        } = activation;
        let actual = if queues.len() == 1 {
            queue_events.len()
        } else {
            queues.len()
        };
        let (Ok([queue]), Ok([queue_evt])) =
            (<[_; 1]>::try_from(queues), <[_; 1]>::try_from(queue_events))
        else {
            return Err(ActivateError::QueueCount {
                expected: 1,
                actual,
            });
        };
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
