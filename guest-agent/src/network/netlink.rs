//! Applying a checked [`NetworkConfig`] with rtnetlink (rtnetlink(7)), in the network
//! namespace of the calling thread: the socket is opened there, and a socket keeps its
//! namespace wherever the runtime later polls it.
//!
//! Order: every interface is found by MAC first (waiting a little for a device still
//! probing), so an absent one is reported before anything changes; then `lo` up; then per
//! interface MTU, name (a link must be down to be renamed) and up; then every address; then
//! the routes in the request's order.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use nix::errno::Errno;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::packet_route::route::{RouteMessage, RouteScope};
use rtnetlink::sys::AsyncSocket;
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use super::config::{IpCidr, MacAddr, NetworkConfig, RouteConfig};

/// How often the links are listed again while waiting for a device.
const LINK_POLL: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("opening a netlink socket")]
    Socket(#[source] io::Error),
    #[error("listing the network links: {0}")]
    ListLinks(String),
    #[error("no network interface with MAC {mac} in the zone (waited {waited:?})")]
    LinkNotFound { mac: MacAddr, waited: Duration },
    /// A step failed after others had changed the zone's network.
    #[error("{step}: {reason}")]
    Step { step: String, reason: String },
}

impl ApplyError {
    /// Whether the network may have changed before the error: once it has, a retry cannot
    /// start from a clean zone.
    pub fn changed_anything(&self) -> bool {
        matches!(self, ApplyError::Step { .. })
    }
}

/// A link as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<MacAddr>,
    pub up: bool,
}

impl Link {
    fn from_message(message: &LinkMessage) -> Link {
        let mut link = Link {
            index: message.header.index,
            name: String::new(),
            mac: None,
            up: message.header.flags.contains(LinkFlags::Up),
        };
        for attribute in &message.attributes {
            match attribute {
                LinkAttribute::IfName(name) => link.name = name.clone(),
                LinkAttribute::Address(bytes) => {
                    link.mac = <[u8; 6]>::try_from(bytes.as_slice()).ok().map(MacAddr)
                }
                _ => {}
            }
        }
        link
    }
}

/// A netlink connection whose task ends with it.
struct Connection {
    handle: Handle,
    task: tokio::task::JoinHandle<()>,
}

