//! Reading the namespace: which interface is the veth, its MAC, MTU and addresses, and the
//! routes through it, turned into what the zone's agent configures ([`GuestNetwork`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressScope};
use rtnetlink::packet_route::link::{
    InfoKind, LinkAttribute, LinkInfo, LinkLayerType, LinkMessage,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteType,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Error, Handle};

use crate::config::{GuestRoute, IpCidr, MacAddr};

/// What we need to know about one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<MacAddr>,
    pub mtu: u32,
    pub ether: bool,
    pub kind: Option<InfoKind>,
}

impl From<&LinkMessage> for Link {
    fn from(msg: &LinkMessage) -> Self {
        let mut link = Link {
            index: msg.header.index,
            name: String::new(),
            mac: None,
            mtu: 0,
            ether: msg.header.link_layer_type == LinkLayerType::Ether,
            kind: None,
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(name) => link.name = name.clone(),
                LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
                LinkAttribute::Address(bytes) => {
                    link.mac = <[u8; 6]>::try_from(bytes.as_slice()).ok().map(MacAddr)
                }
                LinkAttribute::LinkInfo(infos) => {
                    link.kind = infos.iter().find_map(|i| match i {
                        LinkInfo::Kind(k) => Some(k.clone()),
                        _ => None,
                    })
                }
                _ => {}
            }
        }
        link
    }
}

impl Link {
    /// Whether this can be the pod's interface: an Ethernet-like link that is neither our tap
    /// nor another tun/tap, nor one of the fallback devices the GRE modules put in every
    /// namespace (`gretap0`, `erspan0`, ...), nor an ifb (traffic shaping's helper device,
    /// which the ifb module creates in the host namespace).
    fn is_candidate(&self, tap_name: &str) -> bool {
        self.ether
            && self.name != tap_name
            && !matches!(
                self.kind,
                Some(
                    InfoKind::Tun
                        | InfoKind::Ifb
                        | InfoKind::GreTap
                        | InfoKind::GreTap6
                        | InfoKind::ErSpan
                        | InfoKind::Ip6ErSpan
                )
            )
    }
}

/// Why no single interface was picked.
#[derive(Debug, PartialEq, Eq)]
pub enum Selection {
    /// No candidate; the names of all interfaces seen.
    None(Vec<String>),
    /// Several candidates, by name.
    Several(Vec<String>),
}

/// Picks the one veth-like interface among `links`.
pub fn select(links: &[Link], tap_name: &str) -> Result<Link, Selection> {
    let candidates: Vec<&Link> = links.iter().filter(|l| l.is_candidate(tap_name)).collect();
    match candidates.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Selection::None(
            links.iter().map(|l| l.name.clone()).collect(),
        )),
        several => Err(Selection::Several(
            several.iter().map(|l| l.name.clone()).collect(),
        )),
    }
}

pub async fn links(handle: &Handle) -> Result<Vec<Link>, Error> {
    let mut out = Vec::new();
    let mut stream = handle.link().get().execute();
    while let Some(msg) = stream.try_next().await? {
        out.push(Link::from(&msg));
    }
    Ok(out)
}

pub async fn link_by_name(handle: &Handle, name: &str) -> Result<Option<Link>, Error> {
    let mut stream = handle.link().get().match_name(name.to_string()).execute();
    match stream.try_next().await {
        Ok(msg) => Ok(msg.as_ref().map(Link::from)),
        Err(e) if super::tc::errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The global-scope (universe) addresses of interface `index`, IPv4 then IPv6 as the kernel
/// lists them. Link-local and host-scope addresses are the namespace's business, not the zone's.
pub async fn global_addresses(handle: &Handle, index: u32) -> Result<Vec<IpCidr>, Error> {
    let mut out = Vec::new();
    let mut stream = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute();
    while let Some(msg) = stream.try_next().await? {
        if msg.header.index != index || msg.header.scope != AddressScope::Universe {
            continue;
        }
        // IFA_LOCAL is the interface's own address (IFA_ADDRESS is the peer's on a
        // point-to-point link); IPv6 sends only IFA_ADDRESS.
        let mut local = None;
        let mut address = None;
        for attr in &msg.attributes {
            match attr {
                AddressAttribute::Local(a) => local = Some(*a),
                AddressAttribute::Address(a) => address = Some(*a),
                _ => {}
            }
        }
        if let Some(addr) = local.or(address) {
            out.push(IpCidr {
                addr,
                prefix: msg.header.prefix_len,
            });
        }
    }
    Ok(out)
}

/// All routes of the main table, IPv4 and IPv6.
pub async fn main_routes(handle: &Handle) -> Result<Vec<RouteMessage>, Error> {
    let mut out = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut query = RouteMessage::default();
        query.header.address_family = family;
        query.header.table = RouteHeader::RT_TABLE_MAIN;
        let mut stream = handle.route().get(query).execute();
        while let Some(msg) = stream.try_next().await? {
            if route_table(&msg) == u32::from(RouteHeader::RT_TABLE_MAIN) {
                out.push(msg);
            }
        }
    }
    Ok(out)
}

fn route_table(msg: &RouteMessage) -> u32 {
    msg.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(msg.header.table))
}

