//! One vsock stream connection between a guest port and a host Unix stream: its state machine
//! and the credit accounting of virtio 1.2, section 5.10.6.3.
//!
//! Guest to host: we advertise `CONN_BUF_ALLOC` bytes of buffer. What the Unix socket does not
//! take at once is kept in `tx_buf`; a guest that sends beyond its credit is reset. `fwd_cnt`
//! counts bytes handed to the socket.
//!
//! Host to guest: nothing is buffered. Bytes are read from the socket straight into the guest's
//! rx buffer, at most the guest's free credit; without credit the socket is not read at all.
//!
//! A connection does no logging and no queue work: it answers with an [`Outcome`] or an
//! [`RxStep`] and the muxer acts on it.

use std::io::Write;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use vmm_sys_util::epoll::EventSet;

mod rx;

pub use rx::RxStep;

use super::credit::{Credit, PendingTx, CONN_BUF_ALLOC};
use super::packet::{
    Header, HOST_CID, OP_CREDIT_REQUEST, OP_CREDIT_UPDATE, OP_RESPONSE, OP_RST, OP_RW, OP_SHUTDOWN,
    SHUTDOWN_BOTH, SHUTDOWN_RCV, SHUTDOWN_SEND, TYPE_STREAM,
};

/// How long we wait for the guest's `OP_RST` after a full shutdown, or for a flush to finish.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Identifies a connection: our (host) port and the guest's port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub local_port: u32,
    pub peer_port: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Host-initiated: waiting for the guest's `OP_RESPONSE`.
    LocalInit,
    Established,
    /// We sent `OP_SHUTDOWN` with both flags and wait for the guest's `OP_RST`.
    Closing,
}

/// What the muxer must do with the connection after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Keep,
    /// Forget the connection (closing the Unix stream); `rst` says whether to tell the guest.
    Remove {
        rst: bool,
        reason: &'static str,
    },
}

#[derive(Debug)]
pub struct Connection {
    pub key: ConnKey,
    pub stream: UnixStream,
    /// The epoll token of `stream`.
    pub token: u64,
    /// What `stream` is registered for in epoll (`None`: not registered).
    pub registered: Option<EventSet>,
    /// Whether the key sits in the muxer's rx queue.
    pub in_rx_queue: bool,
    state: State,
    deadline: Option<Instant>,
    need_request: bool,
    need_response: bool,
    need_credit_update: bool,
    credit_request_sent: bool,
    pending_shutdown: u32,
    credit: Credit,
    /// Guest data waiting for the host socket.
    tx_buf: PendingTx,
    peer_shutdown: u32,
    write_shut: bool,
    host_readable: bool,
    host_eof: bool,
    host_hup: bool,
}

impl Connection {
    fn new(key: ConnKey, stream: UnixStream, token: u64, state: State) -> Self {
        Self {
            key,
            stream,
            token,
            registered: None,
            in_rx_queue: false,
            state,
            deadline: None,
            need_request: false,
            need_response: false,
            need_credit_update: false,
            credit_request_sent: false,
            pending_shutdown: 0,
            credit: Credit::default(),
            tx_buf: PendingTx::default(),
            peer_shutdown: 0,
            write_shut: false,
            host_readable: false,
            host_eof: false,
            host_hup: false,
        }
    }

    /// A host client asked for guest port `key.peer_port`: send `OP_REQUEST`, wait until
    /// `deadline` for the answer.
    pub fn new_local(key: ConnKey, stream: UnixStream, token: u64, deadline: Instant) -> Self {
        let mut c = Self::new(key, stream, token, State::LocalInit);
        c.need_request = true;
        c.deadline = Some(deadline);
        c
    }

