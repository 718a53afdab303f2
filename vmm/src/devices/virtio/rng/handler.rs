//! The virtio-rng request queue, served on the device's worker thread.

use std::fs::File;
use std::io::Read;
use std::sync::Arc;

use virtio_queue::desc::split::Descriptor;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Address, Bytes, GuestMemory, GuestMemoryError};
use vmm_sys_util::eventfd::EventFd;

use super::{RngError, MAX_FILL_BYTES};
use crate::devices::virtio::worker::serve_queue;
use crate::devices::virtio::{GuestMemory as GuestMem, VirtioInterrupt};

/// Random bytes are read from the source and copied to the guest in pieces of this size.
const CHUNK: usize = 4096;

/// Owns the queue while the device is active.
#[derive(Debug)]
pub(super) struct RngHandler {
    mem: GuestMem,
    queue: Queue,
    source: Arc<File>,
    interrupt: Arc<VirtioInterrupt>,
    /// A guest mistake was logged already; the guest controls how often they happen.
    logged_guest_error: bool,
    /// A host failure was logged already; a broken source fails every request.
    logged_host_error: bool,
}

impl RngHandler {
    pub(super) fn new(
        mem: GuestMem,
        queue: Queue,
        source: Arc<File>,
        interrupt: Arc<VirtioInterrupt>,
    ) -> Self {
        Self {
            mem,
            queue,
            source,
            interrupt,
            logged_guest_error: false,
            logged_host_error: false,
        }
    }

    /// Serves the queue until `stop` becomes readable.
    pub(super) fn run(mut self, queue_evt: EventFd, stop: EventFd) {
        if let Err(e) = serve_queue(&queue_evt, &stop, || self.drain()) {
            tracing::error!(error = %e, "virtio-rng worker stopped");
        }
    }

    fn drain(&mut self) {
        if let Err(e) = self.process_queue() {
            self.log(&e);
        }
    }

    /// Fills every available chain and signals the guest if any were used.
    /// Returns how many chains were returned to the driver.
    pub(super) fn process_queue(&mut self) -> Result<usize, RngError> {
        let mem = &self.mem;
        let chains: Vec<_> = self.queue.iter(mem).map_err(RngError::Iterate)?.collect();
        let mut used = 0;
        let mut first_error = None;
        let mut buf = [0u8; CHUNK];
        for chain in chains {
            let head = chain.head_index();
            let (filled, error) = fill_chain(mem, &self.source, &mut buf, chain);
            self.queue
                .add_used(mem, head, filled)
                .map_err(RngError::AddUsed)?;
            used += 1;
            if first_error.is_none() {
                first_error = error;
            }
        }
        if let Some(e) = first_error {
            self.log(&e);
        }
        if used > 0
            && self
                .queue
                .needs_notification(&self.mem)
                .map_err(RngError::AddUsed)?
        {
            self.interrupt
                .signal_used_queue()
                .map_err(RngError::Notify)?;
        }
        Ok(used)
    }

    /// Logs the first guest mistake and the first host failure; drops the rest.
    fn log(&mut self, error: &RngError) {
        let logged = if error.is_host_error() {
            &mut self.logged_host_error
        } else {
            &mut self.logged_guest_error
        };
        if !*logged {
            *logged = true;
            tracing::warn!(error = %error, "virtio-rng request failed; further failures of this kind are not logged");
        }
    }
}