impl Connection {
    /// Opens a NETLINK_ROUTE socket in the calling thread's network namespace.
    fn open() -> io::Result<Connection> {
        let (mut connection, handle, _messages) = rtnetlink::new_connection()?;
        // The kernel then says why it refused, beyond an errno (`extack`).
        connection.socket_mut().socket_mut().set_ext_ack(true)?;
        let task = tokio::spawn(connection);
        Ok(Connection { handle, task })
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Applies `config`, waiting up to `link_wait` for its interfaces to appear.
pub async fn apply(config: &NetworkConfig, link_wait: Duration) -> Result<(), ApplyError> {
    let connection = Connection::open().map_err(ApplyError::Socket)?;
    let handle = &connection.handle;
    let macs: Vec<MacAddr> = config.interfaces.iter().map(|i| i.mac).collect();
    let links = find_links(handle, &macs, link_wait).await?;
    loopback_up(handle).await?;
    for interface in &config.interfaces {
        let link = &links[&interface.mac];
        let mac = interface.mac;
        if let Some(mtu) = interface.mtu {
            let step = format!("setting MTU {mtu} on {} ({mac})", link.name);
            set_link(
                handle,
                LinkUnspec::new_with_index(link.index).mtu(mtu),
                step,
            )
            .await?;
        }
        if link.name != interface.name {
            if link.up {
                let step = format!("taking {} ({mac}) down to rename it", link.name);
                set_link(handle, LinkUnspec::new_with_index(link.index).down(), step).await?;
            }
            let step = format!("renaming {} ({mac}) to {}", link.name, interface.name);
            let rename = LinkUnspec::new_with_index(link.index).name(interface.name.clone());
            set_link(handle, rename, step).await?;
        }
        let step = format!("setting {} ({mac}) up", interface.name);
        set_link(handle, LinkUnspec::new_with_index(link.index).up(), step).await?;
    }
    for interface in &config.interfaces {
        let index = links[&interface.mac].index;
        for address in &interface.addresses {
            let step = format!("adding address {address} to {}", interface.name);
            handle
                .address()
                .add(index, address.addr, address.prefix)
                .execute()
                .await
                .map_err(|e| step_error(step, &e))?;
        }
    }
    let names: HashMap<MacAddr, (&str, u32)> = config
        .interfaces
        .iter()
        .map(|i| (i.mac, (i.name.as_str(), links[&i.mac].index)))
        .collect();
    for route in &config.routes {
        match add_route(handle, route, &names).await {
            Err(RouteError::Exists(step)) if is_prefix_route(config, route) => {
                tracing::debug!(%step, "the kernel made it with the address");
            }
            Err(RouteError::Exists(step)) => {
                return Err(ApplyError::Step {
                    step,
                    reason: Errno::EEXIST.desc().to_string(),
                })
            }
            Err(RouteError::Failed(e)) => return Err(e),
            Ok(()) => {}
        }
    }
    Ok(())
}

/// Whether `route` is the one the kernel adds with an address of its interface (`proto
/// kernel scope link`): the host reads it from the pod's namespace along with the rest.
fn is_prefix_route(config: &NetworkConfig, route: &RouteConfig) -> bool {
    route.gateway.is_none()
        && config
            .interfaces
            .iter()
            .filter(|interface| Some(interface.mac) == route.interface)
            .flat_map(|interface| &interface.addresses)
            .any(|address| address.network() == route.destination)
}

enum RouteError {
    /// The kernel has that route already (EEXIST); the step is named.
    Exists(String),
    Failed(ApplyError),
}

/// Sets the loopback interface up, in its own netlink connection (at boot).
pub async fn bring_up_loopback() -> Result<(), ApplyError> {
    let connection = Connection::open().map_err(ApplyError::Socket)?;
    loopback_up(&connection.handle).await
}

async fn loopback_up(handle: &Handle) -> Result<(), ApplyError> {
    let step = "setting lo up".to_string();
    set_link(handle, LinkUnspec::new_with_name("lo").up(), step).await
}

async fn set_link(
    handle: &Handle,
    message: rtnetlink::LinkMessageBuilder<LinkUnspec>,
    step: String,
) -> Result<(), ApplyError> {
    handle
        .link()
        .set(message.build())
        .execute()
        .await
        .map_err(|e| step_error(step, &e))
}

/// Every link in the namespace.
pub async fn list_links(handle: &Handle) -> Result<Vec<Link>, rtnetlink::Error> {
    let mut stream = std::pin::pin!(handle.link().get().execute());
    let mut links = Vec::new();
    while let Some(message) = stream.try_next().await? {
        links.push(Link::from_message(&message));
    }
    Ok(links)
}

/// The link of each MAC, listing the links again until all are there or `wait` is over.
async fn find_links(
    handle: &Handle,
    macs: &[MacAddr],
    wait: Duration,
) -> Result<HashMap<MacAddr, Link>, ApplyError> {
    let started = Instant::now();
    loop {
        let links = list_links(handle)
            .await
            .map_err(|e| ApplyError::ListLinks(netlink_reason(&e)))?;
        let mut found = HashMap::new();
        let mut missing = None;
        for mac in macs {
            // The first one: a zone has one device per MAC the VMM gave out.
            match links.iter().find(|link| link.mac == Some(*mac)) {
                Some(link) => {
                    found.insert(*mac, link.clone());
                }
                None => {
                    missing = Some(*mac);
                    break;
                }
            }
        }
        let Some(mac) = missing else {
            return Ok(found);
        };
        if started.elapsed() >= wait {
            return Err(ApplyError::LinkNotFound { mac, waited: wait });
        }
        tokio::time::sleep(LINK_POLL).await;
    }
}

async fn add_route(
    handle: &Handle,
    route: &RouteConfig,
    links: &HashMap<MacAddr, (&str, u32)>,
) -> Result<(), RouteError> {
    let link = route.interface.map(|mac| links[&mac]);
    let step = format!(
        "adding route {}",
        route.describe(link.map(|(name, _)| name))
    );
    let message = route_message(route, link.map(|(_, index)| index)).map_err(|reason| {
        RouteError::Failed(ApplyError::Step {
            step: step.clone(),
            reason,
        })
    })?;
    match handle.route().add(message).execute().await {
        Ok(()) => Ok(()),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code().abs() == Errno::EEXIST as i32 => {
            Err(RouteError::Exists(step))
        }
        Err(e) => Err(RouteError::Failed(step_error(step, &e))),
    }
}

/// The RTM_NEWROUTE message of `route` through the link `index`.
fn route_message(route: &RouteConfig, index: Option<u32>) -> Result<RouteMessage, String> {
    let IpCidr { addr, prefix } = route.destination;
    let mut builder = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(addr, prefix)
        .map_err(|e| e.to_string())?;
    match route.gateway {
        Some(gateway) => builder = builder.gateway(gateway).map_err(|e| e.to_string())?,
        // As `ip route add NET dev DEV`: an IPv4 network on the link has link scope.
        None if addr.is_ipv4() => builder = builder.scope(RouteScope::Link),
        None => {}
    }
    if let Some(index) = index {
        builder = builder.output_interface(index);
    }
    if route.metric != 0 {
        builder = builder.priority(route.metric);
    }
    Ok(builder.build())
}

fn step_error(step: String, error: &rtnetlink::Error) -> ApplyError {
    ApplyError::Step {
        step,
        reason: netlink_reason(error),
    }
}

/// The kernel's errno as strerror(3) words it ("Network is unreachable"), with the kernel's
/// own explanation when it gave one; or the library's message.
fn netlink_reason(error: &rtnetlink::Error) -> String {
    match error {
        rtnetlink::Error::NetlinkError(message) => {
            let errno = Errno::from_raw(message.raw_code().abs()).desc();
            match extack_message(&message.header) {
                Some(why) => format!("{errno} ({why})"),
                None => errno.to_string(),
            }
        }
        other => other.to_string(),
    }
}

/// `NLMSGERR_ATTR_MSG` (netlink(7), "Extended ACK"): in an error's payload, after the
/// request it refuses (whole: the socket does not set NETLINK_CAP_ACK), attributes may
/// follow, one of them the kernel's message as a NUL-terminated string.
fn extack_message(payload: &[u8]) -> Option<String> {
    const NLMSGERR_ATTR_MSG: u16 = 1;
    let word = |at: usize| payload.get(at..at + 4).map(|b| [b[0], b[1], b[2], b[3]]);
    let request_len = u32::from_ne_bytes(word(0)?) as usize;
    let mut at = request_len.checked_add(3)? & !3;
    while let Some(header) = word(at) {
        let len = usize::from(u16::from_ne_bytes([header[0], header[1]]));
        let kind = u16::from_ne_bytes([header[2], header[3]]) & 0x3fff;
        if len < 4 {
            return None;
        }
        let value = payload.get(at + 4..at + len)?;
        if kind == NLMSGERR_ATTR_MSG {
            let text = value.split(|b| *b == 0).next()?;
            let text = String::from_utf8_lossy(text).trim().to_string();
            return (!text.is_empty()).then_some(text);
        }
        at = at.checked_add(len)?.checked_add(3)? & !3;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_netlink_reason_is_strerror() {
        let mut message = rtnetlink::packet_core::ErrorMessage::default();
        message.code = std::num::NonZeroI32::new(-libc::ENETUNREACH);
        let error = rtnetlink::Error::NetlinkError(message);

        assert_eq!(netlink_reason(&error), "Network is unreachable");
    }

    /// An error payload: a request of `request_len` bytes, then attributes.
    fn error_payload(request_len: u32, attributes: &[(u16, &[u8])]) -> Vec<u8> {
        let mut payload = request_len.to_ne_bytes().to_vec();
        payload.resize(request_len as usize, 0xaa);
        for (kind, value) in attributes {
            payload.resize(payload.len().next_multiple_of(4), 0);
            let len = 4 + value.len() as u16;
            payload.extend(len.to_ne_bytes());
            payload.extend(kind.to_ne_bytes());
            payload.extend(*value);
        }
        payload
    }

    #[test]
    fn test_extack_message_found_after_request_and_other_attributes() {
        let payload = error_payload(
            30,
            &[
                (2, &7u32.to_ne_bytes()),
                (1, b"Nexthop has invalid gateway\0"),
            ],
        );

        assert_eq!(
            extack_message(&payload).as_deref(),
            Some("Nexthop has invalid gateway")
        );
        assert_eq!(extack_message(&error_payload(32, &[])), None);
        assert_eq!(extack_message(&[]), None);
        // Lengths that point past the end or loop are not followed.
        let mut bad = error_payload(16, &[]);
        bad.extend([0, 0, 1, 0]);
        assert_eq!(extack_message(&bad), None);
        let mut long = error_payload(16, &[]);
        long.extend([200, 0, 1, 0, b'x']);
        assert_eq!(extack_message(&long), None);
        assert_eq!(extack_message(&u32::MAX.to_ne_bytes()), None);
    }

    #[test]
    fn test_apply_error_only_steps_change_anything() {
        let not_found = ApplyError::LinkNotFound {
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            waited: Duration::from_secs(2),
        };
        assert!(!not_found.changed_anything());
        assert!(not_found.to_string().contains("02:00:00:00:00:01"));
        let step = ApplyError::Step {
            step: "adding route default via 10.88.0.1".into(),
            reason: "Network is unreachable".into(),
        };
        assert!(step.changed_anything());
        assert_eq!(
            step.to_string(),
            "adding route default via 10.88.0.1: Network is unreachable"
        );
    }
}
