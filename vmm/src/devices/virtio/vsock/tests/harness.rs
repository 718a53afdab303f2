//! Test harness: a guest driver over mock virtqueues and helpers for the host side.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::super::muxer::Muxer;
use super::super::packet::*;
use super::super::uds;
use super::super::QUEUE_SIZE;
use crate::devices::virtio::interrupt::tests::CountingIrq;
use crate::devices::virtio::{Activation, VirtioInterrupt};

pub(super) const CID: u64 = 3;
// One buffer slot per descriptor index: the RX slots (16 MiB + 256 x 64 KiB) end where the TX
// slots begin, so a buffer the guest posts for receiving never aliases one it sends from.
pub(super) const RX_BUFS: u64 = 0x100_0000;
pub(super) const SLOT: u64 = 0x1_0000;
pub(super) const TX_BUFS: u64 = RX_BUFS + QUEUE_SIZE as u64 * SLOT;
pub(super) const HOST_PORT0: u32 = 1 << 30;

/// Descriptors as (address or offset, length, flags).
pub(super) type Chain = &'static [(u64, u32, u16)];

pub(super) fn test_mem() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x400_0000)]).expect("guest memory")
}

pub(super) fn raw(addr: u64, len: u32, flags: u16, next: u16) -> RawDescriptor {
    RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next))
}

/// A split virtqueue the test lays out itself: descriptor table at `base`, then the avail
/// ring, then the used ring aligned to 4. (virtio-queue's mock places its used ring half-way
/// into the avail ring, because its `end()` counts entries, not bytes: once the avail index
/// passed 128 the guest overwrote the used index and the tests flaked.)
#[derive(Debug, Clone, Copy)]
pub(super) struct SplitRing {
    base: u64,
}

impl SplitRing {
    fn new(mem: &GuestMemoryMmap, base: u64) -> Self {
        let ring = Self { base };
        for addr in [ring.avail(), ring.avail() + 2, ring.used(), ring.used() + 2] {
            mem.write_obj(0u16, GuestAddress(addr))
                .expect("ring header");
        }
        ring
    }

    fn avail(&self) -> u64 {
        self.base + 16 * u64::from(QUEUE_SIZE)
    }

    fn used(&self) -> u64 {
        (self.avail() + 6 + 2 * u64::from(QUEUE_SIZE) + 3) & !3
    }

    fn queue(&self) -> Queue {
        let mut q = Queue::new(QUEUE_SIZE).expect("queue");
        q.set_size(QUEUE_SIZE);
        q.set_ready(true);
        for (set, addr) in [
            (
                Queue::set_desc_table_address as fn(&mut Queue, Option<u32>, Option<u32>),
                self.base,
            ),
            (Queue::set_avail_ring_address, self.avail()),
            (Queue::set_used_ring_address, self.used()),
        ] {
            set(&mut q, Some(addr as u32), Some((addr >> 32) as u32));
        }
        q
    }

    /// The device's used index.
    pub(super) fn used_idx(&self, mem: &GuestMemoryMmap) -> u16 {
        mem.read_obj(GuestAddress(self.used() + 2))
            .expect("used idx")
    }

    /// The used element in `slot`: (descriptor id, length written).
    fn used_elem(&self, mem: &GuestMemoryMmap, slot: u16) -> (u32, u32) {
        let at = self.used() + 4 + 8 * u64::from(slot % QUEUE_SIZE);
        let id = mem.read_obj(GuestAddress(at)).expect("used id");
        let len = mem.read_obj(GuestAddress(at + 4)).expect("used len");
        (id, len)
    }
}

/// Writes a chain into the descriptor table at `first` and makes it available.
fn publish(mem: &GuestMemoryMmap, q: &SplitRing, first: u16, descs: &[(u64, u32, u16)]) {
    let n = descs.len() as u16;
    for (i, &(addr, len, flags)) in (0..n).zip(descs) {
        let more = if i + 1 < n {
            VRING_DESC_F_NEXT as u16
        } else {
            0
        };
        let next = (first + i + 1) % QUEUE_SIZE;
        let desc = raw(addr, len, flags | more, next);
        let at = q.base + 16 * u64::from((first + i) % QUEUE_SIZE);
        mem.write_obj(desc, GuestAddress(at)).expect("descriptor");
    }
    let avail = q.avail();
    let idx: u16 = mem.read_obj(GuestAddress(avail + 2)).expect("avail idx");
    let slot = GuestAddress(avail + 4 + u64::from(idx % QUEUE_SIZE) * 2);
    mem.write_obj(first.to_le(), slot).expect("avail ring");
    mem.write_obj(idx.wrapping_add(1).to_le(), GuestAddress(avail + 2))
        .expect("avail idx");
}

