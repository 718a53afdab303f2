//! Credit-based flow control for one connection (virtio 1.2, section 5.10.6.3).
//!
//! Each side advertises `buf_alloc` (its receive buffer) and `fwd_cnt` (bytes it has consumed);
//! a sender may have at most `buf_alloc - (sent - fwd_cnt)` bytes in flight. All counters wrap.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::num::Wrapping;

/// Buffer space we advertise to the guest for each connection (`buf_alloc`).
pub const CONN_BUF_ALLOC: u32 = 256 * 1024;
/// Tell the guest about forwarded bytes once this many are unreported.
const CREDIT_UPDATE_THRESHOLD: u32 = CONN_BUF_ALLOC / 4;

/// The counters of both directions of a connection.
#[derive(Debug, Default)]
pub struct Credit {
    /// Guest to host: bytes handed to the host socket.
    fwd_cnt: Wrapping<u32>,
    /// The `fwd_cnt` the guest last heard from us.
    fwd_cnt_reported: Wrapping<u32>,
    /// Host to guest: bytes put on the rx queue.
    rx_cnt: Wrapping<u32>,
    peer_buf_alloc: u32,
    peer_fwd_cnt: Wrapping<u32>,
}

impl Credit {
    pub fn fwd_cnt(&self) -> u32 {
        self.fwd_cnt.0
    }

    /// Takes the guest's `buf_alloc`/`fwd_cnt` from a packet header.
    pub fn update_peer(&mut self, buf_alloc: u32, fwd_cnt: u32) {
        self.peer_buf_alloc = buf_alloc;
        self.peer_fwd_cnt = Wrapping(fwd_cnt);
    }

    /// Bytes the guest can take now. A guest claiming to have consumed more than it was sent
    /// gets nothing rather than a windfall.
    pub fn peer_free(&self) -> u32 {
        let in_flight = (self.rx_cnt - self.peer_fwd_cnt).0;
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    /// `n` bytes went to the guest.
    pub fn sent_to_peer(&mut self, n: usize) {
        self.rx_cnt += Wrapping(n as u32);
    }

    /// `n` guest bytes reached the host socket. Returns whether the guest should be told.
    pub fn forwarded(&mut self, n: usize) -> bool {
        self.fwd_cnt += Wrapping(n as u32);
        (self.fwd_cnt - self.fwd_cnt_reported).0 >= CREDIT_UPDATE_THRESHOLD
    }

    /// A header carrying the current `fwd_cnt` went to the guest.
    pub fn reported(&mut self) {
        self.fwd_cnt_reported = self.fwd_cnt;
    }
}

/// Guest data the host socket has not taken yet. Never more than [`CONN_BUF_ALLOC`]: the
/// guest may not send more than that before we report it forwarded.
#[derive(Debug, Default)]
pub struct PendingTx {
    buf: VecDeque<u8>,
}

impl PendingTx {
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether `n` more bytes stay within the credit we gave.
    pub fn fits(&self, n: usize) -> bool {
        self.buf.len() + n <= CONN_BUF_ALLOC as usize
    }

    /// Writes `data` behind anything already pending, keeping what `w` does not take.
    /// Returns how many bytes reached `w`. The caller checks [`PendingTx::fits`] first.
    pub fn push(&mut self, w: &mut impl Write, data: &[u8]) -> io::Result<usize> {
        let mut written = 0;
        if self.buf.is_empty() {
            written = write_some(w, data)?;
        }
        self.buf.extend(&data[written..]);
        Ok(written)
    }

    /// Writes pending bytes until `w` would block. Returns how many it took.
    pub fn flush(&mut self, w: &mut impl Write) -> io::Result<usize> {
        let mut total = 0;
        while !self.buf.is_empty() {
            let (front, _) = self.buf.as_slices();
            let n = write_some(w, front)?;
            if n == 0 {
                break;
            }
            self.buf.drain(..n);
            total += n;
        }
        Ok(total)
    }
}

/// Writes what `w` takes now; `Ok(0)` when it would block.
fn write_some(w: &mut impl Write, data: &[u8]) -> io::Result<usize> {
    if data.is_empty() {
        return Ok(0);
    }
    loop {
        match w.write(data) {
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

    /// Takes at most `room` bytes, then would block.
    struct Sink {
        room: usize,
        got: Vec<u8>,
    }

    impl Write for Sink {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = data.len().min(self.room);
            self.room -= n;
            self.got.extend_from_slice(&data[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn test_credit_peer_free_tracks_in_flight_bytes() {
        let mut c = Credit::default();
        assert_eq!(c.peer_free(), 0, "no credit before the guest speaks");
        c.update_peer(100, 0);
        c.sent_to_peer(60);
        assert_eq!(c.peer_free(), 40);
        c.update_peer(100, 50);
        assert_eq!(c.peer_free(), 90);
    }

    #[test]
    fn test_credit_counters_wrapping_stay_correct() {
        let mut c = Credit::default();
        c.sent_to_peer(u32::MAX as usize);
        c.update_peer(100, u32::MAX);
        c.sent_to_peer(30);
        assert_eq!(c.peer_free(), 70);
    }

    #[test]
    fn test_credit_peer_overclaiming_fwd_cnt_gets_no_credit() {
        let mut c = Credit::default();
        c.sent_to_peer(10);
        c.update_peer(100, 500);
        assert_eq!(c.peer_free(), 0);
    }

    #[test]
    fn test_credit_forwarded_past_threshold_wants_update() {
        let mut c = Credit::default();
        assert!(!c.forwarded(CREDIT_UPDATE_THRESHOLD as usize - 1));
        assert!(c.forwarded(1));
        c.reported();
        assert!(!c.forwarded(1));
        assert_eq!(c.fwd_cnt(), CREDIT_UPDATE_THRESHOLD + 1);
    }

    #[test]
    fn test_pending_tx_partial_write_keeps_rest_in_order() {
        let mut p = PendingTx::default();
        let mut sink = Sink {
            room: 3,
            got: Vec::new(),
        };
        assert_eq!(p.push(&mut sink, b"abcdef").expect("push"), 3);
        assert_eq!(p.push(&mut sink, b"gh").expect("push"), 0);
        assert_eq!(p.len(), 5);
        sink.room = 100;
        assert_eq!(p.flush(&mut sink).expect("flush"), 5);
        assert!(p.is_empty());
        assert_eq!(sink.got, b"abcdefgh");
    }

    #[test]
    fn test_pending_tx_fits_bounded_by_buf_alloc() {
        let mut p = PendingTx::default();
        let mut sink = Sink {
            room: 0,
            got: Vec::new(),
        };
        assert!(p.fits(CONN_BUF_ALLOC as usize));
        p.push(&mut sink, &[0; 1000]).expect("push");
        assert!(!p.fits(CONN_BUF_ALLOC as usize - 999));
    }
}
