//! The device's event loop: one epoll over the queue notifications, the Unix listener, host
//! clients still sending their `CONNECT` line, and every connection's Unix stream.
//!
//! Guest packets are read from the tx queue and dispatched by `(host port, guest port)`.
//! Packets for the guest are produced lazily: connections with something to say wait in a
//! round-robin queue and write straight into rx buffers as the guest provides them, so nothing
//! is buffered for the guest beyond a bounded queue of resets.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use virtio_queue::Queue;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::connection::{ConnKey, Connection, Outcome, CLOSE_TIMEOUT};
use super::packet::{Header, Segment, MAX_PAYLOAD, OP_RST};
use super::uds::PendingClient;
use super::{VsockError, EVENT_QUEUE, MAX_CONNECTIONS, RX_QUEUE, TX_QUEUE};
use crate::devices::virtio::ratelimit::LogLimiter;
use crate::devices::virtio::{GuestMemory, VirtioInterrupt};

mod host;
mod queues;

const TOKEN_LISTENER: u64 = 3;
const TOKEN_STOP: u64 = 4;
const FIRST_TOKEN: u64 = 16;
/// Host ports of host-initiated connections count up from here.
const FIRST_LOCAL_PORT: u32 = 1 << 30;
/// Host clients that have not finished their `CONNECT` line.
const MAX_PENDING_CLIENTS: usize = 64;
/// Resets waiting for an rx buffer; more are dropped.
const MAX_QUEUED_RESETS: usize = 2 * MAX_CONNECTIONS;
/// How long a host client has for its `CONNECT` line, and the guest for its answer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const SWEEP_INTERVAL: Duration = Duration::from_millis(250);
/// Pause before accepting again after `accept` failed (e.g. out of descriptors).
const LISTENER_BACKOFF: Duration = Duration::from_millis(100);
const ACCEPTS_PER_ROUND: usize = 32;
const MAX_EVENTS: usize = 64;

#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

#[derive(Debug)]
pub struct Muxer {
    guest_cid: u64,
    base_path: PathBuf,
    listener: UnixListener,
    listener_paused_until: Option<Instant>,
    mem: GuestMemory,
    queues: Vec<Queue>,
    queue_events: Vec<EventFd>,
    interrupt: Arc<VirtioInterrupt>,
    epoll: Epoll,
    conns: HashMap<ConnKey, Connection>,
    by_token: HashMap<u64, ConnKey>,
    pending: HashMap<u64, PendingClient>,
    rx_order: VecDeque<ConnKey>,
    resets: VecDeque<Header>,
    /// Connections and pending host clients allowed at once ([`MAX_CONNECTIONS`]).
    max_connections: usize,
    tx_more: bool,
    /// The last round stopped filling rx buffers early.
    rx_more: bool,
    next_token: u64,
    next_local_port: u32,
    next_sweep: Instant,
    segs: Vec<Segment>,
    tx_data: Vec<u8>,
    scratch: Vec<u8>,
    log: LogLimiter,
}

