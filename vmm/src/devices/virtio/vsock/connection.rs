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

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::num::Wrapping;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use vmm_sys_util::epoll::EventSet;

use super::packet::{
    Header, HOST_CID, OP_CREDIT_REQUEST, OP_CREDIT_UPDATE, OP_REQUEST, OP_RESPONSE, OP_RST, OP_RW,
    OP_SHUTDOWN, SHUTDOWN_BOTH, SHUTDOWN_RCV, SHUTDOWN_SEND, TYPE_STREAM,
};

/// Buffer space we advertise to the guest for each connection (`buf_alloc`).
pub const CONN_BUF_ALLOC: u32 = 256 * 1024;
/// Tell the guest about forwarded bytes once this many are unreported.
const CREDIT_UPDATE_THRESHOLD: u32 = CONN_BUF_ALLOC / 4;
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

/// The next packet a connection wants to put on the rx queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxStep {
    /// A header, followed by this many payload bytes at the start of the buffer.
    Packet(Header, usize),
    Nothing,
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
    // Guest to host.
    tx_buf: VecDeque<u8>,
    fwd_cnt: Wrapping<u32>,
    last_fwd_cnt_sent: Wrapping<u32>,
    peer_shutdown: u32,
    write_shut: bool,
    // Host to guest.
    rx_cnt: Wrapping<u32>,
    peer_buf_alloc: u32,
    peer_fwd_cnt: Wrapping<u32>,
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
            tx_buf: VecDeque::new(),
            fwd_cnt: Wrapping(0),
            last_fwd_cnt_sent: Wrapping(0),
            peer_shutdown: 0,
            write_shut: false,
            rx_cnt: Wrapping(0),
            peer_buf_alloc: 0,
            peer_fwd_cnt: Wrapping(0),
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
        c.peer_buf_alloc = req.buf_alloc;
        c.peer_fwd_cnt = Wrapping(req.fwd_cnt);
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
            fwd_cnt: self.fwd_cnt.0,
        }
    }

    /// Bytes the guest can still take (its `buf_alloc` less what is in flight).
    pub fn peer_credit(&self) -> u32 {
        let in_flight = (self.rx_cnt - self.peer_fwd_cnt).0;
        self.peer_buf_alloc.saturating_sub(in_flight)
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

    fn wants_credit_request(&self) -> bool {
        self.can_read_host()
            && self.host_readable
            && self.peer_credit() == 0
            && !self.credit_request_sent
    }

    /// Whether [`Connection::next_rx`] has something to send.
    pub fn has_rx_work(&self) -> bool {
        self.need_request
            || self.need_response
            || self.pending_shutdown != 0
            || self.need_credit_update
            || self.wants_credit_request()
            || (self.can_read_host() && self.host_readable && self.peer_credit() > 0)
    }

    /// Handles a validated packet from the guest for this connection.
    pub fn on_guest(&mut self, hdr: &Header, data: &[u8], now: Instant) -> Outcome {
        self.peer_buf_alloc = hdr.buf_alloc;
        self.peer_fwd_cnt = Wrapping(hdr.fwd_cnt);
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
        if self.tx_buf.len() + data.len() > CONN_BUF_ALLOC as usize {
            return Outcome::Remove {
                rst: true,
                reason: "guest sent beyond its credit",
            };
        }
        let mut rest = data;
        if self.tx_buf.is_empty() {
            match write_some(&mut self.stream, rest) {
                Ok(n) => {
                    self.forwarded(n);
                    rest = &rest[n..];
                }
                Err(_) => {
                    return Outcome::Remove {
                        rst: true,
                        reason: "writing to the host socket failed",
                    }
                }
            }
        }
        self.tx_buf.extend(rest);
        Outcome::Keep
    }

    fn forwarded(&mut self, n: usize) {
        self.fwd_cnt += Wrapping(n as u32);
        if (self.fwd_cnt - self.last_fwd_cnt_sent).0 >= CREDIT_UPDATE_THRESHOLD {
            self.need_credit_update = true;
        }
    }

    /// Writes buffered guest data to the host socket.
    fn flush(&mut self) -> io::Result<()> {
        while !self.tx_buf.is_empty() {
            let (front, _) = self.tx_buf.as_slices();
            let n = write_some(&mut self.stream, front)?;
            if n == 0 {
                break;
            }
            self.tx_buf.drain(..n);
            self.forwarded(n);
        }
        Ok(())
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
            if self.flush().is_err() {
                return Outcome::Remove {
                    rst: true,
                    reason: "writing to the host socket failed",
                };
            }
            return self.after_flush();
        }
        Outcome::Keep
    }

    /// Produces the next packet for the guest. Data is read from the host socket into `buf`
    /// (at most its length and the guest's credit).
    pub fn next_rx(&mut self, guest_cid: u64, buf: &mut [u8], now: Instant) -> RxStep {
        let step = self.next_rx_inner(guest_cid, buf, now);
        if let RxStep::Packet(..) = step {
            // Every header carries our fwd_cnt, so it doubles as a credit update.
            self.last_fwd_cnt_sent = self.fwd_cnt;
            self.need_credit_update = false;
        }
        step
    }

    fn next_rx_inner(&mut self, guest_cid: u64, buf: &mut [u8], now: Instant) -> RxStep {
        if self.need_request {
            self.need_request = false;
            return RxStep::Packet(self.header(guest_cid, OP_REQUEST, 0, 0), 0);
        }
        if self.need_response {
            self.need_response = false;
            return RxStep::Packet(self.header(guest_cid, OP_RESPONSE, 0, 0), 0);
        }
        if self.can_read_host() && self.host_readable && self.peer_credit() > 0 {
            let want = buf.len().min(self.peer_credit() as usize);
            if want > 0 {
                match self.stream.read(&mut buf[..want]) {
                    Ok(0) => {
                        self.host_readable = false;
                        self.host_eof = true;
                        self.pending_shutdown = if self.host_hup {
                            SHUTDOWN_BOTH
                        } else {
                            SHUTDOWN_SEND
                        };
                    }
                    Ok(n) => {
                        // A short read means the socket is (probably) drained: wait for epoll.
                        self.host_readable = n == want;
                        self.rx_cnt += Wrapping(n as u32);
                        return RxStep::Packet(self.header(guest_cid, OP_RW, 0, n as u32), n);
                    }
                    Err(e)
                        if e.kind() == io::ErrorKind::WouldBlock
                            || e.kind() == io::ErrorKind::Interrupted =>
                    {
                        self.host_readable = false;
                    }
                    Err(_) => {
                        return RxStep::Remove {
                            rst: true,
                            reason: "reading from the host socket failed",
                        }
                    }
                }
            }
        }
        if self.pending_shutdown != 0 {
            let flags = self.pending_shutdown;
            self.pending_shutdown = 0;
            if flags == SHUTDOWN_BOTH {
                self.state = State::Closing;
                self.deadline = Some(now + CLOSE_TIMEOUT);
            }
            return RxStep::Packet(self.header(guest_cid, OP_SHUTDOWN, flags, 0), 0);
        }
        if self.need_credit_update {
            return RxStep::Packet(self.header(guest_cid, OP_CREDIT_UPDATE, 0, 0), 0);
        }
        if self.wants_credit_request() {
            self.credit_request_sent = true;
            return RxStep::Packet(self.header(guest_cid, OP_CREDIT_REQUEST, 0, 0), 0);
        }
        RxStep::Nothing
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

/// Writes what the socket takes now; `Ok(0)` when it would block.
fn write_some(stream: &mut UnixStream, data: &[u8]) -> io::Result<usize> {
    if data.is_empty() {
        return Ok(0);
    }
    loop {
        match stream.write(data) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: u64 = 3;

    fn pair() -> (UnixStream, UnixStream) {
        let (host, ours) = UnixStream::pair().expect("pair");
        ours.set_nonblocking(true).expect("nonblocking");
        (host, ours)
    }

    fn key() -> ConnKey {
        ConnKey {
            local_port: 1 << 30,
            peer_port: 52,
        }
    }

    fn guest(op: u16, flags: u32, len: u32, buf_alloc: u32, fwd_cnt: u32) -> Header {
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

    fn established(buf_alloc: u32) -> (UnixStream, Connection) {
        let (host, ours) = pair();
        let mut c = Connection::new_peer(key(), ours, 9, &guest(OP_REQUEST, 0, 0, buf_alloc, 0));
        let mut buf = [0u8; 64];
        let step = c.next_rx(CID, &mut buf, Instant::now());
        assert!(matches!(step, RxStep::Packet(h, 0) if h.op == OP_RESPONSE));
        (host, c)
    }

    fn op_of(step: RxStep) -> Option<(u16, u32, usize)> {
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
    fn test_connection_no_credit_stops_reading_until_update() {
        let (mut host, mut c) = established(10);
        host.write_all(&[1u8; 100]).expect("write");
        assert!(c.desired_interest().contains(EventSet::IN));
        c.on_host_event(EventSet::IN);
        let now = Instant::now();
        let mut buf = [0u8; 4096];
        assert_eq!(op_of(c.next_rx(CID, &mut buf, now)), Some((OP_RW, 0, 10)));
        assert!(!c.desired_interest().contains(EventSet::IN));
        assert_eq!(
            op_of(c.next_rx(CID, &mut buf, now)),
            Some((OP_CREDIT_REQUEST, 0, 0))
        );
        assert_eq!(c.next_rx(CID, &mut buf, now), RxStep::Nothing);
        assert!(!c.has_rx_work());
        c.on_guest(&guest(OP_CREDIT_UPDATE, 0, 0, 10, 10), &[], now);
        assert!(c.has_rx_work());
        assert_eq!(op_of(c.next_rx(CID, &mut buf, now)), Some((OP_RW, 0, 10)));
    }

    #[test]
    fn test_connection_credit_request_answered_with_update() {
        let (_host, mut c) = established(4096);
        let now = Instant::now();
        c.on_guest(&guest(OP_CREDIT_REQUEST, 0, 0, 4096, 0), &[], now);
        let mut buf = [0u8; 64];
        match c.next_rx(CID, &mut buf, now) {
            RxStep::Packet(h, 0) => {
                assert_eq!(h.op, OP_CREDIT_UPDATE);
                assert_eq!(h.buf_alloc, CONN_BUF_ALLOC);
            }
            other => panic!("expected a credit update, got {other:?}"),
        }
    }

    #[test]
    fn test_connection_host_eof_sends_shutdown_send() {
        let (host, mut c) = established(4096);
        host.shutdown(Shutdown::Write).expect("half close");
        c.on_host_event(EventSet::IN);
        let mut buf = [0u8; 64];
        let now = Instant::now();
        assert_eq!(
            op_of(c.next_rx(CID, &mut buf, now)),
            Some((OP_SHUTDOWN, SHUTDOWN_SEND, 0))
        );
        assert_eq!(c.state, State::Established);
        assert!(c.desired_interest().is_empty());
    }

    #[test]
    fn test_connection_host_close_sends_full_shutdown_then_rst_removes() {
        let (host, mut c) = established(4096);
        drop(host);
        c.on_host_event(EventSet::IN | EventSet::HANG_UP);
        let mut buf = [0u8; 64];
        let now = Instant::now();
        assert_eq!(
            op_of(c.next_rx(CID, &mut buf, now)),
            Some((OP_SHUTDOWN, SHUTDOWN_BOTH, 0))
        );
        assert_eq!(c.state, State::Closing);
        let out = c.on_guest(&guest(OP_RST, 0, 0, 4096, 0), &[], now);
        assert!(matches!(out, Outcome::Remove { rst: false, .. }));
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
