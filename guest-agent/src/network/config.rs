//! A `ConfigureNetworkRequest` checked whole into the agent's own types, before anything is
//! applied. Every refusal names the field and the value; the limits follow what the kernel
//! and resolv.conf(5) take.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use zone_proto::agent::v1::{ConfigureNetworkRequest, Dns, NetworkInterface, NetworkRoute};

/// Most interfaces, addresses per interface, routes in one request.
pub const MAX_INTERFACES: usize = 8;
pub const MAX_ADDRESSES: usize = 32;
pub const MAX_ROUTES: usize = 64;
/// resolv.conf(5): the resolver reads at most MAXNS (3) nameservers.
pub const MAX_NAMESERVERS: usize = 3;
/// Search domains and resolver options.
pub const MAX_SEARCHES: usize = 6;
pub const MAX_OPTIONS: usize = 16;
/// Longest domain name (RFC 1035 2.3.4, without the final dot) and label.
const DOMAIN_MAX: usize = 253;
const LABEL_MAX: usize = 63;
/// Longest resolver option ("ndots:5", "timeout:2", "edns0", ...).
const OPTION_MAX: usize = 64;
/// Interface names: IFNAMSIZ (16) with the NUL.
const IFNAME_MAX: usize = 15;
/// The name an interface gets when the request leaves it empty.
pub const DEFAULT_INTERFACE_NAME: &str = "eth0";
/// MTUs the kernel takes for an Ethernet-like device (IPv4 needs 68).
const MTU_MIN: u32 = 68;
const MTU_MAX: u32 = 65535;

/// Why a request was refused; each names the field (`interfaces[0].mtu`) and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{field}: {count} entries, at most {max}")]
    TooMany {
        field: String,
        count: usize,
        max: usize,
    },
    #[error("{field} {value:?} is not a MAC address (six hex bytes, aa:bb:cc:dd:ee:ff)")]
    Mac { field: String, value: String },
    #[error("{field} {value:?} is not a unicast MAC address a device can have")]
    MacNotUnicast { field: String, value: String },
    #[error("{field} {value:?} appears twice")]
    Duplicate { field: String, value: String },
    #[error(
        "{field} {value:?} is not an interface name (1-15 bytes, no '/', ':' or whitespace, \
         not \".\" or \"..\")"
    )]
    Name { field: String, value: String },
    #[error("{field} {value:?} is taken by the loopback interface")]
    LoopbackName { field: String, value: String },
    #[error("{field} {value} is outside {MTU_MIN}..={MTU_MAX} (0 leaves the device's MTU)")]
    Mtu { field: String, value: u32 },
    #[error("{field} {value:?} is not ADDRESS/PREFIX (IPv4 prefix 0-32, IPv6 0-128)")]
    Cidr { field: String, value: String },
    #[error("{field} {value:?} is {kind}, not an address for an interface")]
    AddressKind {
        field: String,
        value: String,
        kind: &'static str,
    },
    #[error("{field} {value:?} has host bits set: the network is {network}")]
    HostBits {
        field: String,
        value: String,
        network: String,
    },
    #[error("{field} {value:?} is not an IP address")]
    Ip { field: String, value: String },
    #[error("{field} {value:?} is {kind}, not a usable next hop")]
    GatewayKind {
        field: String,
        value: String,
        kind: &'static str,
    },
    #[error("{field} {value:?} is {family}, the destination {destination} is not")]
    Family {
        field: String,
        value: String,
        family: &'static str,
        destination: String,
    },
    #[error("{field} {value:?} is {kind}, not a nameserver's address")]
    NameserverKind {
        field: String,
        value: String,
        kind: &'static str,
    },
    #[error("{field} {value:?} names no interface of the request")]
    UnknownInterface { field: String, value: String },
    #[error("{field}: a route without a gateway needs interface_mac (the link it is on)")]
    OnLinkWithoutInterface { field: String },
    #[error("{field}: a second route to {destination} with metric {metric}")]
    DuplicateRoute {
        field: String,
        destination: String,
        metric: u32,
    },
    #[error(
        "{field} {value:?} is not a domain name (at most {DOMAIN_MAX} bytes of labels of 1-63 \
         letters, digits, '-' or '_', separated by dots)"
    )]
    Domain { field: String, value: String },
    #[error(
        "{field} {value:?} is not a resolver option (1-{OPTION_MAX} printable bytes without \
         whitespace)"
    )]
    ResolverOption { field: String, value: String },
}

