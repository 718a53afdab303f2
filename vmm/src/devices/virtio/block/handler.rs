//! The virtio-blk request queue, served on the device's worker thread.

use std::sync::Arc;

use virtio_queue::desc::split::Descriptor;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemory};
use vmm_sys_util::eventfd::EventFd;

use super::disk::DiskImage;
use super::request::{self, Malformed, STATUS_OK};
use super::{BlockError, SIZE_MAX};
use crate::devices::virtio::worker::serve_queue;
use crate::devices::virtio::{GuestMemory as GuestMem, VirtioInterrupt};

/// What finishing one chain produced.
#[derive(Debug)]
struct Completion {
    /// Bytes written into guest memory (the used ring's `len`).
    used: u32,
    /// Why the request failed, for the log.
    error: Option<BlockError>,
}

/// Owns the queue while the device is active.
#[derive(Debug)]
pub(super) struct BlockHandler {
    mem: GuestMem,
    queue: Queue,
    disk: Arc<DiskImage>,
    interrupt: Arc<VirtioInterrupt>,
    bounce: Vec<u8>,
    /// A guest mistake was logged already; the guest controls how often they happen.
    logged_guest_error: bool,
    /// A backend failure was logged already; a full or broken disk fails every request.
    logged_host_error: bool,
}

impl BlockHandler {
    pub(super) fn new(
        mem: GuestMem,
        queue: Queue,
        disk: Arc<DiskImage>,
        interrupt: Arc<VirtioInterrupt>,
    ) -> Self {
        Self {
            mem,
            queue,
            disk,
            interrupt,
            bounce: vec![0; SIZE_MAX as usize],
            logged_guest_error: false,
            logged_host_error: false,
        }
    }

    /// Serves the queue until `stop` becomes readable.
    pub(super) fn run(mut self, queue_evt: EventFd, stop: EventFd) {
        if let Err(e) = serve_queue(&queue_evt, &stop, || self.drain()) {
            tracing::error!(error = %e, "virtio-blk worker stopped");
        }
    }

    /// Serves what is available, logging (rate-limited) what went wrong.
    fn drain(&mut self) {
        if let Err(e) = self.process_queue() {
            self.log(&e);
        }
    }

    /// Serves every available request and signals the guest if any were used.
    /// Returns how many chains were returned to the driver.
    pub(super) fn process_queue(&mut self) -> Result<usize, BlockError> {
        let mem = &self.mem;
        let chains: Vec<_> = self.queue.iter(mem).map_err(BlockError::Iterate)?.collect();
        let mut used = 0;
        let mut first_error = None;
        for chain in chains {
            let head = chain.head_index();
            let done = serve(mem, &self.disk, &mut self.bounce, chain);
            self.queue
                .add_used(mem, head, done.used)
                .map_err(BlockError::AddUsed)?;
            used += 1;
            if first_error.is_none() {
                first_error = done.error;
            }
        }
        if let Some(e) = first_error {
            self.log(&e);
        }
        if used > 0
            && self
                .queue
                .needs_notification(&self.mem)
                .map_err(BlockError::AddUsed)?
        {
            self.interrupt
                .signal_used_queue()
                .map_err(BlockError::Notify)?;
        }
        Ok(used)
    }

    /// Logs the first guest mistake and the first backend failure; drops the rest.
    fn log(&mut self, error: &BlockError) {
        let logged = if error.is_host_error() {
            &mut self.logged_host_error
        } else {
            &mut self.logged_guest_error
        };
        if !*logged {
            *logged = true;
            tracing::warn!(error = %error, "virtio-blk request failed; further failures of this kind are not logged");
        }
    }
}

/// Parses and performs one chain, then writes its status byte.
fn serve<M: GuestMemory>(
    mem: &M,
    disk: &DiskImage,
    bounce: &mut [u8],
    chain: impl IntoIterator<Item = Descriptor>,
) -> Completion {
    let req = match request::parse(mem, chain) {
        Ok(req) => req,
        Err(Malformed {
            status: Some(status),
            error,
        }) => return finish(mem, status, request::status_for(&error), 0, Some(error)),
        Err(Malformed {
            status: None,
            error,
        }) => {
            return Completion {
                used: 0,
                error: Some(error),
            }
        }
    };
    match req.execute(mem, disk, bounce) {
        Ok(written) => finish(mem, req.status, STATUS_OK, written, None),
        Err(error) => finish(mem, req.status, request::status_for(&error), 0, Some(error)),
    }
}