impl Muxer {
    /// Registers the queue events and the listener; `queues`/`queue_events` are rx, tx, event.
    pub fn new(
        guest_cid: u64,
        base_path: PathBuf,
        listener: UnixListener,
        mem: GuestMemory,
        queues: Vec<Queue>,
        queue_events: Vec<EventFd>,
        interrupt: Arc<VirtioInterrupt>,
    ) -> Result<Self, VsockError> {
        let epoll = Epoll::new().map_err(VsockError::CreateEpoll)?;
        for (i, evt) in queue_events.iter().enumerate() {
            epoll
                .ctl(
                    ControlOperation::Add,
                    evt.as_raw_fd(),
                    EpollEvent::new(EventSet::IN, i as u64),
                )
                .map_err(VsockError::RegisterEvent)?;
        }
        epoll
            .ctl(
                ControlOperation::Add,
                listener.as_raw_fd(),
                EpollEvent::new(EventSet::IN, TOKEN_LISTENER),
            )
            .map_err(VsockError::RegisterEvent)?;
        let now = Instant::now();
        Ok(Self {
            guest_cid,
            base_path,
            listener,
            listener_paused_until: None,
            mem,
            queues,
            queue_events,
            interrupt,
            epoll,
            conns: HashMap::new(),
            by_token: HashMap::new(),
            pending: HashMap::new(),
            rx_order: VecDeque::new(),
            resets: VecDeque::new(),
            max_connections: MAX_CONNECTIONS,
            tx_more: false,
            rx_more: false,
            next_token: FIRST_TOKEN,
            next_local_port: FIRST_LOCAL_PORT,
            next_sweep: now + SWEEP_INTERVAL,
            segs: Vec::new(),
            tx_data: Vec::new(),
            scratch: vec![0; MAX_PAYLOAD],
            log: LogLimiter::new("vsock", now),
        })
    }

    /// Serves until `stop` becomes readable or the loop fails.
    pub fn run(mut self, stop: EventFd) {
        let stop_event = EpollEvent::new(EventSet::IN, TOKEN_STOP);
        if let Err(e) = self
            .epoll
            .ctl(ControlOperation::Add, stop.as_raw_fd(), stop_event)
        {
            tracing::error!(error = %e, "vsock: cannot watch the stop event; device not served");
            return;
        }
        loop {
            match self.poll_once(None) {
                Ok(Flow::Continue) => {}
                Ok(Flow::Stop) => return,
                Err(e) => {
                    tracing::error!(error = %e, "vsock: device loop failed; device stopped");
                    return;
                }
            }
        }
    }

