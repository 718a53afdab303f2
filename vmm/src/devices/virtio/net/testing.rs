//! Helpers for the virtio-net unit tests: a fake tap, queues and frames.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress, VolatileSlice};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::handler::NetHandler;
use super::tap::TapIo;
use super::VNET_HDR_LEN;
use crate::devices::virtio::block::testing::memory;
use crate::devices::virtio::interrupt::tests::CountingIrq;
use crate::devices::virtio::{GuestMemory as GuestMem, VirtioInterrupt};

/// Buffer addresses, clear of the mock queues at 0x8_0000 and up.
pub(super) const A: u64 = 0x1_0000;
pub(super) const B: u64 = 0x3_0000;
pub(super) const C: u64 = 0x5_0000;

/// A tap in memory: frames pushed with [`FakeTap::push_inbound`] are read by the device, frames
/// the device writes are kept. Its eventfd is readable while inbound frames wait.
#[derive(Debug)]
pub(super) struct FakeTap {
    inbound: Mutex<VecDeque<Vec<u8>>>,
    sent: Mutex<Vec<Vec<u8>>>,
    pub offload: Mutex<Option<u32>>,
    fail_writes: AtomicBool,
    readable: EventFd,
}

impl Default for FakeTap {
    fn default() -> Self {
        Self {
            inbound: Mutex::default(),
            sent: Mutex::default(),
            offload: Mutex::default(),
            fail_writes: AtomicBool::new(false),
            readable: EventFd::new(EFD_NONBLOCK).expect("eventfd"),
        }
    }
}

impl FakeTap {
    pub(super) fn push_inbound(&self, frame: Vec<u8>) {
        self.inbound.lock().expect("lock").push_back(frame);
        self.readable.write(1).expect("mark readable");
    }

    pub(super) fn sent(&self) -> Vec<Vec<u8>> {
        self.sent.lock().expect("lock").clone()
    }

    pub(super) fn fail_writes(&self) {
        self.fail_writes.store(true, Ordering::SeqCst);
    }
}

impl AsRawFd for FakeTap {
    fn as_raw_fd(&self) -> RawFd {
        self.readable.as_raw_fd()
    }
}

impl TapIo for FakeTap {
    fn read_frame(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut inbound = self.inbound.lock().expect("lock");
        let Some(frame) = inbound.pop_front() else {
            let _ = self.readable.read();
            return Err(io::ErrorKind::WouldBlock.into());
        };
        if inbound.is_empty() {
            let _ = self.readable.read();
        }
        let n = frame.len().min(buf.len());
        buf[..n].copy_from_slice(&frame[..n]);
        Ok(n)
    }

    fn write_frame(&self, parts: &[VolatileSlice<'_, ()>]) -> io::Result<usize> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let mut frame = Vec::new();
        for part in parts {
            let mut piece = vec![0u8; part.len()];
            part.copy_to(&mut piece[..]);
            frame.extend_from_slice(&piece);
        }
        let n = frame.len();
        self.sent.lock().expect("lock").push(frame);
        Ok(n)
    }

    fn set_offload(&self, flags: u32) -> io::Result<()> {
        *self.offload.lock().expect("lock") = Some(flags);
        Ok(())
    }
}

/// Writes a zero header and `data` at `addr`, as a driver would before sending.
pub(super) fn tx_frame(mem: &GuestMem, addr: u64, data: &[u8]) {
    mem.write_slice(&[0; VNET_HDR_LEN], GuestAddress(addr))
        .expect("write header");
    mem.write_slice(data, GuestAddress(addr + VNET_HDR_LEN as u64))
        .expect("write frame");
}

/// A frame as the tap hands it out: a zero header, then `data`.
pub(super) fn rx_frame(data: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8; VNET_HDR_LEN];
    frame.extend_from_slice(data);
    frame
}

/// Guest memory, both queues, a fake tap and a counting interrupt.
pub(super) struct Setup {
    pub mem: GuestMem,
    pub rxq: MockSplitQueue<'static, GuestMem>,
    pub txq: MockSplitQueue<'static, GuestMem>,
    pub tap: Arc<FakeTap>,
    pub irq: CountingIrq,
    pub mergeable: bool,
}

impl Setup {
    pub(super) fn new(mergeable: bool) -> Self {
        // Leaked so the mock queues can borrow it for 'static; tests are short-lived.
        let mem: &'static GuestMem = Box::leak(Box::new(memory(0x10_0000)));
        Self {
            mem: mem.clone(),
            rxq: MockSplitQueue::create(mem, GuestAddress(0x8_0000), 16),
            txq: MockSplitQueue::create(mem, GuestAddress(0x9_0000), 16),
            tap: Arc::new(FakeTap::default()),
            irq: CountingIrq::default(),
            mergeable,
        }
    }

    pub(super) fn handler(&self) -> NetHandler {
        self.handler_with(&self.rxq, &self.txq)
    }

    pub(super) fn handler_with(
        &self,
        rxq: &MockSplitQueue<'_, GuestMem>,
        txq: &MockSplitQueue<'_, GuestMem>,
    ) -> NetHandler {
        NetHandler::new(
            self.mem.clone(),
            rxq.create_queue().expect("rx queue"),
            txq.create_queue().expect("tx queue"),
            self.tap.clone(),
            Arc::new(VirtioInterrupt::new(Box::new(self.irq.clone()))),
            self.mergeable,
        )
    }
}
