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
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::connection::{ConnKey, Connection, Outcome, RxStep, CLOSE_TIMEOUT};
use super::packet::{self, Header, Segment, HDR_LEN, HOST_CID, MAX_PAYLOAD};
use super::packet::{OP_REQUEST, OP_RST, TYPE_STREAM};
use super::ratelimit::LogLimiter;
use super::uds::{self, LineStatus, PendingClient};
use super::{VsockError, EVENT_QUEUE, MAX_CONNECTIONS, QUEUE_SIZE, RX_QUEUE, TX_QUEUE};
use crate::devices::virtio::{GuestMemory, VirtioInterrupt};

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
    tx_more: bool,
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
            tx_more: false,
            next_token: FIRST_TOKEN,
            next_local_port: FIRST_LOCAL_PORT,
            next_sweep: now + SWEEP_INTERVAL,
            segs: Vec::new(),
            tx_data: Vec::new(),
            scratch: vec![0; MAX_PAYLOAD],
            log: LogLimiter::new(now),
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

    fn wait_timeout(&self) -> i32 {
        if self.tx_more {
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

    // ---- guest to host: the tx queue ----

    /// Handles what the guest queued, at most a queue's worth per round.
    fn process_tx(&mut self, now: Instant) -> bool {
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
        if self.conns.len() + self.pending.len() >= MAX_CONNECTIONS {
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

    fn queue_reset(&mut self, hdr: Header) {
        if self.resets.len() < MAX_QUEUED_RESETS {
            self.resets.push_back(hdr);
        }
    }

    // ---- the host side ----

    fn accept_clients(&mut self, now: Instant) {
        for _ in 0..ACCEPTS_PER_ROUND {
            match self.listener.accept() {
                Ok((stream, _)) => self.admit_client(stream, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.warn(now, "accept failed; pausing the listener", &e);
                    let fd = self.listener.as_raw_fd();
                    let _ = self
                        .epoll
                        .ctl(ControlOperation::Delete, fd, EpollEvent::default());
                    self.listener_paused_until = Some(now + LISTENER_BACKOFF);
                    return;
                }
            }
        }
    }

    fn admit_client(&mut self, stream: UnixStream, now: Instant) {
        if self.pending.len() >= MAX_PENDING_CLIENTS
            || self.conns.len() + self.pending.len() >= MAX_CONNECTIONS
        {
            self.warn(now, "refusing host client", &"too many connections");
            return;
        }
        if let Err(e) = stream.set_nonblocking(true) {
            self.warn(now, "refusing host client", &e);
            return;
        }
        let token = self.alloc_token();
        let ev = EpollEvent::new(EventSet::IN, token);
        if let Err(e) = self
            .epoll
            .ctl(ControlOperation::Add, stream.as_raw_fd(), ev)
        {
            self.warn(now, "refusing host client", &e);
            return;
        }
        let client = PendingClient::new(stream, now + CONNECT_TIMEOUT);
        self.pending.insert(token, client);
    }

    fn drop_pending(&mut self, token: u64) {
        if let Some(client) = self.pending.remove(&token) {
            let fd = client.stream.as_raw_fd();
            let _ = self
                .epoll
                .ctl(ControlOperation::Delete, fd, EpollEvent::default());
        }
    }

    fn on_pending_event(&mut self, token: u64, now: Instant) {
        let Some(client) = self.pending.get_mut(&token) else {
            return;
        };
        let port = match client.read_line() {
            LineStatus::Incomplete => return,
            LineStatus::Invalid => {
                self.warn(now, "closing host client", &"malformed CONNECT line");
                return self.drop_pending(token);
            }
            LineStatus::Port(port) => port,
        };
        let Some(client) = self.pending.remove(&token) else {
            return;
        };
        let key = ConnKey {
            local_port: self.alloc_local_port(port),
            peer_port: port,
        };
        let mut conn = Connection::new_local(key, client.stream, token, now + CONNECT_TIMEOUT);
        conn.registered = Some(EventSet::IN);
        self.by_token.insert(token, key);
        self.conns.insert(key, conn);
        self.refresh(key, now);
    }

    fn alloc_local_port(&mut self, peer_port: u32) -> u32 {
        loop {
            let port = self.next_local_port;
            self.next_local_port = port.checked_add(1).unwrap_or(FIRST_LOCAL_PORT);
            let key = ConnKey {
                local_port: port,
                peer_port,
            };
            if !self.conns.contains_key(&key) {
                return port;
            }
        }
    }

    fn on_conn_event(&mut self, key: ConnKey, events: EventSet, now: Instant) {
        if let Some(conn) = self.conns.get_mut(&key) {
            let out = conn.on_host_event(events);
            self.settle(key, out, now);
        }
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

    // ---- host to guest: the rx queue ----

    /// Fills rx buffers while there is something to send and buffers to send it in.
    fn process_rx(&mut self, now: Instant) -> bool {
        let mem = self.mem.clone();
        let mut segs = std::mem::take(&mut self.segs);
        let mut used = false;
        while !self.resets.is_empty() || !self.rx_order.is_empty() {
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