    /// The guest's `OP_REQUEST` (`req`) was forwarded to `stream`: answer `OP_RESPONSE`.
    pub fn new_peer(key: ConnKey, stream: UnixStream, token: u64, req: &Header) -> Self {
        let mut c = Self::new(key, stream, token, State::Established);
        c.need_response = true;
        c.credit.update_peer(req.buf_alloc, req.fwd_cnt);
        c
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// A header from us to the guest for this connection, carrying our credit.
    pub fn header(&self, guest_cid: u64, op: u16, flags: u32, len: u32) -> Header {
        Header {
            src_cid: HOST_CID,
            dst_cid: guest_cid,
            src_port: self.key.local_port,
            dst_port: self.key.peer_port,
            len,
            socket_type: TYPE_STREAM,
            op,
            flags,
            buf_alloc: CONN_BUF_ALLOC,
            fwd_cnt: self.credit.fwd_cnt(),
        }
    }

    fn peer_credit(&self) -> u32 {
        self.credit.peer_free()
    }

    fn can_read_host(&self) -> bool {
        self.state == State::Established
            && !self.host_eof
            && self.peer_shutdown & SHUTDOWN_RCV == 0
            && self.pending_shutdown == 0
    }

    /// The epoll events `stream` should be registered for.
    pub fn desired_interest(&self) -> EventSet {
        let mut set = EventSet::empty();
        if self.can_read_host() && !self.host_readable && self.peer_credit() > 0 {
            set |= EventSet::IN;
        }
        if self.state == State::Established && !self.tx_buf.is_empty() {
            set |= EventSet::OUT;
        }
        set
    }

    /// Handles a validated packet from the guest for this connection.
    pub fn on_guest(&mut self, hdr: &Header, data: &[u8], now: Instant) -> Outcome {
        self.credit.update_peer(hdr.buf_alloc, hdr.fwd_cnt);
        if self.peer_credit() > 0 {
            self.credit_request_sent = false;
        }
        if hdr.op == OP_RST {
            return Outcome::Remove {
                rst: false,
                reason: "guest reset the connection",
            };
        }
        match self.state {
            State::LocalInit => self.on_guest_connecting(hdr),
            State::Closing => match hdr.op {
                OP_SHUTDOWN => Outcome::Remove {
                    rst: true,
                    reason: "closed by both sides",
                },
                _ => Outcome::Keep,
            },
            State::Established => self.on_guest_established(hdr, data, now),
        }
    }

    fn on_guest_connecting(&mut self, hdr: &Header) -> Outcome {
        if hdr.op != OP_RESPONSE {
            return Outcome::Remove {
                rst: true,
                reason: "guest answered a connection request with neither response nor reset",
            };
        }
        let reply = format!("OK {}\n", self.key.local_port);
        if self.stream.write_all(reply.as_bytes()).is_err() {
            return Outcome::Remove {
                rst: true,
                reason: "host client went away before the guest accepted",
            };
        }
        self.state = State::Established;
        self.deadline = None;
        Outcome::Keep
    }

    fn on_guest_established(&mut self, hdr: &Header, data: &[u8], now: Instant) -> Outcome {
        match hdr.op {
            OP_RW => self.on_guest_data(data),
            OP_CREDIT_REQUEST => {
                self.need_credit_update = true;
                Outcome::Keep
            }
            OP_CREDIT_UPDATE => Outcome::Keep,
            OP_SHUTDOWN => {
                self.peer_shutdown |= hdr.flags & SHUTDOWN_BOTH;
                if self.peer_shutdown == SHUTDOWN_BOTH && !self.tx_buf.is_empty() {
                    self.deadline = Some(now + CLOSE_TIMEOUT);
                }
                self.after_flush()
            }
            _ => Outcome::Remove {
                rst: true,
                reason: "unexpected operation on an established connection",
            },
        }
    }

    fn on_guest_data(&mut self, data: &[u8]) -> Outcome {
        if self.peer_shutdown & SHUTDOWN_SEND != 0 {
            return Outcome::Remove {
                rst: true,
                reason: "guest sent data after shutting down sending",
            };
        }
        if !self.tx_buf.fits(data.len()) {
            return Outcome::Remove {
                rst: true,
                reason: "guest sent beyond its credit",
            };
        }
        match self.tx_buf.push(&mut self.stream, data) {
            Ok(n) => {
                self.forwarded(n);
                Outcome::Keep
            }
            Err(_) => Outcome::Remove {
                rst: true,
                reason: "writing to the host socket failed",
            },
        }
    }

    fn forwarded(&mut self, n: usize) {
        if self.credit.forwarded(n) {
            self.need_credit_update = true;
        }
    }

    /// Once guest data is flushed: pass the guest's half-close on, or finish a full close.
    fn after_flush(&mut self) -> Outcome {
        if !self.tx_buf.is_empty() {
            return Outcome::Keep;
        }
        if self.peer_shutdown == SHUTDOWN_BOTH {
            return Outcome::Remove {
                rst: true,
                reason: "guest closed the connection",
            };
        }
        if self.peer_shutdown & SHUTDOWN_SEND != 0 && !self.write_shut {
            self.write_shut = true;
            // The host may already be gone; reading will tell.
            let _ = self.stream.shutdown(Shutdown::Write);
        }
        Outcome::Keep
    }

    /// Handles readiness of the Unix stream.
    pub fn on_host_event(&mut self, events: EventSet) -> Outcome {
        if events.intersects(EventSet::HANG_UP | EventSet::ERROR) {
            self.host_hup = true;
            self.host_readable = true;
        }
        if events.contains(EventSet::IN) {
            self.host_readable = true;
        }
        if events.contains(EventSet::OUT) && self.state == State::Established {
            return match self.tx_buf.flush(&mut self.stream) {
                Ok(n) => {
                    self.forwarded(n);
                    self.after_flush()
                }
                Err(_) => Outcome::Remove {
                    rst: true,
                    reason: "writing to the host socket failed",
                },
            };
        }
        Outcome::Keep
    }

    /// Called when `deadline` has passed.
    pub fn on_deadline(&mut self, now: Instant) -> Outcome {
        match self.deadline {
            Some(d) if d <= now => Outcome::Remove {
                rst: true,
                reason: match self.state {
                    State::LocalInit => "guest did not answer the connection request",
                    State::Closing => "guest did not reset a closed connection",
                    State::Established => "host socket did not take the guest's last data",
                },
            },
            _ => Outcome::Keep,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::vsock::packet::OP_REQUEST;
    use std::io::Read;

    pub(super) const CID: u64 = 3;

    pub(super) fn pair() -> (UnixStream, UnixStream) {
        let (host, ours) = UnixStream::pair().expect("pair");
        ours.set_nonblocking(true).expect("nonblocking");
        (host, ours)
    }

    pub(super) fn key() -> ConnKey {
        ConnKey {
            local_port: 1 << 30,
            peer_port: 52,
        }
    }

    pub(super) fn guest(op: u16, flags: u32, len: u32, buf_alloc: u32, fwd_cnt: u32) -> Header {
        Header {
            src_cid: CID,
            dst_cid: HOST_CID,
            src_port: 52,
            dst_port: 1 << 30,
            len,
            socket_type: TYPE_STREAM,
            op,
            flags,
            buf_alloc,
            fwd_cnt,
        }
    }

    pub(super) fn established(buf_alloc: u32) -> (UnixStream, Connection) {
        let (host, ours) = pair();
        let mut c = Connection::new_peer(key(), ours, 9, &guest(OP_REQUEST, 0, 0, buf_alloc, 0));
        let mut buf = [0u8; 64];
        let step = c.next_rx(CID, &mut buf, Instant::now());
        assert!(matches!(step, RxStep::Packet(h, 0) if h.op == OP_RESPONSE));
        (host, c)
    }

    pub(super) fn op_of(step: RxStep) -> Option<(u16, u32, usize)> {
        match step {
            RxStep::Packet(h, n) => Some((h.op, h.flags, n)),
            _ => None,
        }
    }

    #[test]
    fn test_connection_local_response_writes_ok_line() {
        let (mut host, ours) = pair();
        let now = Instant::now();
        let mut c = Connection::new_local(key(), ours, 9, now + CLOSE_TIMEOUT);
        let mut buf = [0u8; 64];
        let step = c.next_rx(CID, &mut buf, now);
        assert!(matches!(step, RxStep::Packet(h, 0)
            if h.op == OP_REQUEST && h.dst_port == 52 && h.dst_cid == CID && h.src_cid == HOST_CID));
        let out = c.on_guest(&guest(OP_RESPONSE, 0, 0, 4096, 0), &[], now);
        assert_eq!(out, Outcome::Keep);
        assert_eq!(c.state, State::Established);
        let mut line = [0u8; 14];
        host.read_exact(&mut line).expect("ok line");
        assert_eq!(&line, b"OK 1073741824\n");
    }

    #[test]
    fn test_connection_local_init_deadline_expires_with_rst() {
        let (_host, ours) = pair();
        let now = Instant::now();
        let mut c = Connection::new_local(key(), ours, 9, now + CLOSE_TIMEOUT);
        assert_eq!(c.on_deadline(now), Outcome::Keep);
        assert!(matches!(
            c.on_deadline(now + CLOSE_TIMEOUT),
            Outcome::Remove { rst: true, .. }
        ));
    }

    #[test]
    fn test_connection_guest_data_forwarded_counts_fwd_cnt() {
        let (mut host, mut c) = established(4096);
        let out = c.on_guest(&guest(OP_RW, 0, 5, 4096, 0), b"hello", Instant::now());
        assert_eq!(out, Outcome::Keep);
        let mut got = [0u8; 5];
        host.read_exact(&mut got).expect("data");
        assert_eq!(&got, b"hello");
        assert_eq!(c.header(CID, OP_RW, 0, 0).fwd_cnt, 5);
    }

    #[test]
    fn test_connection_guest_over_credit_resets() {
        let (_host, mut c) = established(4096);
        let chunk = vec![7u8; 64 * 1024];
        let now = Instant::now();
        let mut outcome = Outcome::Keep;
        for _ in 0..40 {
            outcome = c.on_guest(&guest(OP_RW, 0, chunk.len() as u32, 4096, 0), &chunk, now);
            if outcome != Outcome::Keep {
                break;
            }
        }
        assert!(matches!(outcome, Outcome::Remove { rst: true, .. }));
        assert!(c.tx_buf.len() <= CONN_BUF_ALLOC as usize);
    }

    #[test]
    fn test_connection_guest_shutdown_both_removes_with_rst() {
        let (mut host, mut c) = established(4096);
        let now = Instant::now();
        let out = c.on_guest(&guest(OP_SHUTDOWN, SHUTDOWN_SEND, 0, 4096, 0), &[], now);
        assert_eq!(out, Outcome::Keep);
        let mut rest = Vec::new();
        host.read_to_end(&mut rest).expect("eof after half close");
        assert!(rest.is_empty());
        let out = c.on_guest(&guest(OP_SHUTDOWN, SHUTDOWN_RCV, 0, 4096, 0), &[], now);
        assert!(matches!(out, Outcome::Remove { rst: true, .. }));
    }
}
