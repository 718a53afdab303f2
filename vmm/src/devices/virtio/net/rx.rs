//! Host to guest (section 5.1.6.3): a frame read from the tap, header first, is copied into
//! the guest's receive buffers.
//!
//! Without `VIRTIO_NET_F_MRG_RXBUF` a frame goes into one buffer and `num_buffers` is 1; a
//! frame larger than that buffer is dropped and the buffer kept. With it, a frame spreads over
//! as many buffers as it needs and `num_buffers` says how many (section 5.1.6.4). Buffers are
//! taken from the ring and checked (device-writable, inside guest memory, at least a header)
//! only when a frame needs them; checked buffers not used yet wait in a stash. When the ring
//! runs dry the frame stays in the bounce buffer and the handler stops reading the tap.

use std::collections::VecDeque;
use std::io;

use virtio_queue::desc::split::Descriptor;
use virtio_queue::{QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use super::handler::{NetHandler, Round};
use super::{NetError, MAX_CHAIN_SEGMENTS, NUM_BUFFERS_OFFSET, RX_BUFFER_LEN, VNET_HDR_LEN};
use crate::devices::virtio::GuestMemory as GuestMem;

/// Most frames delivered per round.
const RX_BUDGET: usize = 256;

/// A checked receive buffer.
#[derive(Debug)]
struct RxChain {
    head: u16,
    /// Writable bytes in `segments`.
    room: u64,
    segments: Vec<(GuestAddress, u32)>,
}

/// Receive-side state that outlives a round.
#[derive(Debug)]
pub(super) struct RxState {
    mergeable: bool,
    /// The bounce buffer; `pending` bytes of it hold a frame not delivered yet.
    frame: Vec<u8>,
    pending: Option<usize>,
    stash: VecDeque<RxChain>,
    stash_room: u64,
    /// Segment lists of used chains, kept for reuse.
    spare: Vec<Vec<(GuestAddress, u32)>>,
}

impl RxState {
    pub(super) fn new(mergeable: bool) -> Self {
        Self {
            mergeable,
            frame: vec![0; RX_BUFFER_LEN],
            pending: None,
            stash: VecDeque::new(),
            stash_room: 0,
            spare: Vec::new(),
        }
    }
}

/// How a pending frame went.
enum Delivery {
    Delivered,
    /// The frame cannot ever fit the guest's buffer; it was dropped.
    Dropped(NetError),
    /// Not enough receive buffers yet.
    NoBuffers,
}

impl NetHandler {
    /// Moves frames from the tap to the guest until the tap is empty, the guest's buffers run
    /// out (`starved`) or the budget is spent (`more`).
    pub(super) fn process_rx(&mut self) -> Round {
        let mut round = Round::default();
        for _ in 0..RX_BUDGET {
            let len = match self.rx_state.pending {
                Some(len) => len,
                None => match self.tap.read_frame(&mut self.rx_state.frame) {
                    Ok(len) if len < VNET_HDR_LEN => continue,
                    Ok(len) => len,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return round,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        // Rest until the guest next adds buffers rather than spin on an error.
                        self.warn("cannot read the tap", &NetError::TapRead(e));
                        round.starved = true;
                        return round;
                    }
                },
            };
            self.rx_state.pending = Some(len);
            match self.deliver(len, &mut round) {
                Delivery::Delivered => self.rx_state.pending = None,
                Delivery::Dropped(e) => {
                    self.rx_state.pending = None;
                    self.warn("dropped a received frame", &e);
                }
                Delivery::NoBuffers => {
                    round.starved = true;
                    return round;
                }
            }
        }
        round.more = true;
        round
    }

    /// Copies the pending `len`-byte frame into receive buffers.
    fn deliver(&mut self, len: usize, round: &mut Round) -> Delivery {
        if !self.fill_stash(len as u64, round) {
            return Delivery::NoBuffers;
        }
        let st = &mut self.rx_state;
        let count = if st.mergeable {
            let mut room = 0;
            st.stash
                .iter()
                .take_while(|c| {
                    let short = room < len as u64;
                    room += c.room;
                    short
                })
                .count()
        } else {
            match st.stash.front() {
                Some(c) if c.room >= len as u64 => 1,
                Some(c) => {
                    return Delivery::Dropped(NetError::RxBufferTooSmall {
                        frame: len,
                        room: c.room,
                    })
                }
                None => return Delivery::NoBuffers,
            }
        };
        // `count` is at most the stash, which holds at most a queue's worth of chains.
        let num_buffers = u16::try_from(count).unwrap_or(u16::MAX);
        st.frame[NUM_BUFFERS_OFFSET..VNET_HDR_LEN].copy_from_slice(&num_buffers.to_le_bytes());
        let mut offset = 0;
        for _ in 0..count {
            let Some(chain) = st.stash.pop_front() else {
                break;
            };
            st.stash_room -= chain.room;
            let (written, result) = scatter(&self.mem, &chain.segments, &st.frame[offset..len]);
            offset += written;
            // The frame is at most RX_BUFFER_LEN bytes, so `written` fits in u32.
            let used = if result.is_ok() { written as u32 } else { 0 };
            if let Err(e) = self.rx.add_used(&self.mem, chain.head, used) {
                let mut segments = chain.segments;
                segments.clear();
                st.spare.push(segments);
                return Delivery::Dropped(NetError::AddUsed(e));
            }
            round.used = true;
            let mut segments = chain.segments;
            segments.clear();
            st.spare.push(segments);
            if let Err(e) = result {
                return Delivery::Dropped(e);
            }
        }
        Delivery::Delivered
    }

    /// Takes buffers from the ring until the stash can hold `len` bytes (with mergeable
    /// buffers) or has a buffer (without). Bad chains are returned at once with length 0.
    /// False when the ring ran dry first; notifications are then enabled, so the driver's
    /// next refill wakes the worker.
    fn fill_stash(&mut self, len: u64, round: &mut Round) -> bool {
        loop {
            let st = &self.rx_state;
            let enough = if st.mergeable {
                st.stash_room >= len
            } else {
                !st.stash.is_empty()
            };
            if enough {
                return true;
            }
            let chain = match self.rx.iter(&self.mem) {
                Ok(mut chains) => chains.next(),
                Err(e) => {
                    self.warn("cannot read the receive queue", &NetError::IterQueue(e));
                    return false;
                }
            };
            let Some(chain) = chain else {
                match self.rx.enable_notification(&self.mem) {
                    Ok(true) => continue,
                    Ok(false) => return false,
                    Err(e) => {
                        self.warn("cannot read the receive queue", &NetError::IterQueue(e));
                        return false;
                    }
                }
            };
            let head = chain.head_index();
            let segments = self.rx_state.spare.pop().unwrap_or_default();
            match check_rx_chain(&self.mem, chain, segments) {
                Ok((room, segments)) => {
                    self.rx_state.stash_room += room;
                    self.rx_state.stash.push_back(RxChain {
                        head,
                        room,
                        segments,
                    });
                }
                Err(e) => {
                    if let Err(e) = self.rx.add_used(&self.mem, head, 0) {
                        self.warn("cannot return a receive buffer", &NetError::AddUsed(e));
                        return false;
                    }
                    round.used = true;
                    self.warn("returned a malformed receive buffer", &e);
                }
            }
        }
    }
}