/// A MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl FromStr for MacAddr {
    type Err = ();

    /// Six bytes of two hex digits each, separated by ':' (either case).
    fn from_str(text: &str) -> Result<Self, ()> {
        let mut bytes = [0u8; 6];
        let mut parts = text.split(':');
        for byte in &mut bytes {
            let part = parts.next().ok_or(())?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| ())?;
        }
        if parts.next().is_some() {
            return Err(());
        }
        Ok(MacAddr(bytes))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// An address with a prefix length, `10.88.0.5/16` or `fd00::5/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpCidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpCidr {
    /// `ADDRESS/PREFIX` with the prefix in range for the family.
    fn parse(text: &str) -> Option<IpCidr> {
        let (addr, prefix) = text.split_once('/')?;
        let addr: IpAddr = addr.parse().ok()?;
        // Digits only: u8's parser would take "+16".
        if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let prefix: u8 = prefix.parse().ok()?;
        (prefix <= max_prefix(addr)).then_some(IpCidr { addr, prefix })
    }

    /// The network: the address with its host bits cleared.
    pub fn network(&self) -> IpCidr {
        let addr = match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        };
        IpCidr {
            addr,
            prefix: self.prefix,
        }
    }

    /// A default route's destination (`0.0.0.0/0`, `::/0`).
    pub fn is_default(&self) -> bool {
        self.prefix == 0
    }
}

impl fmt::Display for IpCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

fn family(addr: IpAddr) -> &'static str {
    if addr.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// An address no interface and no next hop can have, by kind; `None` when it is usable.
fn unusable_kind(addr: IpAddr) -> Option<&'static str> {
    if addr.is_unspecified() {
        Some("the unspecified address")
    } else if addr.is_multicast() {
        Some("a multicast address")
    } else if addr == IpAddr::V4(std::net::Ipv4Addr::BROADCAST) {
        Some("the broadcast address")
    } else {
        None
    }
}

/// The zone's network as the host asked for it, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    pub interfaces: Vec<InterfaceConfig>,
    /// Added in order, after every interface has its addresses.
    pub routes: Vec<RouteConfig>,
    /// `None` when the request has no nameserver: no resolv.conf is written.
    pub dns: Option<DnsConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceConfig {
    /// The device is found by this MAC.
    pub mac: MacAddr,
    /// The name it gets ([`DEFAULT_INTERFACE_NAME`] when the request left it empty).
    pub name: String,
    /// `None` leaves the device's MTU.
    pub mtu: Option<u32>,
    pub addresses: Vec<IpCidr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// Network (host bits clear); prefix 0 for a default route.
    pub destination: IpCidr,
    /// `None`: the destination is directly attached to `interface`.
    pub gateway: Option<IpAddr>,
    /// The interface (by MAC, one of the request's) the route goes through; `None` lets the
    /// kernel pick it from the gateway.
    pub interface: Option<MacAddr>,
    /// 0: the kernel's default.
    pub metric: u32,
}