    /// Waits for events (at most `max_wait`, if given) and handles them.
    pub fn poll_once(&mut self, max_wait: Option<Duration>) -> Result<Flow, VsockError> {
        let mut timeout = self.wait_timeout();
        if let Some(max) = max_wait {
            let max = i32::try_from(max.as_millis()).unwrap_or(i32::MAX);
            timeout = if timeout < 0 { max } else { timeout.min(max) };
        }
        let mut events = [EpollEvent::default(); MAX_EVENTS];
        let n = match self.epoll.wait(timeout, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) => return Err(VsockError::WaitEvents(e)),
        };
        let now = Instant::now();
        let mut tx_kick = self.tx_more;
        for ev in &events[..n] {
            match ev.data() {
                TOKEN_STOP => return Ok(Flow::Stop),
                q if q == RX_QUEUE as u64 || q == EVENT_QUEUE as u64 => {
                    // rx is served below anyway; the event queue stays idle.
                    let _ = self.queue_events[q as usize].read();
                }
                q if q == TX_QUEUE as u64 => {
                    let _ = self.queue_events[TX_QUEUE].read();
                    tx_kick = true;
                }
                TOKEN_LISTENER => self.accept_clients(now),
                token => {
                    if self.pending.contains_key(&token) {
                        self.on_pending_event(token, now);
                    } else if let Some(&key) = self.by_token.get(&token) {
                        self.on_conn_event(key, ev.event_set(), now);
                    }
                }
            }
        }
        let mut used = false;
        if tx_kick {
            used |= self.process_tx(now);
        }
        self.sweep(now);
        used |= self.process_rx(now);
        if used {
            if let Err(e) = self.interrupt.signal_used_queue() {
                if self.log.allow(now) {
                    tracing::warn!(error = %e, "vsock: cannot raise the interrupt");
                }
            }
        }
        Ok(Flow::Continue)
    }

    /// Lowers the connection limit so tests can reach it.
    #[cfg(test)]
    pub fn set_max_connections(&mut self, max: usize) {
        self.max_connections = max;
    }

    fn at_connection_limit(&self) -> bool {
        self.conns.len() + self.pending.len() >= self.max_connections
    }

    fn wait_timeout(&self) -> i32 {
        if self.tx_more || self.rx_more {
            return 0;
        }
        let timed = !self.pending.is_empty()
            || self.listener_paused_until.is_some()
            || self.conns.values().any(|c| c.deadline().is_some());
        if timed {
            SWEEP_INTERVAL.as_millis() as i32
        } else {
            -1
        }
    }

    fn warn(&mut self, now: Instant, what: &str, err: &dyn std::fmt::Display) {
        if self.log.allow(now) {
            tracing::warn!(error = %err, "vsock: {what}");
        }
    }

    fn alloc_token(&mut self) -> u64 {
        let t = self.next_token;
        self.next_token += 1;
        t
    }

    // ---- connection bookkeeping ----

    fn settle(&mut self, key: ConnKey, out: Outcome, now: Instant) {
        match out {
            Outcome::Keep => self.refresh(key, now),
            Outcome::Remove { rst, reason } => self.remove(key, rst, reason, now),
        }
    }

    /// Brings the connection's epoll registration and rx-queue membership up to date.
    fn refresh(&mut self, key: ConnKey, now: Instant) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        let want = Some(conn.desired_interest()).filter(|s| !s.is_empty());
        if want != conn.registered {
            let fd = conn.stream.as_raw_fd();
            let res = match (conn.registered, want) {
                (None, Some(w)) => {
                    let ev = EpollEvent::new(w, conn.token);
                    self.epoll.ctl(ControlOperation::Add, fd, ev)
                }
                (Some(_), Some(w)) => {
                    let ev = EpollEvent::new(w, conn.token);
                    self.epoll.ctl(ControlOperation::Modify, fd, ev)
                }
                _ => self
                    .epoll
                    .ctl(ControlOperation::Delete, fd, EpollEvent::default()),
            };
            if let Err(e) = res {
                self.warn(now, "cannot watch a host socket", &e);
                return self.remove(key, true, "cannot watch the host socket", now);
            }
            conn.registered = want;
        }
        if conn.has_rx_work() && !conn.in_rx_queue {
            conn.in_rx_queue = true;
            self.rx_order.push_back(key);
        }
    }

    fn remove(&mut self, key: ConnKey, rst: bool, reason: &'static str, now: Instant) {
        let Some(conn) = self.conns.remove(&key) else {
            return;
        };
        if conn.registered.is_some() {
            let fd = conn.stream.as_raw_fd();
            let _ = self
                .epoll
                .ctl(ControlOperation::Delete, fd, EpollEvent::default());
        }
        self.by_token.remove(&conn.token);
        if rst {
            self.queue_reset(conn.header(self.guest_cid, OP_RST, 0, 0));
        }
        if self.log.allow(now) {
            tracing::debug!(
                host_port = key.local_port,
                guest_port = key.peer_port,
                reason,
                "vsock: connection closed"
            );
        }
    }

    /// Expires host clients and connections whose time is up; resumes a paused listener.
    fn sweep(&mut self, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP_INTERVAL;
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(t, _)| *t)
            .collect();
        for token in expired {
            self.drop_pending(token);
        }
        let due: Vec<ConnKey> = self
            .conns
            .values()
            .filter(|c| c.deadline().is_some_and(|d| d <= now))
            .map(|c| c.key)
            .collect();
        for key in due {
            if let Some(conn) = self.conns.get_mut(&key) {
                let out = conn.on_deadline(now);
                self.settle(key, out, now);
            }
        }
        if self.listener_paused_until.is_some_and(|t| t <= now) {
            let ev = EpollEvent::new(EventSet::IN, TOKEN_LISTENER);
            let fd = self.listener.as_raw_fd();
            match self.epoll.ctl(ControlOperation::Add, fd, ev) {
                Ok(()) => self.listener_paused_until = None,
                Err(e) => {
                    self.warn(now, "cannot resume the listener", &e);
                    self.listener_paused_until = Some(now + CLOSE_TIMEOUT);
                }
            }
        }
    }
}