/// The routes the zone must add itself: unicast routes out of interface `index` that its
/// addresses do not imply (the kernel's own prefix routes, `proto kernel`, come back by
/// themselves when the agent adds the addresses). Routes without a gateway come first, so
/// that a gateway they make reachable is reachable when the agent adds the routes in order.
/// Multipath routes are skipped (one interface leaves nothing to choose between).
pub fn guest_routes(routes: &[RouteMessage], index: u32, mac: MacAddr) -> Vec<GuestRoute> {
    let mut out: Vec<GuestRoute> = Vec::new();
    for msg in routes {
        if msg.header.kind != RouteType::Unicast || msg.header.protocol == RouteProtocol::Kernel {
            continue;
        }
        let mut oif = None;
        let mut destination = None;
        let mut gateway = None;
        let mut metric = 0;
        for attr in &msg.attributes {
            match attr {
                RouteAttribute::Oif(i) => oif = Some(*i),
                RouteAttribute::Destination(a) => destination = ip(a),
                RouteAttribute::Gateway(a) => gateway = ip(a),
                RouteAttribute::Priority(p) => metric = *p,
                _ => {}
            }
        }
        if oif != Some(index) {
            continue;
        }
        let unspecified = match msg.header.address_family {
            AddressFamily::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            _ => continue,
        };
        out.push(GuestRoute {
            destination: IpCidr {
                addr: destination.unwrap_or(unspecified),
                prefix: msg.header.destination_prefix_length,
            },
            gateway,
            interface: Some(mac),
            metric,
        });
    }
    // Stable: keeps the kernel's order within each group.
    out.sort_by_key(|r| r.gateway.is_some());
    out
}

fn ip(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, name: &str, ether: bool, kind: Option<InfoKind>) -> Link {
        Link {
            index,
            name: name.into(),
            mac: Some(MacAddr([2, 0, 0, 0, 0, index as u8])),
            mtu: 1500,
            ether,
            kind,
        }
    }

    #[test]
    fn test_select_skips_lo_tap_and_fallback_devices() {
        let links = [
            link(1, "lo", false, None),
            link(2, "gretap0", true, Some(InfoKind::GreTap)),
            link(3, "sit0", false, Some(InfoKind::SitTun)),
            link(4, "tap0_zone", true, Some(InfoKind::Tun)),
            link(6, "ifb0", true, Some(InfoKind::Ifb)),
            link(5, "eth0", true, Some(InfoKind::Veth)),
        ];
        assert_eq!(select(&links, "tap0_zone").unwrap().name, "eth0");
    }

    #[test]
    fn test_select_none_names_what_it_saw() {
        let links = [link(1, "lo", false, None), link(2, "sit0", false, None)];
        assert_eq!(
            select(&links, "tap0_zone"),
            Err(Selection::None(vec!["lo".into(), "sit0".into()]))
        );
    }

    #[test]
    fn test_select_several_names_them() {
        let links = [
            link(1, "lo", false, None),
            link(2, "eth0", true, Some(InfoKind::Veth)),
            link(3, "net1", true, Some(InfoKind::MacVlan)),
        ];
        assert_eq!(
            select(&links, "tap0_zone"),
            Err(Selection::Several(vec!["eth0".into(), "net1".into()]))
        );
    }

    fn route(
        family: AddressFamily,
        prefix: u8,
        protocol: RouteProtocol,
        attrs: Vec<RouteAttribute>,
    ) -> RouteMessage {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family;
        msg.header.destination_prefix_length = prefix;
        msg.header.protocol = protocol;
        msg.header.kind = RouteType::Unicast;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.attributes = attrs;
        msg
    }

    #[test]
    fn test_guest_routes_skip_kernel_and_other_interfaces_and_put_link_routes_first() {
        let mac = MacAddr([2, 0, 0, 0, 0, 5]);
        let gw = Ipv4Addr::new(10, 1, 0, 1);
        let routes = [
            route(
                AddressFamily::Inet,
                0,
                RouteProtocol::Boot,
                vec![
                    RouteAttribute::Gateway(RouteAddress::Inet(gw)),
                    RouteAttribute::Oif(5),
                ],
            ),
            route(
                AddressFamily::Inet,
                24,
                RouteProtocol::Kernel,
                vec![
                    RouteAttribute::Destination(RouteAddress::Inet(Ipv4Addr::new(10, 1, 0, 0))),
                    RouteAttribute::Oif(5),
                ],
            ),
            route(
                AddressFamily::Inet,
                32,
                RouteProtocol::Boot,
                vec![
                    RouteAttribute::Destination(RouteAddress::Inet(gw)),
                    RouteAttribute::Oif(5),
                ],
            ),
            route(
                AddressFamily::Inet,
                8,
                RouteProtocol::Static,
                vec![
                    RouteAttribute::Destination(RouteAddress::Inet(Ipv4Addr::new(10, 0, 0, 0))),
                    RouteAttribute::Oif(7),
                ],
            ),
            route(
                AddressFamily::Inet6,
                0,
                RouteProtocol::Ra,
                vec![
                    RouteAttribute::Gateway(RouteAddress::Inet6("fe80::1".parse().unwrap())),
                    RouteAttribute::Oif(5),
                    RouteAttribute::Priority(1024),
                ],
            ),
        ];
        let got = guest_routes(&routes, 5, mac);
        let want = vec![
            GuestRoute {
                destination: "10.1.0.1/32".parse().unwrap(),
                gateway: None,
                interface: Some(mac),
                metric: 0,
            },
            GuestRoute {
                destination: "0.0.0.0/0".parse().unwrap(),
                gateway: Some(IpAddr::V4(gw)),
                interface: Some(mac),
                metric: 0,
            },
            GuestRoute {
                destination: "::/0".parse().unwrap(),
                gateway: Some("fe80::1".parse().unwrap()),
                interface: Some(mac),
                metric: 1024,
            },
        ];
        assert_eq!(got, want);
    }
}