/// Writes the status byte; the used length counts it only if it landed.
fn finish<M: GuestMemory>(
    mem: &M,
    status_addr: GuestAddress,
    status: u8,
    written: u32,
    error: Option<BlockError>,
) -> Completion {
    match mem.write_obj(status, status_addr) {
        Ok(()) => Completion {
            used: written.saturating_add(1),
            error,
        },
        Err(e) => Completion {
            used: 0,
            error: Some(BlockError::WriteStatus(e)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::block::testing::{
        guest_bytes, header_bytes, memory, patterned_disk, push_chain, used,
    };
    use crate::devices::virtio::interrupt::tests::CountingIrq;
    use std::sync::atomic::Ordering;
    use virtio_bindings::virtio_blk::{
        VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_FLUSH,
        VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
    };
    use virtio_queue::mock::MockSplitQueue;

    const HEADER: u64 = 0x1_0000;
    const DATA: u64 = 0x2_0000;
    const STATUS: u64 = 0x3_0000;
    const DISK_SECTORS: usize = 8;

    struct Setup {
        mem: GuestMem,
        irq: CountingIrq,
        file: tempfile::NamedTempFile,
    }

    impl Setup {
        fn new() -> Self {
            Self {
                mem: memory(0x10_0000),
                irq: CountingIrq::default(),
                file: patterned_disk(DISK_SECTORS),
            }
        }

        fn handler(&self, vq: &MockSplitQueue<'_, GuestMem>, read_only: bool) -> BlockHandler {
            let disk = DiskImage::open(self.file.path(), read_only).expect("open disk");
            let queue = vq.create_queue().expect("create queue");
            let interrupt = VirtioInterrupt::new(Box::new(self.irq.clone()));
            BlockHandler::new(self.mem.clone(), queue, Arc::new(disk), Arc::new(interrupt))
        }

        fn write_header(&self, kind: u32, sector: u64) {
            self.mem
                .write_slice(&header_bytes(kind, sector), GuestAddress(HEADER))
                .expect("write header");
        }

        fn status(&self) -> u8 {
            self.mem
                .read_obj(GuestAddress(STATUS))
                .expect("read status")
        }

        fn guest_bytes(&self, addr: u64, len: usize) -> Vec<u8> {
            guest_bytes(&self.mem, addr, len)
        }
    }

    fn request(vq: &MockSplitQueue<'_, GuestMem>, data: &[(u64, u32, bool)]) {
        let mut chain = vec![(HEADER, 16, false)];
        chain.extend_from_slice(data);
        chain.push((STATUS, 1, true));
        push_chain(vq, 0, &chain);
    }

    #[test]
    fn test_block_read_returns_file_bytes() {
        let s = Setup::new();
        let vq = MockSplitQueue::new(&s.mem, 16);
        let mut handler = s.handler(&vq, false);
        s.write_header(VIRTIO_BLK_T_IN, 1);
        request(&vq, &[(DATA, 512, true), (DATA + 0x1000, 512, true)]);

        let served = handler.process_queue().expect("process queue");

        let file = std::fs::read(s.file.path()).expect("read disk");
        assert_eq!(served, 1);
        assert_eq!(s.status(), VIRTIO_BLK_S_OK as u8);
        assert_eq!(s.guest_bytes(DATA, 512), file[512..1024]);
        assert_eq!(s.guest_bytes(DATA + 0x1000, 512), file[1024..1536]);
        assert_eq!(used(&vq, 0), (1025, 0));
        assert_eq!(s.irq.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn test_block_write_lands_in_file_and_reads_back() {
        let s = Setup::new();
        let vq = MockSplitQueue::new(&s.mem, 16);
        let mut handler = s.handler(&vq, false);
        s.mem
            .write_slice(&[0x5a; 1024], GuestAddress(DATA))
            .expect("fill data");
        s.write_header(VIRTIO_BLK_T_OUT, 2);
        request(&vq, &[(DATA, 1024, false)]);
        handler.process_queue().expect("process write");
        s.mem
            .write_slice(&[0; 1024], GuestAddress(DATA))
            .expect("clear data");
        s.write_header(VIRTIO_BLK_T_IN, 2);
        request(&vq, &[(DATA, 1024, true)]);

        handler.process_queue().expect("process read");

        let file = std::fs::read(s.file.path()).expect("read disk");
        assert!(file[1024..2048].iter().all(|&b| b == 0x5a));
        assert_eq!(file[2048], (2048 % 251) as u8);
        assert_eq!(s.guest_bytes(DATA, 1024), vec![0x5a; 1024]);
        assert_eq!(used(&vq, 0), (1, 0));
        assert_eq!(used(&vq, 1), (1025, 0));
    }

    #[test]
    fn test_block_flush_succeeds() {
        let s = Setup::new();
        let vq = MockSplitQueue::new(&s.mem, 16);
        let mut handler = s.handler(&vq, false);
        s.write_header(VIRTIO_BLK_T_FLUSH, 0);
        request(&vq, &[]);

        handler.process_queue().expect("process queue");

        assert_eq!(s.status(), VIRTIO_BLK_S_OK as u8);
        assert_eq!(used(&vq, 0), (1, 0));
    }

    #[test]
    fn test_block_write_read_only_fails_with_ioerr_and_file_unchanged() {
        let s = Setup::new();
        let vq = MockSplitQueue::new(&s.mem, 16);
        let mut handler = s.handler(&vq, true);
        let before = std::fs::read(s.file.path()).expect("read disk");
        s.mem
            .write_slice(&[0x5a; 512], GuestAddress(DATA))
            .expect("fill data");
        s.write_header(VIRTIO_BLK_T_OUT, 0);
        request(&vq, &[(DATA, 512, false)]);

        handler.process_queue().expect("process queue");

        assert_eq!(s.status(), VIRTIO_BLK_S_IOERR as u8);
        assert_eq!(std::fs::read(s.file.path()).expect("read disk"), before);
    }

    #[test]
    fn test_block_flush_read_only_fails_with_ioerr() {
        let s = Setup::new();
        let vq = MockSplitQueue::new(&s.mem, 16);
        let mut handler = s.handler(&vq, true);
        s.write_header(VIRTIO_BLK_T_FLUSH, 0);
        request(&vq, &[]);

        handler.process_queue().expect("process queue");

        assert_eq!(s.status(), VIRTIO_BLK_S_IOERR as u8);
    }

    #[test]
    fn test_block_read_past_capacity_fails_with_ioerr_and_no_data() {
        let s = Setup::new();
        let vq = MockSplitQueue::new(&s.mem, 16);
        let mut handler = s.handler(&vq, false);
        s.write_header(VIRTIO_BLK_T_IN, DISK_SECTORS as u64 - 1);
        request(&vq, &[(DATA, 1024, true)]);

        handler.process_queue().expect("process queue");

        assert_eq!(s.status(), VIRTIO_BLK_S_IOERR as u8);
        assert_eq!(s.guest_bytes(DATA, 1024), vec![0; 1024]);
        assert_eq!(used(&vq, 0), (1, 0));
    }

    #[test]
    fn test_block_write_overflowing_sector_fails_with_ioerr() {
        let s = Setup::new();
        let vq = MockSplitQueue::new(&s.mem, 16);
        let mut handler = s.handler(&vq, false);
        let before = std::fs::read(s.file.path()).expect("read disk");
        s.write_header(VIRTIO_BLK_T_OUT, u64::MAX / 512);
        request(&vq, &[(DATA, 512, false)]);

        handler.process_queue().expect("process queue");

        assert_eq!(s.status(), VIRTIO_BLK_S_IOERR as u8);
        assert_eq!(std::fs::read(s.file.path()).expect("read disk"), before);
    }

    #[test]
    fn test_block_header_in_writable_descriptor_fails_with_ioerr() {
        let s = Setup::new();
        let vq = MockSplitQueue::new(&s.mem, 16);
        let mut handler = s.handler(&vq, false);
        s.write_header(VIRTIO_BLK_T_IN, 0);
        push_chain(
            &vq,
            0,
            &[(HEADER, 16, true), (DATA, 512, true), (STATUS, 1, true)],
        );

        handler.process_queue().expect("process queue");

        assert_eq!(s.status(), VIRTIO_BLK_S_IOERR as u8);
        assert_eq!(used(&vq, 0), (1, 0));
    }

    #[test]
    fn test_block_missing_status_returns_chain_unanswered() {
        let s = Setup::new();
        let vq = MockSplitQueue::new(&s.mem, 16);
        let mut handler = s.handler(&vq, false);
        s.mem
            .write_obj(0xeeu8, GuestAddress(STATUS))
            .expect("mark status");
        s.write_header(VIRTIO_BLK_T_FLUSH, 0);
        push_chain(&vq, 0, &[(HEADER, 16, false), (DATA, 512, false)]);
        push_chain(&vq, 2, &[(HEADER, 16, false), (STATUS, 1, true)]);

        let served = handler.process_queue().expect("process queue");

        assert_eq!(served, 2);
        assert_eq!(used(&vq, 0), (0, 0));
        assert_eq!(used(&vq, 1), (1, 2));
        assert_eq!(s.status(), VIRTIO_BLK_S_OK as u8);
        assert_eq!(s.irq.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn test_block_unaligned_length_fails_with_ioerr() {
        let s = Setup::new();
        let vq = MockSplitQueue::new(&s.mem, 16);
        let mut handler = s.handler(&vq, false);
        s.write_header(VIRTIO_BLK_T_IN, 0);
        request(&vq, &[(DATA, 100, true)]);

        handler.process_queue().expect("process queue");

        assert_eq!(s.status(), VIRTIO_BLK_S_IOERR as u8);
        assert_eq!(s.guest_bytes(DATA, 100), vec![0; 100]);
    }

    #[test]
    fn test_block_get_id_writes_serial() {
        let s = Setup::new();
        let vq = MockSplitQueue::new(&s.mem, 16);
        let mut handler = s.handler(&vq, false);
        s.write_header(VIRTIO_BLK_T_GET_ID, 0);
        request(&vq, &[(DATA, 20, true)]);

        handler.process_queue().expect("process queue");

        let name = s.file.path().file_name().expect("temp file has a name");
        let name = name.to_str().expect("temp names are ASCII").as_bytes();
        let expected: Vec<u8> = name
            .iter()
            .copied()
            .chain(std::iter::repeat(0))
            .take(20)
            .collect();
        assert_eq!(s.status(), VIRTIO_BLK_S_OK as u8);
        assert_eq!(s.guest_bytes(DATA, 20), expected);
        assert_eq!(used(&vq, 0), (21, 0));
    }

    #[test]
    fn test_block_unsupported_type_fails_with_unsupp() {
        let s = Setup::new();
        let vq = MockSplitQueue::new(&s.mem, 16);
        let mut handler = s.handler(&vq, false);
        s.write_header(11, 0);
        request(&vq, &[(DATA, 16, false)]);

        handler.process_queue().expect("process queue");

        assert_eq!(s.status(), VIRTIO_BLK_S_UNSUPP as u8);
        assert_eq!(used(&vq, 0), (1, 0));
    }

    #[test]
    fn test_block_status_outside_memory_returns_zero_len() {
        let s = Setup::new();
        let vq = MockSplitQueue::new(&s.mem, 16);
        let mut handler = s.handler(&vq, false);
        s.write_header(VIRTIO_BLK_T_FLUSH, 0);
        push_chain(&vq, 0, &[(HEADER, 16, false), (0x20_0000, 1, true)]);

        handler.process_queue().expect("process queue");

        assert_eq!(used(&vq, 0), (0, 0));
    }

    #[test]
    fn test_block_empty_queue_does_not_signal() {
        let s = Setup::new();
        let vq = MockSplitQueue::new(&s.mem, 16);
        let mut handler = s.handler(&vq, false);

        let served = handler.process_queue().expect("process queue");

        assert_eq!(served, 0);
        assert_eq!(s.irq.0.load(Ordering::SeqCst), 0);
    }
}