/// Fills the device-writable descriptors of `chain`, at most [`MAX_FILL_BYTES`] in total.
/// Returns the bytes filled (the used length) and what stopped the fill early, if anything.
fn fill_chain<M: GuestMemory>(
    mem: &M,
    mut source: &File,
    buf: &mut [u8],
    chain: impl IntoIterator<Item = Descriptor>,
) -> (u32, Option<RngError>) {
    let mut filled = 0u32;
    if buf.is_empty() {
        return (filled, None);
    }
    for desc in chain.into_iter().filter(Descriptor::is_write_only) {
        let budget = MAX_FILL_BYTES - filled;
        if budget == 0 {
            break;
        }
        let len = desc.len().min(budget);
        let mut done = 0u32;
        while done < len {
            // buf is at most a few KiB, so its length fits in u32.
            let n = (len - done).min(u32::try_from(buf.len()).unwrap_or(u32::MAX));
            let piece = &mut buf[..n as usize];
            if let Err(e) = source.read_exact(piece) {
                return (filled, Some(RngError::ReadEntropy(e)));
            }
            let written = match desc.addr().checked_add(u64::from(done)) {
                Some(addr) => mem.write_slice(piece, addr),
                None => Err(GuestMemoryError::InvalidGuestAddress(desc.addr())),
            };
            if let Err(e) = written {
                return (filled, Some(RngError::WriteGuest(e)));
            }
            done += n;
            filled += n;
        }
    }
    (filled, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::block::testing::{guest_bytes, memory, push_chain, used};
    use crate::devices::virtio::interrupt::tests::CountingIrq;
    use std::sync::atomic::Ordering;
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::GuestAddress;

    const A: u64 = 0x1_0000;
    const B: u64 = 0x2_0000;

    fn handler(mem: &GuestMem, vq: &MockSplitQueue<'_, GuestMem>, irq: &CountingIrq) -> RngHandler {
        let source = File::open(super::super::ENTROPY_SOURCE).expect("open entropy source");
        let interrupt = VirtioInterrupt::new(Box::new(irq.clone()));
        RngHandler::new(
            mem.clone(),
            vq.create_queue().expect("create queue"),
            Arc::new(source),
            Arc::new(interrupt),
        )
    }

    #[test]
    fn test_rng_fills_writable_descriptors() {
        let mem = memory(0x10_0000);
        let vq = MockSplitQueue::new(&mem, 16);
        let irq = CountingIrq::default();
        let mut rng = handler(&mem, &vq, &irq);
        push_chain(&vq, 0, &[(A, 64, true), (B, 32, true)]);

        let served = rng.process_queue().expect("process queue");

        assert_eq!(served, 1);
        assert_eq!(used(&vq, 0), (96, 0));
        assert!(guest_bytes(&mem, A, 64).iter().any(|&b| b != 0));
        assert!(guest_bytes(&mem, B, 32).iter().any(|&b| b != 0));
        assert_eq!(irq.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn test_rng_readable_descriptor_left_alone() {
        let mem = memory(0x10_0000);
        let vq = MockSplitQueue::new(&mem, 16);
        let irq = CountingIrq::default();
        let mut rng = handler(&mem, &vq, &irq);
        mem.write_slice(&[0xaa; 64], GuestAddress(A))
            .expect("mark readable buffer");
        push_chain(&vq, 0, &[(A, 64, false), (B, 64, true)]);

        rng.process_queue().expect("process queue");

        assert_eq!(guest_bytes(&mem, A, 64), vec![0xaa; 64]);
        assert_eq!(used(&vq, 0), (64, 0));
    }

    #[test]
    fn test_rng_two_fills_differ() {
        let mem = memory(0x10_0000);
        let vq = MockSplitQueue::new(&mem, 16);
        let irq = CountingIrq::default();
        let mut rng = handler(&mem, &vq, &irq);
        push_chain(&vq, 0, &[(A, 64, true)]);
        push_chain(&vq, 1, &[(B, 64, true)]);

        let served = rng.process_queue().expect("process queue");

        assert_eq!(served, 2);
        assert_ne!(guest_bytes(&mem, A, 64), guest_bytes(&mem, B, 64));
        assert_eq!(irq.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn test_rng_huge_buffer_filled_up_to_limit() {
        let mem = memory(0x10_0000);
        let vq = MockSplitQueue::new(&mem, 16);
        let irq = CountingIrq::default();
        let mut rng = handler(&mem, &vq, &irq);
        push_chain(
            &vq,
            0,
            &[(A, 2 * MAX_FILL_BYTES, true), (0xf_0000, 64, true)],
        );

        rng.process_queue().expect("process queue");

        let past_limit = A + u64::from(MAX_FILL_BYTES);
        assert_eq!(used(&vq, 0), (MAX_FILL_BYTES, 0));
        assert_eq!(guest_bytes(&mem, past_limit, 4096), vec![0; 4096]);
        assert_eq!(guest_bytes(&mem, 0xf_0000, 64), vec![0; 64]);
    }

    #[test]
    fn test_rng_buffer_outside_memory_returns_bytes_filled_before() {
        let mem = memory(0x10_0000);
        let vq = MockSplitQueue::new(&mem, 16);
        let irq = CountingIrq::default();
        let mut rng = handler(&mem, &vq, &irq);
        push_chain(&vq, 0, &[(A, 16, true), (0x20_0000, 64, true)]);

        rng.process_queue().expect("process queue");

        assert_eq!(used(&vq, 0), (16, 0));
    }

    #[test]
    fn test_rng_empty_queue_does_not_signal() {
        let mem = memory(0x10_0000);
        let vq = MockSplitQueue::new(&mem, 16);
        let irq = CountingIrq::default();
        let mut rng = handler(&mem, &vq, &irq);

        let served = rng.process_queue().expect("process queue");

        assert_eq!(served, 0);
        assert_eq!(irq.0.load(Ordering::SeqCst), 0);
    }
}