/// Checks a receive chain: device-writable descriptors only, each inside guest memory, at
/// most [`MAX_CHAIN_SEGMENTS`], room for at least a header. Returns the room and the
/// segments (collected into `segments`, which must be empty).
fn check_rx_chain(
    mem: &GuestMem,
    chain: impl IntoIterator<Item = Descriptor>,
    mut segments: Vec<(GuestAddress, u32)>,
) -> Result<(u64, Vec<(GuestAddress, u32)>), NetError> {
    let mut room = 0u64;
    for desc in chain {
        if !desc.is_write_only() {
            return Err(NetError::ChainDirection { writable: true });
        }
        if segments.len() == MAX_CHAIN_SEGMENTS {
            return Err(NetError::ChainTooLong);
        }
        if desc.len() == 0 {
            continue;
        }
        if !mem.check_range(desc.addr(), desc.len() as usize) {
            return Err(NetError::ChainOutsideMemory {
                addr: desc.addr().0,
                len: desc.len(),
            });
        }
        room += u64::from(desc.len());
        segments.push((desc.addr(), desc.len()));
    }
    if room < VNET_HDR_LEN as u64 {
        return Err(NetError::ChainTooShort(room));
    }
    Ok((room, segments))
}

/// Copies as much of `data` as fits into `segments`. Returns the bytes copied and whether
/// guest memory took them all.
fn scatter(
    mem: &GuestMem,
    segments: &[(GuestAddress, u32)],
    data: &[u8],
) -> (usize, Result<(), NetError>) {
    let mut done = 0;
    for &(addr, len) in segments {
        if done == data.len() {
            break;
        }
        let n = (len as usize).min(data.len() - done);
        if let Err(e) = mem.write_slice(&data[done..done + n], addr) {
            return (done, Err(NetError::WriteGuest(e)));
        }
        done += n;
    }
    (done, Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::block::testing::{guest_bytes, push_chain, used};
    use crate::devices::virtio::net::testing::{rx_frame, Setup, A, B, C};
    use std::sync::atomic::Ordering;

    fn num_buffers(s: &Setup, addr: u64) -> u16 {
        let raw = guest_bytes(&s.mem, addr + NUM_BUFFERS_OFFSET as u64, 2);
        u16::from_le_bytes([raw[0], raw[1]])
    }

    #[test]
    fn test_net_rx_frame_lands_in_one_buffer_with_num_buffers_one() {
        let s = Setup::new(false);
        let mut h = s.handler();
        push_chain(&s.rxq, 0, &[(A, 1526, true)]);
        s.tap.push_inbound(rx_frame(&[0x55; 100]));

        let round = h.process_rx();
        h.signal(round.used, false);

        assert_eq!(used(&s.rxq, 0), (112, 0));
        assert_eq!(num_buffers(&s, A), 1);
        assert_eq!(guest_bytes(&s.mem, A + 12, 100), vec![0x55; 100]);
        assert!(round.used && !round.starved && !round.more);
        assert_eq!(s.irq.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn test_net_rx_header_split_from_data_fills_both() {
        let s = Setup::new(false);
        let mut h = s.handler();
        push_chain(&s.rxq, 0, &[(A, 12, true), (B, 1514, true)]);
        s.tap.push_inbound(rx_frame(&[0x56; 60]));

        h.process_rx();

        assert_eq!(used(&s.rxq, 0), (72, 0));
        assert_eq!(guest_bytes(&s.mem, B, 60), vec![0x56; 60]);
    }

    #[test]
    fn test_net_rx_mergeable_frame_spans_buffers_num_buffers_set() {
        let s = Setup::new(true);
        let mut h = s.handler();
        push_chain(&s.rxq, 0, &[(A, 1000, true)]);
        push_chain(&s.rxq, 1, &[(B, 1000, true)]);
        push_chain(&s.rxq, 2, &[(C, 1000, true)]);
        let data: Vec<u8> = (0..1500u32).map(|i| i as u8).collect();
        s.tap.push_inbound(rx_frame(&data));

        h.process_rx();

        assert_eq!(num_buffers(&s, A), 2);
        assert_eq!(used(&s.rxq, 0), (1000, 0));
        assert_eq!(used(&s.rxq, 1), (512, 1));
        assert_eq!(guest_bytes(&s.mem, A + 12, 988), data[..988]);
        assert_eq!(guest_bytes(&s.mem, B, 512), data[988..]);
        // The third buffer waits in the stash for the next frame.
        s.tap.push_inbound(rx_frame(&[7; 10]));
        h.process_rx();
        assert_eq!(used(&s.rxq, 2), (22, 2));
        assert_eq!(num_buffers(&s, C), 1);
    }

    #[test]
    fn test_net_rx_no_buffers_frame_kept_until_buffer_added() {
        let s = Setup::new(false);
        let mut h = s.handler();
        s.tap.push_inbound(rx_frame(&[0x66; 60]));

        let starved = h.process_rx();
        push_chain(&s.rxq, 0, &[(A, 1526, true)]);
        let fed = h.process_rx();

        assert!(starved.starved && !starved.used);
        assert!(fed.used && !fed.starved);
        assert_eq!(used(&s.rxq, 0), (72, 0));
        assert_eq!(guest_bytes(&s.mem, A + 12, 60), vec![0x66; 60]);
    }

    #[test]
    fn test_net_rx_mergeable_partial_room_waits_for_more_buffers() {
        let s = Setup::new(true);
        let mut h = s.handler();
        push_chain(&s.rxq, 0, &[(A, 1000, true)]);
        s.tap.push_inbound(rx_frame(&[0x67; 1500]));

        let starved = h.process_rx();
        push_chain(&s.rxq, 1, &[(B, 1000, true)]);
        let fed = h.process_rx();

        assert!(starved.starved && !starved.used);
        assert!(fed.used);
        assert_eq!(used(&s.rxq, 0), (1000, 0));
        assert_eq!(used(&s.rxq, 1), (512, 1));
    }

    #[test]
    fn test_net_rx_bad_buffers_returned_empty_good_one_filled() {
        let s = Setup::new(false);
        let mut h = s.handler();
        push_chain(&s.rxq, 0, &[(A, 1526, false)]);
        push_chain(&s.rxq, 1, &[(A, 11, true)]);
        push_chain(&s.rxq, 2, &[(0x20_0000, 1526, true)]);
        push_chain(&s.rxq, 3, &[(B, 12, true), (C, 100, false)]);
        push_chain(&s.rxq, 5, &[(C, 1526, true)]);
        s.tap.push_inbound(rx_frame(&[0x77; 60]));

        let round = h.process_rx();

        assert!(round.used);
        for i in 0..4 {
            assert_eq!(used(&s.rxq, i).0, 0, "bad chain {i}");
        }
        assert_eq!(used(&s.rxq, 4), (72, 5));
        assert_eq!(guest_bytes(&s.mem, C + 12, 60), vec![0x77; 60]);
    }

    #[test]
    fn test_net_rx_frame_too_big_for_buffer_dropped_buffer_kept() {
        let s = Setup::new(false);
        let mut h = s.handler();
        push_chain(&s.rxq, 0, &[(A, 100, true)]);
        s.tap.push_inbound(rx_frame(&[0x88; 200]));
        s.tap.push_inbound(rx_frame(&[0x99; 50]));

        h.process_rx();

        assert_eq!(used(&s.rxq, 0), (62, 0));
        assert_eq!(guest_bytes(&s.mem, A + 12, 50), vec![0x99; 50]);
    }

    #[test]
    fn test_net_rx_empty_tap_leaves_buffers_alone() {
        let s = Setup::new(false);
        let mut h = s.handler();
        push_chain(&s.rxq, 0, &[(A, 1526, true)]);

        let round = h.process_rx();

        assert_eq!(round, Round::default());
        assert_eq!(s.rxq.used().idx().load(), 0);
    }
}
