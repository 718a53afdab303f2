//! The muxer's queue work: packets from the guest (tx) and packets for the guest (rx).

use std::time::Instant;

use virtio_queue::{QueueOwnedT, QueueT};

use super::super::connection::{ConnKey, Connection, RxStep};
use super::super::packet::{self, Header, HDR_LEN, HOST_CID, MAX_PAYLOAD};
use super::super::packet::{OP_REQUEST, OP_RST, TYPE_STREAM};
use super::super::uds;
use super::super::{VsockError, QUEUE_SIZE, RX_QUEUE, TX_QUEUE};
use super::{Muxer, MAX_QUEUED_RESETS};

/// Most rx buffers filled per loop round.
const MAX_RX_PER_ROUND: usize = 2 * QUEUE_SIZE as usize;

impl Muxer {
    /// Handles what the guest queued, at most a queue's worth per round.
    pub(super) fn process_tx(&mut self, now: Instant) -> bool {
        let mem = self.mem.clone();
        let mut used = false;
        self.tx_more = false;
        for _ in 0..QUEUE_SIZE {
            let chain = match self.queues[TX_QUEUE].iter(&mem) {
                Ok(mut it) => it.next(),
                Err(e) => {
                    self.warn(now, "cannot read the tx queue", &VsockError::IterQueue(e));
                    return used;
                }
            };
            let Some(chain) = chain else {
                return used;
            };
            let head = chain.head_index();
            let parsed = packet::read_tx_packet(&mem, chain, &mut self.segs, &mut self.tx_data);
            if let Err(e) = self.queues[TX_QUEUE].add_used(&mem, head, 0) {
                self.warn(now, "cannot complete a tx buffer", &VsockError::AddUsed(e));
                return used;
            }
            used = true;
            match parsed {
                Ok(hdr) => self.on_guest_packet(hdr, now),
                Err(e) => self.warn(now, "dropping malformed tx packet", &e),
            }
        }
        self.tx_more = true;
        used
    }

    fn on_guest_packet(&mut self, hdr: Header, now: Instant) {
        if let Err(e) = hdr.validate_from_guest(self.guest_cid) {
            // The CIDs are checked first, so a bad type or op came from the guest proper.
            if matches!(e, VsockError::CheckType(_) | VsockError::CheckOp(_)) && hdr.op != OP_RST {
                self.queue_reset_reply(&hdr);
            }
            self.warn(now, "dropping invalid packet", &e);
            return;
        }
        let key = ConnKey {
            local_port: hdr.dst_port,
            peer_port: hdr.src_port,
        };
        match self.conns.get_mut(&key) {
            Some(conn) => {
                let out = conn.on_guest(&hdr, &self.tx_data, now);
                self.settle(key, out, now);
            }
            None if hdr.op == OP_REQUEST => self.guest_connect(&hdr, key, now),
            None if hdr.op == OP_RST => {}
            None => self.queue_reset_reply(&hdr),
        }
    }

    /// The guest connects to host port `hdr.dst_port`: forward to the Unix socket `P_<port>`.
    fn guest_connect(&mut self, hdr: &Header, key: ConnKey, now: Instant) {
        if self.at_connection_limit() {
            self.warn(now, "refusing guest connection", &"too many connections");
            self.queue_reset_reply(hdr);
            return;
        }
        let path = uds::forward_path(&self.base_path, hdr.dst_port);
        match uds::connect_nonblocking(&path) {
            Ok(stream) => {
                let token = self.alloc_token();
                let conn = Connection::new_peer(key, stream, token, hdr);
                self.by_token.insert(token, key);
                self.conns.insert(key, conn);
                self.refresh(key, now);
            }
            Err(e) => {
                if self.log.allow(now) {
                    tracing::debug!(port = hdr.dst_port, error = %e, "vsock: no host listener");
                }
                self.queue_reset_reply(hdr);
            }
        }
    }

