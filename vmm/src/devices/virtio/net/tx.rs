//! Guest to host (section 5.1.6.2): each transmit chain is a `virtio_net_hdr_v1` and a frame,
//! in device-readable descriptors, written to the tap with one `writev` from guest memory.
//! The tap checks the header (`virtio_net_hdr_to_skb`); this side checks the chain.

use virtio_queue::desc::split::Descriptor;
use virtio_queue::{QueueOwnedT, QueueT};
use vm_memory::{GuestMemoryBackend, VolatileSlice};

use super::handler::{NetHandler, Round};
use super::{NetError, MAX_CHAIN_SEGMENTS, MAX_TX_LEN, VNET_HDR_LEN};
use crate::devices::virtio::GuestMemory as GuestMem;

/// Most chains sent per round.
const TX_BUDGET: usize = 256;

impl NetHandler {
    /// Sends what the guest queued; every chain goes back with used length 0. Notifications
    /// are suppressed while the queue is being drained (section 2.7.10).
    pub(super) fn process_tx(&mut self) -> Round {
        let mut round = Round::default();
        let mut sent = 0;
        loop {
            // Best effort: a failure only costs extra notifications.
            let _ = self.tx.disable_notification(&self.mem);
            loop {
                if sent == TX_BUDGET {
                    round.more = true;
                    return round;
                }
                let chain = match self.tx.iter(&self.mem) {
                    Ok(mut chains) => chains.next(),
                    Err(e) => {
                        self.warn("cannot read the transmit queue", &NetError::IterQueue(e));
                        return round;
                    }
                };
                let Some(chain) = chain else {
                    break;
                };
                sent += 1;
                let head = chain.head_index();
                let result = gather(&self.mem, chain).and_then(|parts| {
                    self.tap
                        .write_frame(&parts)
                        .map(drop)
                        .map_err(NetError::TapWrite)
                });
                if let Err(e) = self.tx.add_used(&self.mem, head, 0) {
                    self.warn("cannot return a transmit buffer", &NetError::AddUsed(e));
                    return round;
                }
                round.used = true;
                if let Err(e) = result {
                    self.warn("dropped a transmit frame", &e);
                }
            }
            match self.tx.enable_notification(&self.mem) {
                Ok(true) => continue,
                Ok(false) => return round,
                Err(e) => {
                    self.warn("cannot read the transmit queue", &NetError::IterQueue(e));
                    return round;
                }
            }
        }
    }
}

