//! Port publishing (`zonectl run -p [IP:]HOST_PORT:ZONE_PORT`): a userspace TCP proxy in the
//! manner of docker-proxy, so it needs no iptables/nftables. Every mapping is bound before the
//! zone boots (a port in use fails early and is named); then each accepted connection gets a
//! connection of its own to the zone's address and bytes are copied both ways, half-closes
//! included, until the [`PortPublisher`] is dropped.
//!
//! Runs on the caller's tokio runtime (it must have I/O and time enabled, and be driven while
//! the zone runs).

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::socket::{shutdown, Shutdown};
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Pause after a failed `accept` (e.g. out of descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortParseError {
    #[error(
        "-p {0:?}: expected [IP:]HOST_PORT:ZONE_PORT[/tcp], such as 8080:80 or 127.0.0.1:8080:80"
    )]
    Format(String),
    #[error("-p {spec:?}: {part:?} is not a port (1 to 65535)")]
    Port { spec: String, part: String },
    #[error("-p {spec:?}: {part:?} is not an IP address")]
    Address { spec: String, part: String },
    #[error("-p {spec:?}: only TCP ports can be published, not {protocol:?}")]
    Protocol { spec: String, protocol: String },
}

#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("host port {0} is not available (in use, or not an address of this host)")]
    Bind(SocketAddr, #[source] io::Error),
    #[error("reading the bound address of host port {0}")]
    LocalAddr(SocketAddr, #[source] io::Error),
}

/// One `-p` mapping, TCP only. `host_ip` `None` means every IPv4 address of the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortMapping {
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub zone_port: u16,
}

impl PortMapping {
    /// Where the host side listens.
    pub fn host_addr(&self) -> SocketAddr {
        let ip = self.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        SocketAddr::new(ip, self.host_port)
    }
}

/// `0.0.0.0:8080->80/tcp`, the way `docker ps` shows it.
impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}->{}/tcp", self.host_addr(), self.zone_port)
    }
}

impl FromStr for PortMapping {
    type Err = PortParseError;

    /// `8080:80`, `127.0.0.1:8080:80`, `[::1]:8080:80`, each optionally with `/tcp`.
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let format = || PortParseError::Format(spec.to_string());
        let body = match spec.rsplit_once('/') {
            Some((body, protocol)) if protocol.eq_ignore_ascii_case("tcp") => body,
            Some((_, protocol)) => {
                return Err(PortParseError::Protocol {
                    spec: spec.to_string(),
                    protocol: protocol.to_string(),
                })
            }
            None => spec,
        };
        let (host_ip, ports) = if let Some(bracketed) = body.strip_prefix('[') {
            let (ip, ports) = bracketed.split_once("]:").ok_or_else(format)?;
            (Some(parse_ip(spec, ip)?), ports)
        } else {
            match body.split(':').count() {
                2 => (None, body),
                3 => {
                    let (ip, ports) = body.split_once(':').ok_or_else(format)?;
                    (Some(parse_ip(spec, ip)?), ports)
                }
                _ => return Err(format()),
            }
        };
        let (host_port, zone_port) = ports.split_once(':').ok_or_else(format)?;
        Ok(PortMapping {
            host_ip,
            host_port: parse_port(spec, host_port)?,
            zone_port: parse_port(spec, zone_port)?,
        })
    }
}

fn parse_ip(spec: &str, part: &str) -> Result<IpAddr, PortParseError> {
    part.parse().map_err(|_| PortParseError::Address {
        spec: spec.to_string(),
        part: part.to_string(),
    })
}

fn parse_port(spec: &str, part: &str) -> Result<u16, PortParseError> {
    match part.parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(PortParseError::Port {
            spec: spec.to_string(),
            part: part.to_string(),
        }),
    }
}

/// The running proxies. Dropping it stops listening at once and ends every proxied
/// connection.
#[derive(Debug)]
pub struct PortPublisher {
    listeners: Vec<Arc<TcpListener>>,
    bound: Vec<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl PortPublisher {
    /// The bound host addresses, in the order of the mappings.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.bound
    }
}

