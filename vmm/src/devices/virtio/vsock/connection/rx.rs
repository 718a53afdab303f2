//! What a connection sends to the guest. Packets are produced only when an rx buffer is at
//! hand, and host data is read from the socket straight into it, never more than the guest's
//! credit allows.

use std::io::{self, Read};
use std::time::Instant;

use super::super::packet::{
    Header, OP_CREDIT_REQUEST, OP_CREDIT_UPDATE, OP_REQUEST, OP_RESPONSE, OP_RW, OP_SHUTDOWN,
    SHUTDOWN_BOTH, SHUTDOWN_SEND,
};
use super::{Connection, State, CLOSE_TIMEOUT};

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

impl Connection {
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

    /// Produces the next packet for the guest. Data is read from the host socket into `buf`
    /// (at most its length and the guest's credit).
    pub fn next_rx(&mut self, guest_cid: u64, buf: &mut [u8], now: Instant) -> RxStep {
        let step = self.next_rx_inner(guest_cid, buf, now);
        if let RxStep::Packet(..) = step {
            // Every header carries our fwd_cnt, so it doubles as a credit update.
            self.credit.reported();
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
                        self.credit.sent_to_peer(n);
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
}

#[cfg(test)]
mod tests {
    use super::super::super::credit::CONN_BUF_ALLOC;
    use super::super::super::packet::OP_RST;
    use super::super::tests::*;
    use super::super::Outcome;
    use super::*;
    use std::io::Write;
    use std::net::Shutdown;
    use vmm_sys_util::epoll::EventSet;

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
}