/// A guest driver over mock queues: posts rx buffers, sends tx packets, collects used rx.
pub(super) struct Guest<'a> {
    pub(super) mem: &'a GuestMemoryMmap,
    pub(super) rx: SplitRing,
    pub(super) tx: SplitRing,
    pub(super) ev: SplitRing,
    pub(super) kicks: Vec<EventFd>,
    pub(super) rx_next: u16,
    pub(super) tx_next: u16,
    pub(super) rx_seen: u16,
    /// Rx chains posted so far (wrapping, like the used index).
    pub(super) rx_posted: u16,
    pub(super) received: VecDeque<(Header, Vec<u8>)>,
    pub(super) empty_rx: usize,
    pub(super) irq: CountingIrq,
}

impl<'a> Guest<'a> {
    pub(super) fn new(mem: &'a GuestMemoryMmap) -> Self {
        let kick = || EventFd::new(EFD_NONBLOCK).expect("eventfd");
        Self {
            mem,
            rx: SplitRing::new(mem, 0),
            tx: SplitRing::new(mem, 0x1_0000),
            ev: SplitRing::new(mem, 0x2_0000),
            kicks: vec![kick(), kick(), kick()],
            rx_next: 0,
            tx_next: 0,
            rx_seen: 0,
            rx_posted: 0,
            received: VecDeque::new(),
            empty_rx: 0,
            irq: CountingIrq::default(),
        }
    }

    pub(super) fn activation(&self) -> Activation {
        let queues = [self.rx, self.tx, self.ev]
            .iter()
            .map(SplitRing::queue)
            .collect();
        Activation {
            mem: self.mem.clone(),
            driver_features: 0,
            queues,
            queue_events: self
                .kicks
                .iter()
                .map(|k| k.try_clone().expect("dup"))
                .collect(),
            interrupt: Arc::new(VirtioInterrupt::new(Box::new(self.irq.clone()))),
        }
    }

    pub(super) fn muxer(&self, path: &Path) -> Muxer {
        let (listener, _file) = uds::bind_listener(path).expect("bind");
        let a = self.activation();
        Muxer::new(
            CID,
            path.to_path_buf(),
            listener,
            a.mem,
            a.queues,
            a.queue_events,
            a.interrupt,
        )
        .expect("muxer")
    }

    pub(super) fn kick(&self, q: usize) {
        self.kicks[q].write(1).expect("kick");
    }

    /// Posts a chain of buffers on the rx queue (default: one 4 KiB writable buffer).
    pub(super) fn add_rx_chain(&mut self, descs: &[(u64, u32, u16)]) {
        let first = self.rx_next;
        publish(self.mem, &self.rx, first, descs);
        self.rx_next = (first + descs.len() as u16) % QUEUE_SIZE;
        self.rx_posted = self.rx_posted.wrapping_add(1);
        self.kick(0);
    }

    pub(super) fn add_rx(&mut self, count: usize) {
        for _ in 0..count {
            let addr = RX_BUFS + u64::from(self.rx_next) * SLOT;
            self.add_rx_chain(&[(addr, 4096, VRING_DESC_F_WRITE as u16)]);
        }
    }

    /// Puts a raw chain on the tx queue.
    pub(super) fn send_chain(&mut self, descs: &[(u64, u32, u16)]) {
        let first = self.tx_next;
        publish(self.mem, &self.tx, first, descs);
        self.tx_next = (first + descs.len() as u16) % QUEUE_SIZE;
        self.kick(1);
    }

    pub(super) fn send(&mut self, hdr: Header, data: &[u8]) {
        let addr = TX_BUFS + u64::from(self.tx_next) * SLOT;
        self.mem
            .write_slice(&hdr.to_bytes(), GuestAddress(addr))
            .expect("hdr");
        let payload = GuestAddress(addr + HDR_LEN as u64);
        self.mem.write_slice(data, payload).expect("data");
        self.send_chain(&[(addr, (HDR_LEN + data.len()) as u32, 0)]);
    }