impl Drop for PortPublisher {
    fn drop(&mut self) {
        for listener in &self.listeners {
            // Linux stops a listening socket on shutdown(2), so the port is free (and new
            // connections refused) now rather than when the runtime next drops the task.
            let _ = shutdown(listener.as_raw_fd(), Shutdown::Both);
        }
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Binds every mapping's host address, then proxies each accepted connection to
/// `zone_ip:zone_port` until the returned value is dropped. Nothing is served unless every
/// mapping could be bound.
pub async fn publish(
    mappings: &[PortMapping],
    zone_ip: IpAddr,
) -> Result<PortPublisher, PortError> {
    let mut bound = Vec::with_capacity(mappings.len());
    for mapping in mappings {
        let addr = mapping.host_addr();
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| PortError::Bind(addr, e))?;
        let local = listener
            .local_addr()
            .map_err(|e| PortError::LocalAddr(addr, e))?;
        bound.push((
            Arc::new(listener),
            local,
            SocketAddr::new(zone_ip, mapping.zone_port),
        ));
    }
    let mut publisher = PortPublisher {
        listeners: Vec::with_capacity(bound.len()),
        bound: Vec::with_capacity(bound.len()),
        tasks: Vec::with_capacity(bound.len()),
    };
    for (listener, local, zone) in bound {
        tracing::debug!(%local, %zone, "publishing");
        publisher
            .tasks
            .push(tokio::spawn(serve(Arc::clone(&listener), zone)));
        publisher.listeners.push(listener);
        publisher.bound.push(local);
    }
    Ok(publisher)
}

/// Accepts until aborted; the connection tasks live in a `JoinSet`, so aborting this task
/// ends them too.
async fn serve(listener: Arc<TcpListener>, zone: SocketAddr) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((inbound, peer)) => {
                    connections.spawn(proxy(inbound, peer, zone));
                }
                Err(e) => {
                    tracing::warn!(%zone, error = %e, "accepting a published connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// One client connection: connect to the zone, copy both ways; when one side finishes
/// sending, the other side's write half is shut down and the rest still flows back.
async fn proxy(mut inbound: TcpStream, peer: SocketAddr, zone: SocketAddr) {
    let mut outbound = match TcpStream::connect(zone).await {
        Ok(stream) => stream,
        Err(e) => {
            // The client sees its connection closed; other connections go on.
            tracing::debug!(%peer, %zone, error = %e, "zone refused a published connection");
            return;
        }
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    match copy_bidirectional(&mut inbound, &mut outbound).await {
        Ok((to_zone, from_zone)) => {
            tracing::trace!(%peer, %zone, to_zone, from_zone, "published connection closed")
        }
        Err(e) => tracing::debug!(%peer, %zone, error = %e, "published connection failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<PortMapping, PortParseError> {
        s.parse()
    }

    #[test]
    fn test_parse_host_and_zone_port() {
        let m = parse("8080:80").unwrap();
        assert_eq!(
            m,
            PortMapping {
                host_ip: None,
                host_port: 8080,
                zone_port: 80
            }
        );
        assert_eq!(m.to_string(), "0.0.0.0:8080->80/tcp");
    }

    #[test]
    fn test_parse_with_ip_and_tcp_suffix() {
        let m = parse("127.0.0.1:8080:80/tcp").unwrap();
        assert_eq!(m.host_ip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!((m.host_port, m.zone_port), (8080, 80));
        let m = parse("[::1]:1:65535/TCP").unwrap();
        assert_eq!(m.host_ip, Some("::1".parse().unwrap()));
        assert_eq!((m.host_port, m.zone_port), (1, 65535));
    }

    #[test]
    fn test_parse_udp_refused_as_unsupported() {
        let err = parse("8080:80/udp").unwrap_err();
        assert!(matches!(err, PortParseError::Protocol { .. }));
        assert!(err.to_string().contains("only TCP"), "{err}");
        assert!(err.to_string().contains("\"udp\""), "{err}");
    }

    #[test]
    fn test_parse_bad_port_named() {
        for (spec, part) in [
            ("0:80", "0"),
            ("8080:65536", "65536"),
            ("http:80", "http"),
            ("8080:", ""),
            ("127.0.0.1::80", ""),
        ] {
            let err = parse(spec).unwrap_err();
            assert_eq!(
                err,
                PortParseError::Port {
                    spec: spec.to_string(),
                    part: part.to_string()
                },
                "{spec}"
            );
        }
    }

    #[test]
    fn test_parse_bad_address_named() {
        let err = parse("localhost:8080:80").unwrap_err();
        assert!(
            err.to_string()
                .contains("\"localhost\" is not an IP address"),
            "{err}"
        );
        assert!(matches!(
            parse("[nope]:8080:80"),
            Err(PortParseError::Address { .. })
        ));
    }

    #[test]
    fn test_parse_bad_shape_refused() {
        for spec in ["8080", "", "1:2:3:4", "::1:8080:80", "[::1]8080:80"] {
            assert!(
                matches!(parse(spec), Err(PortParseError::Format(_))),
                "{spec}: {:?}",
                parse(spec)
            );
        }
    }
}
