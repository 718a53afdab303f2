//! The virtio-net worker: one epoll over both queue notifications, the tap and the stop event.
//!
//! Level-triggered throughout. The tap is watched only while the guest has receive buffers:
//! when a frame finds none, the tap is dropped from the epoll set until the guest notifies the
//! receive queue, so an idle or stuck guest costs no CPU. Each round handles at most a budget
//! of chains per queue, so neither direction can starve the other; leftover work makes the
//! next wait return at once.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::time::Instant;

use virtio_bindings::virtio_ring::VRING_AVAIL_F_NO_INTERRUPT;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::rx::RxState;
use super::tap::TapIo;
use super::NetError;
use crate::devices::virtio::ratelimit::LogLimiter;
use crate::devices::virtio::{GuestMemory as GuestMem, VirtioInterrupt};

const TOKEN_RX_KICK: u64 = 0;
const TOKEN_TX_KICK: u64 = 1;
const TOKEN_TAP: u64 = 2;
const TOKEN_STOP: u64 = 3;

/// What one pass over a queue did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Round {
    /// Chains were returned to the used ring.
    pub used: bool,
    /// The budget ran out with work left.
    pub more: bool,
    /// A frame is waiting for receive buffers the guest has not given yet.
    pub starved: bool,
}

/// Owns both queues while the device is active.
#[derive(Debug)]
pub(super) struct NetHandler {
    pub(super) mem: GuestMem,
    pub(super) rx: Queue,
    pub(super) tx: Queue,
    pub(super) tap: Arc<dyn TapIo>,
    pub(super) rx_state: RxState,
    interrupt: Arc<VirtioInterrupt>,
    log: LogLimiter,
}

impl NetHandler {
    pub(super) fn new(
        mem: GuestMem,
        rx: Queue,
        tx: Queue,
        tap: Arc<dyn TapIo>,
        interrupt: Arc<VirtioInterrupt>,
        mergeable: bool,
    ) -> Self {
        Self {
            mem,
            rx,
            tx,
            tap,
            rx_state: RxState::new(mergeable),
            interrupt,
            log: LogLimiter::new("virtio-net", Instant::now()),
        }
    }

    /// Serves the queues until `stop` becomes readable.
    pub(super) fn run(mut self, rx_kick: EventFd, tx_kick: EventFd, stop: EventFd) {
        if let Err(e) = self.serve(&rx_kick, &tx_kick, &stop) {
            tracing::error!(error = %e, "virtio-net worker stopped");
        }
    }

    fn serve(
        &mut self,
        rx_kick: &EventFd,
        tx_kick: &EventFd,
        stop: &EventFd,
    ) -> Result<(), NetError> {
        let epoll = Epoll::new().map_err(NetError::CreateEpoll)?;
        let tap_fd = self.tap.as_raw_fd();
        for (fd, token) in [
            (rx_kick.as_raw_fd(), TOKEN_RX_KICK),
            (tx_kick.as_raw_fd(), TOKEN_TX_KICK),
            (stop.as_raw_fd(), TOKEN_STOP),
            (tap_fd, TOKEN_TAP),
        ] {
            epoll
                .ctl(
                    ControlOperation::Add,
                    fd,
                    EpollEvent::new(EventSet::IN, token),
                )
                .map_err(NetError::RegisterEvent)?;
        }
        let mut tap_watched = true;
        // The driver may have queued work before activation.
        let (mut want_rx, mut want_tx) = (true, true);
        let mut events = [EpollEvent::default(); 8];
        loop {
            let mut starved = false;
            let (mut rx_used, mut tx_used) = (false, false);
            if want_tx {
                let round = self.process_tx();
                (want_tx, tx_used) = (round.more, round.used);
            }
            if want_rx {
                let round = self.process_rx();
                (want_rx, rx_used, starved) = (round.more, round.used, round.starved);
            }
            self.signal(rx_used, tx_used);
            if starved == tap_watched {
                tap_watched = !starved;
                watch(&epoll, tap_fd, tap_watched)?;
            }
            let timeout = if want_rx || want_tx { 0 } else { -1 };
            let n = match epoll.wait(timeout, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(NetError::WaitEvents(e)),
            };
            for event in &events[..n] {
                match event.data() {
                    TOKEN_STOP => return Ok(()),
                    TOKEN_RX_KICK => {
                        // Reading resets the counter; a failure only means no new kick.
                        let _ = rx_kick.read();
                        want_rx = true;
                    }
                    TOKEN_TX_KICK => {
                        let _ = tx_kick.read();
                        want_tx = true;
                    }
                    _ => want_rx = true,
                }
            }
        }
    }