    /// Answers a packet that belongs to no connection with `OP_RST`.
    fn queue_reset_reply(&mut self, hdr: &Header) {
        self.queue_reset(Header {
            src_cid: HOST_CID,
            dst_cid: self.guest_cid,
            src_port: hdr.dst_port,
            dst_port: hdr.src_port,
            socket_type: TYPE_STREAM,
            op: OP_RST,
            ..Header::default()
        });
    }

    pub(super) fn queue_reset(&mut self, hdr: Header) {
        if self.resets.len() < MAX_QUEUED_RESETS {
            self.resets.push_back(hdr);
        }
    }

    /// Fills rx buffers while there is something to send and buffers to send it in, at most
    /// [`MAX_RX_PER_ROUND`] so that a fast host stream cannot keep the loop from its events.
    pub(super) fn process_rx(&mut self, now: Instant) -> bool {
        let mem = self.mem.clone();
        let mut segs = std::mem::take(&mut self.segs);
        let mut used = false;
        self.rx_more = false;
        let mut filled = 0;
        while !self.resets.is_empty() || !self.rx_order.is_empty() {
            if filled == MAX_RX_PER_ROUND {
                self.rx_more = true;
                break;
            }
            filled += 1;
            let chain = match self.queues[RX_QUEUE].iter(&mem) {
                Ok(mut it) => it.next(),
                Err(e) => {
                    self.warn(now, "cannot read the rx queue", &VsockError::IterQueue(e));
                    break;
                }
            };
            let Some(chain) = chain else {
                break;
            };
            let head = chain.head_index();
            let room = match packet::collect_segments(&mem, chain, true, &mut segs) {
                Ok(total) if total >= HDR_LEN => Ok(total - HDR_LEN),
                Ok(total) => Err(VsockError::ChainTooShort(total)),
                Err(e) => Err(e),
            };
            let mut written = 0;
            match room {
                Err(e) => self.warn(now, "dropping malformed rx buffer", &e),
                Ok(room) => match self.next_rx_packet(room.min(MAX_PAYLOAD), now) {
                    None => {
                        self.queues[RX_QUEUE].go_to_previous_position();
                        break;
                    }
                    Some((hdr, n, key)) => {
                        let res = packet::scatter(&mem, &segs, 0, &hdr.to_bytes()).and_then(|()| {
                            packet::scatter(&mem, &segs, HDR_LEN, &self.scratch[..n])
                        });
                        match res {
                            Ok(()) => written = HDR_LEN + n,
                            Err(e) => {
                                self.warn(now, "cannot fill an rx buffer", &e);
                                if let Some(key) = key {
                                    self.remove(key, true, "rx buffer unwritable", now);
                                }
                            }
                        }
                    }
                },
            }
            if let Err(e) = self.queues[RX_QUEUE].add_used(&mem, head, written as u32) {
                self.warn(now, "cannot complete an rx buffer", &VsockError::AddUsed(e));
                break;
            }
            used = true;
        }
        self.segs = segs;
        used
    }

    /// The next packet for the guest: queued resets first, then connections in turn. Payload
    /// (at most `room` bytes) is left at the start of `scratch`.
    fn next_rx_packet(
        &mut self,
        room: usize,
        now: Instant,
    ) -> Option<(Header, usize, Option<ConnKey>)> {
        if let Some(hdr) = self.resets.pop_front() {
            return Some((hdr, 0, None));
        }
        // Each queued connection gets one look; one that cannot use this buffer waits.
        for _ in 0..self.rx_order.len() {
            let key = self.rx_order.pop_front()?;
            let Some(conn) = self.conns.get_mut(&key) else {
                continue;
            };
            conn.in_rx_queue = false;
            match conn.next_rx(self.guest_cid, &mut self.scratch[..room], now) {
                RxStep::Packet(hdr, n) => {
                    self.refresh(key, now);
                    return Some((hdr, n, Some(key)));
                }
                RxStep::Nothing => self.refresh(key, now),
                RxStep::Remove { rst, reason } => {
                    self.remove(key, rst, reason, now);
                    if let Some(hdr) = self.resets.pop_front() {
                        return Some((hdr, 0, None));
                    }
                }
            }
        }
        None
    }
}