/// The guest memory of a transmit chain, checked: device-readable descriptors only, inside
/// guest memory, at most [`MAX_CHAIN_SEGMENTS`] of them, at least a header and at most
/// [`MAX_TX_LEN`] bytes in all.
pub(super) fn gather(
    mem: &GuestMem,
    chain: impl IntoIterator<Item = Descriptor>,
) -> Result<Vec<VolatileSlice<'_, ()>>, NetError> {
    let mut parts = Vec::with_capacity(4);
    let mut total = 0u64;
    for desc in chain {
        if desc.is_write_only() {
            return Err(NetError::ChainDirection { writable: false });
        }
        if parts.len() == MAX_CHAIN_SEGMENTS {
            return Err(NetError::ChainTooLong);
        }
        total += u64::from(desc.len());
        if total > u64::from(MAX_TX_LEN) {
            return Err(NetError::TxTooLarge(total));
        }
        if desc.len() == 0 {
            continue;
        }
        // get_slice refuses ranges outside memory or across regions.
        let part = mem
            .get_slice(desc.addr(), desc.len() as usize)
            .map_err(|_| NetError::ChainOutsideMemory {
                addr: desc.addr().0,
                len: desc.len(),
            })?;
        parts.push(part);
    }
    if total < VNET_HDR_LEN as u64 {
        return Err(NetError::ChainTooShort(total));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::block::testing::{push_chain, used};
    use crate::devices::virtio::net::testing::{tx_frame, Setup, A, B, C};
    use std::sync::atomic::Ordering;
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::Bytes;
    use vm_memory::GuestAddress;

    #[test]
    fn test_net_tx_header_and_frame_in_two_descriptors_reach_tap() {
        let s = Setup::new(false);
        let mut h = s.handler();
        tx_frame(&s.mem, A, &[0x11; 60]);
        push_chain(&s.txq, 0, &[(A, 12, false), (A + 12, 60, false)]);

        let round = h.process_tx();

        let sent = s.tap.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].len(), 72);
        assert_eq!(&sent[0][12..], &[0x11; 60][..]);
        assert_eq!(used(&s.txq, 0), (0, 0));
        assert_eq!(
            round,
            Round {
                used: true,
                more: false,
                starved: false
            }
        );
        h.signal(false, round.used);
        assert_eq!(s.irq.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn test_net_tx_writable_descriptor_dropped_next_chain_sent() {
        let s = Setup::new(false);
        let mut h = s.handler();
        tx_frame(&s.mem, A, &[0x22; 60]);
        push_chain(&s.txq, 0, &[(A, 12, false), (B, 60, true)]);
        push_chain(&s.txq, 2, &[(A, 72, false)]);

        h.process_tx();

        assert_eq!(s.tap.sent().len(), 1);
        assert_eq!(used(&s.txq, 0), (0, 0));
        assert_eq!(used(&s.txq, 1), (0, 2));
    }

    #[test]
    fn test_net_tx_oversized_short_and_outside_chains_dropped_good_one_sent() {
        let s = Setup::new(false);
        let mut h = s.handler();
        tx_frame(&s.mem, A, &[0x33; 60]);
        push_chain(&s.txq, 0, &[(A, 12, false), (B, MAX_TX_LEN - 11, false)]);
        push_chain(&s.txq, 2, &[(A, 11, false)]);
        push_chain(&s.txq, 3, &[(A, 12, false), (0x20_0000, 64, false)]);
        push_chain(&s.txq, 5, &[(A, 12, false), (0xf_fff0, 64, false)]);
        push_chain(&s.txq, 7, &[(A, 72, false)]);

        let round = h.process_tx();

        assert!(round.used);
        assert_eq!(s.tap.sent().len(), 1);
        assert_eq!(s.tap.sent()[0].len(), 72);
        for i in 0..5 {
            assert_eq!(used(&s.txq, i).0, 0);
        }
    }

    #[test]
    fn test_net_tx_largest_frame_accepted() {
        let s = Setup::new(false);
        let mut h = s.handler();
        push_chain(&s.txq, 0, &[(A, 12, false), (B, MAX_TX_LEN - 12, false)]);

        h.process_tx();

        assert_eq!(s.tap.sent()[0].len(), MAX_TX_LEN as usize);
    }

    #[test]
    fn test_net_tx_too_many_descriptors_dropped() {
        let s = Setup::new(false);
        let txq = MockSplitQueue::create(&s.mem, GuestAddress(0xa_0000), 512);
        let mut h = s.handler_with(&s.rxq, &txq);
        let descs: Vec<_> = (0..MAX_CHAIN_SEGMENTS as u64 + 1)
            .map(|i| (C + i, 1, false))
            .collect();
        push_chain(&txq, 0, &descs);

        h.process_tx();

        assert!(s.tap.sent().is_empty());
        assert_eq!(used(&txq, 0), (0, 0));
    }

    #[test]
    fn test_net_tx_tap_write_error_consumes_chain() {
        let s = Setup::new(false);
        let mut h = s.handler();
        s.tap.fail_writes();
        tx_frame(&s.mem, A, &[0x44; 60]);
        push_chain(&s.txq, 0, &[(A, 72, false)]);

        let round = h.process_tx();

        assert!(round.used);
        assert_eq!(used(&s.txq, 0), (0, 0));
    }

    #[test]
    fn test_net_tx_budget_leaves_more() {
        let s = Setup::new(false);
        let txq = MockSplitQueue::create(&s.mem, GuestAddress(0xa_0000), 512);
        let mut h = s.handler_with(&s.rxq, &txq);
        s.mem
            .write_slice(&[0; 12], GuestAddress(A))
            .expect("header");
        for i in 0..(TX_BUDGET as u16 + 1) {
            push_chain(&txq, i, &[(A, 12, false)]);
        }

        let first = h.process_tx();
        let second = h.process_tx();

        assert!(first.more);
        assert!(!second.more);
        assert_eq!(s.tap.sent().len(), TX_BUDGET + 1);
    }
}