    /// Raises the interrupt once if either queue used buffers the driver wants to hear about.
    pub(super) fn signal(&mut self, rx_used: bool, tx_used: bool) {
        let rx = rx_used && wants_interrupt(&self.mem, &mut self.rx);
        let tx = tx_used && wants_interrupt(&self.mem, &mut self.tx);
        if rx || tx {
            if let Err(e) = self.interrupt.signal_used_queue() {
                self.warn("cannot raise the interrupt", &NetError::Notify(e));
            }
        }
    }

    /// Logs a failure the guest may be causing, rate-limited.
    pub(super) fn warn(&mut self, what: &str, error: &NetError) {
        if self.log.allow(Instant::now()) {
            tracing::warn!(error = %error, "virtio-net: {what}");
        }
    }
}

/// Whether the driver wants an interrupt for what was just used (section 2.7.7): by
/// `used_event` with `VIRTIO_F_EVENT_IDX`, otherwise unless `VIRTQ_AVAIL_F_NO_INTERRUPT` is set.
/// When in doubt, interrupt.
fn wants_interrupt(mem: &GuestMem, queue: &mut Queue) -> bool {
    if queue.event_idx_enabled() {
        return queue.needs_notification(mem).unwrap_or(true);
    }
    // Order the used ring writes before reading the flags, as needs_notification does.
    fence(Ordering::SeqCst);
    match mem.load::<u16>(GuestAddress(queue.avail_ring()), Ordering::Acquire) {
        Ok(flags) => u16::from_le(flags) & VRING_AVAIL_F_NO_INTERRUPT as u16 == 0,
        Err(_) => true,
    }
}

fn watch(epoll: &Epoll, fd: RawFd, readable: bool) -> Result<(), NetError> {
    let events = if readable {
        EventSet::IN
    } else {
        EventSet::empty()
    };
    epoll
        .ctl(
            ControlOperation::Modify,
            fd,
            EpollEvent::new(events, TOKEN_TAP),
        )
        .map_err(NetError::RegisterEvent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::block::testing::{memory, push_chain};
    use crate::devices::virtio::interrupt::tests::CountingIrq;
    use crate::devices::virtio::net::testing::{tx_frame, FakeTap, A};
    use virtio_queue::mock::MockSplitQueue;

    #[test]
    fn test_net_signal_no_interrupt_flag_suppresses_interrupt() {
        let mem = memory(0x10_0000);
        let rxq = MockSplitQueue::create(&mem, GuestAddress(0x8_0000), 16);
        let txq = MockSplitQueue::create(&mem, GuestAddress(0x9_0000), 16);
        let irq = CountingIrq::default();
        let tap = Arc::new(FakeTap::default());
        let mut h = NetHandler::new(
            mem.clone(),
            rxq.create_queue().expect("rx queue"),
            txq.create_queue().expect("tx queue"),
            tap,
            Arc::new(VirtioInterrupt::new(Box::new(irq.clone()))),
            false,
        );
        tx_frame(&mem, A, &[0xab; 60]);
        push_chain(&txq, 0, &[(A, 72, false)]);
        mem.write_obj(VRING_AVAIL_F_NO_INTERRUPT as u16, txq.avail_addr())
            .expect("set avail flags");

        let round = h.process_tx();
        h.signal(false, round.used);

        assert!(round.used);
        assert_eq!(irq.0.load(Ordering::SeqCst), 0);
        mem.write_obj(0u16, txq.avail_addr())
            .expect("clear avail flags");
        h.signal(false, true);
        assert_eq!(irq.0.load(Ordering::SeqCst), 1);
    }
}
