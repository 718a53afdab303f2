//! The muxer's host side: accepting clients on the listener and reading their `CONNECT` line.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Instant;

use vmm_sys_util::epoll::{ControlOperation, EpollEvent, EventSet};

use super::super::connection::{ConnKey, Connection};
use super::super::uds::{LineStatus, PendingClient};
use super::MAX_PENDING_CLIENTS;
use super::{Muxer, ACCEPTS_PER_ROUND, CONNECT_TIMEOUT, FIRST_LOCAL_PORT, LISTENER_BACKOFF};

impl Muxer {
    pub(super) fn accept_clients(&mut self, now: Instant) {
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
        if self.pending.len() >= MAX_PENDING_CLIENTS || self.at_connection_limit() {
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

    pub(super) fn drop_pending(&mut self, token: u64) {
        if let Some(client) = self.pending.remove(&token) {
            let fd = client.stream.as_raw_fd();
            let _ = self
                .epoll
                .ctl(ControlOperation::Delete, fd, EpollEvent::default());
        }
    }

    pub(super) fn on_pending_event(&mut self, token: u64, now: Instant) {
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

    pub(super) fn on_conn_event(&mut self, key: ConnKey, events: EventSet, now: Instant) {
        if let Some(conn) = self.conns.get_mut(&key) {
            let out = conn.on_host_event(events);
            self.settle(key, out, now);
        }
    }
}