    /// Rx chains the device has not returned yet.
    pub(super) fn rx_outstanding(&self) -> u16 {
        self.rx_posted.wrapping_sub(self.rx.used_idx(self.mem))
    }

    pub(super) fn tx_used(&self) -> u16 {
        self.tx.used_idx(self.mem)
    }

    pub(super) fn collect(&mut self) {
        let used = self.rx.used_idx(self.mem);
        while self.rx_seen != used {
            let (id, len) = self.rx.used_elem(self.mem, self.rx_seen);
            self.rx_seen = self.rx_seen.wrapping_add(1);
            let len = len as usize;
            if len == 0 {
                self.empty_rx += 1;
                continue;
            }
            let addr = RX_BUFS + u64::from(id) * SLOT;
            let mut raw_hdr = [0u8; HDR_LEN];
            self.mem
                .read_slice(&mut raw_hdr, GuestAddress(addr))
                .expect("hdr");
            let mut data = vec![0u8; len - HDR_LEN];
            let payload = GuestAddress(addr + HDR_LEN as u64);
            self.mem.read_slice(&mut data, payload).expect("payload");
            self.received
                .push_back((Header::from_bytes(&raw_hdr), data));
        }
    }

    pub(super) fn take(&mut self, pred: impl Fn(&Header) -> bool) -> Option<(Header, Vec<u8>)> {
        self.collect();
        let i = self.received.iter().position(|(h, _)| pred(h))?;
        self.received.remove(i)
    }
}

/// Steps the muxer until `done` holds (or fails the test after ~4 s).
pub(super) fn pump(mux: &mut Muxer, g: &mut Guest, mut done: impl FnMut(&mut Guest) -> bool) {
    for _ in 0..400 {
        g.collect();
        if done(g) {
            return;
        }
        mux.poll_once(Some(Duration::from_millis(10)))
            .expect("poll");
    }
    panic!("condition not reached");
}

pub(super) fn expect(
    mux: &mut Muxer,
    g: &mut Guest,
    pred: impl Fn(&Header) -> bool,
) -> (Header, Vec<u8>) {
    let mut got = None;
    pump(mux, g, |g| {
        got = g.take(&pred);
        got.is_some()
    });
    got.expect("pumped until found")
}

pub(super) fn gh(
    op: u16,
    src_port: u32,
    dst_port: u32,
    len: u32,
    buf_alloc: u32,
    fwd_cnt: u32,
) -> Header {
    Header {
        src_cid: CID,
        dst_cid: HOST_CID,
        src_port,
        dst_port,
        len,
        socket_type: TYPE_STREAM,
        op,
        flags: 0,
        buf_alloc,
        fwd_cnt,
    }
}

pub(super) fn send_and_wait(mux: &mut Muxer, g: &mut Guest, hdr: Header, data: &[u8]) {
    let target = g.tx_used().wrapping_add(1);
    g.send(hdr, data);
    pump(mux, g, |g| g.tx_used() == target);
}

pub(super) fn host_connect(path: &Path, line: &[u8]) -> UnixStream {
    let mut s = UnixStream::connect(path).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(line).expect("write line");
    s
}

/// Asserts the device closed `s` (EOF, or a reset when it left bytes unread), rather than the
/// read timing out.
pub(super) fn assert_closed(s: &mut UnixStream) {
    let mut buf = [0u8; 8];
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("connection left open: {other:?}"),
    }
}

pub(super) fn read_n(s: &mut UnixStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).expect("read");
    buf
}

/// Host connects to guest port 52; the guest accepts with `buf_alloc`.
pub(super) fn host_established(
    mux: &mut Muxer,
    g: &mut Guest,
    path: &Path,
    buf_alloc: u32,
) -> (UnixStream, u32) {
    let mut s = host_connect(path, b"CONNECT 52\n");
    g.add_rx(8);
    let (req, _) = expect(mux, g, |h| h.op == OP_REQUEST);
    send_and_wait(
        mux,
        g,
        gh(OP_RESPONSE, 52, req.src_port, 0, buf_alloc, 0),
        &[],
    );
    let ok = format!("OK {}\n", req.src_port);
    assert_eq!(read_n(&mut s, ok.len()), ok.as_bytes());
    (s, req.src_port)
}

pub(super) fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v.sock");
    (dir, path)
}