impl RouteConfig {
    /// The route as `ip route` prints it, `interface` being the name of its link:
    /// `default via 10.88.0.1`, `10.88.0.0/16 dev eth0 metric 100`.
    pub fn describe(&self, interface: Option<&str>) -> String {
        let mut text = if self.destination.is_default() {
            "default".to_string()
        } else {
            self.destination.to_string()
        };
        if let Some(gateway) = self.gateway {
            text.push_str(&format!(" via {gateway}"));
        }
        if let Some(name) = interface {
            text.push_str(&format!(" dev {name}"));
        }
        if self.metric != 0 {
            text.push_str(&format!(" metric {}", self.metric));
        }
        text
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// One to [`MAX_NAMESERVERS`].
    pub nameservers: Vec<IpAddr>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl TryFrom<&ConfigureNetworkRequest> for NetworkConfig {
    type Error = ConfigError;

    fn try_from(request: &ConfigureNetworkRequest) -> Result<Self, ConfigError> {
        bound("interfaces", request.interfaces.len(), MAX_INTERFACES)?;
        bound("routes", request.routes.len(), MAX_ROUTES)?;
        let interfaces = request
            .interfaces
            .iter()
            .enumerate()
            .map(|(i, interface)| interface_config(i, interface))
            .collect::<Result<Vec<_>, _>>()?;
        unique_interfaces(&interfaces)?;
        let macs: HashSet<MacAddr> = interfaces.iter().map(|i| i.mac).collect();
        let mut routes = Vec::with_capacity(request.routes.len());
        let mut seen = HashSet::new();
        for (i, route) in request.routes.iter().enumerate() {
            let route = route_config(i, route, &macs)?;
            if !seen.insert((route.destination, route.metric)) {
                return Err(ConfigError::DuplicateRoute {
                    field: format!("routes[{i}]"),
                    destination: route.destination.to_string(),
                    metric: route.metric,
                });
            }
            routes.push(route);
        }
        let dns = request.dns.as_ref().map(dns_config).transpose()?.flatten();
        Ok(NetworkConfig {
            interfaces,
            routes,
            dns,
        })
    }
}

fn bound(field: &str, count: usize, max: usize) -> Result<(), ConfigError> {
    if count > max {
        return Err(ConfigError::TooMany {
            field: field.to_string(),
            count,
            max,
        });
    }
    Ok(())
}

fn interface_config(
    i: usize,
    interface: &NetworkInterface,
) -> Result<InterfaceConfig, ConfigError> {
    let field = |name: &str| format!("interfaces[{i}].{name}");
    let mac = parse_mac(&field("mac"), &interface.mac)?;
    let name = if interface.name.is_empty() {
        DEFAULT_INTERFACE_NAME.to_string()
    } else {
        check_interface_name(&field("name"), &interface.name)?;
        interface.name.clone()
    };
    let mtu = match interface.mtu {
        0 => None,
        mtu if (MTU_MIN..=MTU_MAX).contains(&mtu) => Some(mtu),
        mtu => {
            return Err(ConfigError::Mtu {
                field: field("mtu"),
                value: mtu,
            })
        }
    };
    bound(
        &field("addresses"),
        interface.addresses.len(),
        MAX_ADDRESSES,
    )?;
    let mut addresses = Vec::with_capacity(interface.addresses.len());
    for (j, text) in interface.addresses.iter().enumerate() {
        let field = field(&format!("addresses[{j}]"));
        let cidr = IpCidr::parse(text).ok_or_else(|| ConfigError::Cidr {
            field: field.clone(),
            value: text.clone(),
        })?;
        if let Some(kind) = unusable_kind(cidr.addr) {
            return Err(ConfigError::AddressKind {
                field,
                value: text.clone(),
                kind,
            });
        }
        if addresses.contains(&cidr) {
            return Err(ConfigError::Duplicate {
                field,
                value: text.clone(),
            });
        }
        addresses.push(cidr);
    }
    Ok(InterfaceConfig {
        mac,
        name,
        mtu,
        addresses,
    })
}

/// Two interfaces of one request may share neither a MAC nor a name.
fn unique_interfaces(interfaces: &[InterfaceConfig]) -> Result<(), ConfigError> {
    let (mut macs, mut names) = (HashSet::new(), HashSet::new());
    for (i, interface) in interfaces.iter().enumerate() {
        if !macs.insert(interface.mac) {
            return Err(ConfigError::Duplicate {
                field: format!("interfaces[{i}].mac"),
                value: interface.mac.to_string(),
            });
        }
        if !names.insert(interface.name.as_str()) {
            return Err(ConfigError::Duplicate {
                field: format!("interfaces[{i}].name"),
                value: interface.name.clone(),
            });
        }
    }
    Ok(())
}

fn parse_mac(field: &str, text: &str) -> Result<MacAddr, ConfigError> {
    let mac: MacAddr = text.parse().map_err(|()| ConfigError::Mac {
        field: field.to_string(),
        value: text.to_string(),
    })?;
    // Bit 0 of the first byte: group (multicast) address; all zero: no address.
    if mac.0[0] & 1 == 1 || mac.0 == [0; 6] {
        return Err(ConfigError::MacNotUnicast {
            field: field.to_string(),
            value: text.to_string(),
        });
    }
    Ok(mac)
}

/// A Linux interface name (`dev_valid_name` in net/core/dev.c): 1-15 bytes, not "." or
/// "..", no '/', ':' or whitespace. "lo" is the loopback's.
fn check_interface_name(field: &str, name: &str) -> Result<(), ConfigError> {
    let valid = !name.is_empty()
        && name.len() <= IFNAME_MAX
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if !valid {
        return Err(ConfigError::Name {
            field: field.to_string(),
            value: name.to_string(),
        });
    }
    if name == "lo" {
        return Err(ConfigError::LoopbackName {
            field: field.to_string(),
            value: name.to_string(),
        });
    }
    Ok(())
}

fn route_config(
    i: usize,
    route: &NetworkRoute,
    macs: &HashSet<MacAddr>,
) -> Result<RouteConfig, ConfigError> {
    let field = |name: &str| format!("routes[{i}].{name}");
    let destination = IpCidr::parse(&route.destination).ok_or_else(|| ConfigError::Cidr {
        field: field("destination"),
        value: route.destination.clone(),
    })?;
    if destination.network() != destination {
        return Err(ConfigError::HostBits {
            field: field("destination"),
            value: route.destination.clone(),
            network: destination.network().to_string(),
        });
    }
    let gateway = match route.gateway.as_str() {
        "" => None,
        text => {
            let gateway: IpAddr = text.parse().map_err(|_| ConfigError::Ip {
                field: field("gateway"),
                value: text.to_string(),
            })?;
            if let Some(kind) = unusable_kind(gateway) {
                return Err(ConfigError::GatewayKind {
                    field: field("gateway"),
                    value: text.to_string(),
                    kind,
                });
            }
            if gateway.is_ipv4() != destination.addr.is_ipv4() {
                return Err(ConfigError::Family {
                    field: field("gateway"),
                    value: text.to_string(),
                    family: family(gateway),
                    destination: destination.to_string(),
                });
            }
            Some(gateway)
        }
    };
    let interface = match route.interface_mac.as_str() {
        "" => None,
        text => {
            let mac = parse_mac(&field("interface_mac"), text)?;
            if !macs.contains(&mac) {
                return Err(ConfigError::UnknownInterface {
                    field: field("interface_mac"),
                    value: text.to_string(),
                });
            }
            Some(mac)
        }
    };
    if gateway.is_none() && interface.is_none() {
        return Err(ConfigError::OnLinkWithoutInterface {
            field: format!("routes[{i}]"),
        });
    }
    Ok(RouteConfig {
        destination,
        gateway,
        interface,
        metric: route.metric,
    })
}

/// `None` when there is no nameserver: searches and options alone make no resolv.conf
/// worth writing (the proto says nothing is written then), but they are still checked.
fn dns_config(dns: &Dns) -> Result<Option<DnsConfig>, ConfigError> {
    bound("dns.nameservers", dns.nameservers.len(), MAX_NAMESERVERS)?;
    bound("dns.searches", dns.searches.len(), MAX_SEARCHES)?;
    bound("dns.options", dns.options.len(), MAX_OPTIONS)?;
    let nameservers = dns
        .nameservers
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let field = format!("dns.nameservers[{i}]");
            let addr: IpAddr = text.parse().map_err(|_| ConfigError::Ip {
                field: field.clone(),
                value: text.clone(),
            })?;
            match unusable_kind(addr) {
                Some(kind) => Err(ConfigError::NameserverKind {
                    field,
                    value: text.clone(),
                    kind,
                }),
                None => Ok(addr),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (i, search) in dns.searches.iter().enumerate() {
        if !is_domain(search) {
            return Err(ConfigError::Domain {
                field: format!("dns.searches[{i}]"),
                value: search.clone(),
            });
        }
    }
    for (i, option) in dns.options.iter().enumerate() {
        let valid = !option.is_empty()
            && option.len() <= OPTION_MAX
            && option.bytes().all(|b| b.is_ascii_graphic());
        if !valid {
            return Err(ConfigError::ResolverOption {
                field: format!("dns.options[{i}]"),
                value: option.clone(),
            });
        }
    }
    if nameservers.is_empty() {
        return Ok(None);
    }
    Ok(Some(DnsConfig {
        nameservers,
        searches: dns.searches.clone(),
        options: dns.options.clone(),
    }))
}

/// A domain name for a search list: labels of 1-63 letters, digits, '-' or '_' joined by
/// dots, at most 253 bytes, one final dot allowed.
fn is_domain(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= DOMAIN_MAX
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= LABEL_MAX
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests;
