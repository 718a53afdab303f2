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
mod tests {
    use super::*;

    const MAC: &str = "02:00:0a:58:00:05";

    fn eth0() -> NetworkInterface {
        NetworkInterface {
            mac: MAC.into(),
            name: "eth0".into(),
            mtu: 1500,
            addresses: vec!["10.88.0.5/16".into(), "fd00::5/64".into()],
        }
    }

    fn default_route() -> NetworkRoute {
        NetworkRoute {
            destination: "0.0.0.0/0".into(),
            gateway: "10.88.0.1".into(),
            interface_mac: String::new(),
            metric: 0,
        }
    }

    fn request() -> ConfigureNetworkRequest {
        ConfigureNetworkRequest {
            interfaces: vec![eth0()],
            routes: vec![default_route()],
            dns: Some(Dns {
                nameservers: vec!["10.88.0.1".into()],
                searches: vec!["default.svc.cluster.local".into()],
                options: vec!["ndots:5".into()],
            }),
        }
    }

    /// The message of refusing `request`, which must name every one of `names`.
    fn refused(request: &ConfigureNetworkRequest, names: &[&str]) -> ConfigError {
        let error = NetworkConfig::try_from(request).expect_err("the request was accepted");
        let message = error.to_string();
        for name in names {
            assert!(message.contains(name), "{message:?} does not name {name:?}");
        }
        error
    }

    #[test]
    fn test_network_config_cni_request_accepted() {
        let config = NetworkConfig::try_from(&request()).unwrap();

        let interface = &config.interfaces[0];
        assert_eq!(interface.mac, MacAddr([2, 0, 0x0a, 0x58, 0, 5]));
        assert_eq!(interface.name, "eth0");
        assert_eq!(interface.mtu, Some(1500));
        assert_eq!(interface.addresses[0].to_string(), "10.88.0.5/16");
        assert_eq!(interface.addresses[1].to_string(), "fd00::5/64");
        assert_eq!(config.routes[0].describe(None), "default via 10.88.0.1");
        let dns = config.dns.unwrap();
        assert_eq!(dns.nameservers, ["10.88.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(dns.searches, ["default.svc.cluster.local"]);
        assert_eq!(dns.options, ["ndots:5"]);
    }

    #[test]
    fn test_network_config_defaults_name_mtu_and_no_dns() {
        let mut request = request();
        request.interfaces[0].name.clear();
        request.interfaces[0].mtu = 0;
        request.dns = Some(Dns {
            nameservers: vec![],
            searches: vec!["example.com".into()],
            options: vec![],
        });

        let config = NetworkConfig::try_from(&request).unwrap();

        assert_eq!(config.interfaces[0].name, "eth0");
        assert_eq!(config.interfaces[0].mtu, None);
        assert_eq!(config.dns, None);
        request.dns = None;
        assert_eq!(NetworkConfig::try_from(&request).unwrap().dns, None);
    }

    #[test]
    fn test_network_config_empty_request_accepted() {
        let config = NetworkConfig::try_from(&ConfigureNetworkRequest::default()).unwrap();
        assert!(config.interfaces.is_empty() && config.routes.is_empty());
        assert_eq!(config.dns, None);
    }

    #[test]
    fn test_mac_parse_forms() {
        assert_eq!(
            "AA:bb:0C:dd:0e:FE".parse::<MacAddr>().unwrap().to_string(),
            "aa:bb:0c:dd:0e:fe"
        );
        for bad in [
            "",
            "aa:bb:cc:dd:ee",
            "aa:bb:cc:dd:ee:ff:00",
            "aa-bb-cc-dd-ee-ff",
            "a:bb:cc:dd:ee:ff",
            "aaa:bb:cc:dd:ee:f",
            "gg:bb:cc:dd:ee:ff",
            "+a:bb:cc:dd:ee:ff",
            "aa:bb:cc:dd:ee:ff:",
            "aabbccddeeff",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn test_network_config_bad_mac_refused_named() {
        for bad in [
            "",
            "02:00:00:00:00",
            "zz:00:00:00:00:01",
            "02:00:00:00:00:01\n",
        ] {
            let mut request = request();
            request.interfaces[0].mac = bad.into();
            let error = refused(&request, &["interfaces[0].mac", &format!("{bad:?}")]);
            assert!(matches!(error, ConfigError::Mac { .. }), "{error:?}");
        }
        for not_unicast in [
            "01:00:5e:00:00:01",
            "ff:ff:ff:ff:ff:ff",
            "00:00:00:00:00:00",
        ] {
            let mut request = request();
            request.interfaces[0].mac = not_unicast.into();
            let error = refused(&request, &["interfaces[0].mac", not_unicast]);
            assert!(matches!(error, ConfigError::MacNotUnicast { .. }));
        }
    }

    #[test]
    fn test_network_config_bad_interface_name_refused_named() {
        for bad in [
            ".",
            "..",
            "a/b",
            "eth:0",
            "eth 0",
            "eth\t0",
            "eth0\n",
            "sixteen-bytes-xx",
            "é",
        ] {
            let mut request = request();
            request.interfaces[0].name = bad.into();
            let error = refused(&request, &["interfaces[0].name", &format!("{bad:?}")]);
            assert!(matches!(error, ConfigError::Name { .. }), "{bad:?}");
        }
        let mut request = request();
        request.interfaces[0].name = "lo".into();
        assert!(matches!(
            refused(&request, &["interfaces[0].name", "\"lo\"", "loopback"]),
            ConfigError::LoopbackName { .. }
        ));
        request.interfaces[0].name = "fifteen-bytes-x".into();
        assert!(NetworkConfig::try_from(&request).is_ok());
    }

    #[test]
    fn test_network_config_bad_mtu_refused_named() {
        for bad in [1, 67, 65536, u32::MAX] {
            let mut request = request();
            request.interfaces[0].mtu = bad;
            let error = refused(&request, &["interfaces[0].mtu", &bad.to_string()]);
            assert!(matches!(error, ConfigError::Mtu { .. }));
        }
        for good in [68, 9000, 65535] {
            let mut request = request();
            request.interfaces[0].mtu = good;
            assert!(NetworkConfig::try_from(&request).is_ok(), "{good}");
        }
    }

    #[test]
    fn test_network_config_bad_address_refused_named() {
        for bad in [
            "10.88.0.5",
            "10.88.0.5/",
            "10.88.0.5/33",
            "fd00::5/129",
            "10.88.0.5/+16",
            "10.88.0.5/016x",
            "10.88.0/16",
            "host/16",
            "10.88.0.5/16 ",
            "",
        ] {
            let mut request = request();
            request.interfaces[0].addresses[1] = bad.into();
            let error = refused(
                &request,
                &["interfaces[0].addresses[1]", &format!("{bad:?}")],
            );
            assert!(matches!(error, ConfigError::Cidr { .. }), "{bad:?}");
        }
        for (bad, kind) in [
            ("0.0.0.0/8", "unspecified"),
            ("::/64", "unspecified"),
            ("224.0.0.1/4", "multicast"),
            ("ff02::1/64", "multicast"),
            ("255.255.255.255/32", "broadcast"),
        ] {
            let mut request = request();
            request.interfaces[0].addresses[0] = bad.into();
            refused(&request, &["interfaces[0].addresses[0]", bad, kind]);
        }
        let mut request = request();
        request.interfaces[0].addresses[1] = "10.88.0.5/16".into();
        assert!(matches!(
            refused(
                &request,
                &["interfaces[0].addresses[1]", "10.88.0.5/16", "twice"]
            ),
            ConfigError::Duplicate { .. }
        ));
    }

    #[test]
    fn test_network_config_duplicate_interfaces_refused_named() {
        let mut request = request();
        let mut second = eth0();
        second.name = "eth1".into();
        request.interfaces.push(second);
        refused(&request, &["interfaces[1].mac", MAC, "twice"]);

        let mut request = self::request();
        let mut second = eth0();
        second.mac = "02:00:00:00:00:99".into();
        second.addresses.clear();
        request.interfaces.push(second);
        refused(&request, &["interfaces[1].name", "eth0", "twice"]);
    }

    #[test]
    fn test_network_config_counts_bounded() {
        let mut request = request();
        request.interfaces = (0..9)
            .map(|i| NetworkInterface {
                mac: format!("02:00:00:00:00:{i:02x}"),
                name: format!("eth{i}"),
                ..Default::default()
            })
            .collect();
        request.routes.clear();
        assert!(matches!(
            refused(&request, &["interfaces", "9", "8"]),
            ConfigError::TooMany { .. }
        ));
        request.interfaces.pop();
        assert!(NetworkConfig::try_from(&request).is_ok());

        let mut request = self::request();
        request.interfaces[0].addresses = (0..33).map(|i| format!("10.0.0.{}/24", i + 1)).collect();
        refused(&request, &["interfaces[0].addresses", "33", "32"]);

        let mut request = self::request();
        request.routes = (0..65)
            .map(|i| NetworkRoute {
                destination: format!("10.{i}.0.0/16"),
                gateway: "10.88.0.1".into(),
                ..Default::default()
            })
            .collect();
        refused(&request, &["routes", "65", "64"]);

        let dns = |n: usize, s: usize, o: usize| Dns {
            nameservers: (0..n).map(|i| format!("10.0.0.{}", i + 1)).collect(),
            searches: (0..s).map(|i| format!("d{i}.example")).collect(),
            options: (0..o).map(|i| format!("opt{i}")).collect(),
        };
        let mut request = self::request();
        request.dns = Some(dns(3, 6, 16));
        assert!(NetworkConfig::try_from(&request).is_ok());
        request.dns = Some(dns(4, 0, 0));
        refused(&request, &["dns.nameservers", "4", "3"]);
        request.dns = Some(dns(1, 7, 0));
        refused(&request, &["dns.searches", "7", "6"]);
        request.dns = Some(dns(1, 0, 17));
        refused(&request, &["dns.options", "17", "16"]);
    }

    #[test]
    fn test_network_config_bad_route_destination_refused_named() {
        for bad in ["default", "0.0.0.0", "10.0.0.0/33", "", "::/129"] {
            let mut request = request();
            request.routes[0].destination = bad.into();
            let error = refused(&request, &["routes[0].destination", &format!("{bad:?}")]);
            assert!(matches!(error, ConfigError::Cidr { .. }), "{bad:?}");
        }
        let mut request = request();
        request.routes[0].destination = "10.88.0.5/16".into();
        assert!(matches!(
            refused(
                &request,
                &["routes[0].destination", "10.88.0.5/16", "10.88.0.0/16"]
            ),
            ConfigError::HostBits { .. }
        ));
    }

    #[test]
    fn test_network_config_bad_gateway_refused_named() {
        for bad in ["10.88.0", "gateway", "10.88.0.1/16", "fe80::1%eth0"] {
            let mut request = request();
            request.routes[0].gateway = bad.into();
            let error = refused(&request, &["routes[0].gateway", &format!("{bad:?}")]);
            assert!(matches!(error, ConfigError::Ip { .. }), "{bad:?}");
        }
        let mut request = request();
        request.routes[0].gateway = "fd00::1".into();
        assert!(matches!(
            refused(
                &request,
                &["routes[0].gateway", "fd00::1", "IPv6", "0.0.0.0/0"]
            ),
            ConfigError::Family { .. }
        ));
        request.routes[0].destination = "::/0".into();
        request.routes[0].gateway = "10.88.0.1".into();
        refused(
            &request,
            &["routes[0].gateway", "10.88.0.1", "IPv4", "::/0"],
        );
        request.routes[0].gateway = "fd00::1".into();
        assert!(NetworkConfig::try_from(&request).is_ok());
        request.routes[0].gateway = "ff02::2".into();
        refused(&request, &["routes[0].gateway", "ff02::2", "multicast"]);
    }

    #[test]
    fn test_network_config_route_interface_checked() {
        let mut request = request();
        request.routes[0].interface_mac = "02:00:00:00:00:77".into();
        assert!(matches!(
            refused(&request, &["routes[0].interface_mac", "02:00:00:00:00:77"]),
            ConfigError::UnknownInterface { .. }
        ));
        request.routes[0].interface_mac = "bad".into();
        refused(&request, &["routes[0].interface_mac", "\"bad\""]);
        // Either case names the interface.
        request.routes[0].interface_mac = MAC.to_uppercase();
        assert!(NetworkConfig::try_from(&request).is_ok());

        request.routes.push(NetworkRoute {
            destination: "192.168.0.0/24".into(),
            ..Default::default()
        });
        assert!(matches!(
            refused(&request, &["routes[1]", "interface_mac"]),
            ConfigError::OnLinkWithoutInterface { .. }
        ));
        request.routes[1].interface_mac = MAC.into();
        let config = NetworkConfig::try_from(&request).unwrap();
        assert_eq!(config.routes[1].interface, Some(MAC.parse().unwrap()));
        assert_eq!(
            config.routes[1].describe(Some("eth0")),
            "192.168.0.0/24 dev eth0"
        );
    }

    #[test]
    fn test_network_config_duplicate_route_refused_metric_tells_apart() {
        let mut request = request();
        request.routes.push(default_route());
        refused(&request, &["routes[1]", "0.0.0.0/0", "metric 0"]);
        request.routes[1].metric = 100;
        request.routes[1].gateway = "10.88.0.2".into();
        let config = NetworkConfig::try_from(&request).unwrap();
        assert_eq!(
            config.routes[1].describe(None),
            "default via 10.88.0.2 metric 100"
        );
        request.routes[1].metric = u32::MAX;
        assert!(NetworkConfig::try_from(&request).is_ok());
    }

    #[test]
    fn test_network_config_bad_dns_refused_named() {
        for (bad, kind) in [("dns.example", "not an IP"), ("0.0.0.0", "unspecified")] {
            let mut request = request();
            request.dns.as_mut().unwrap().nameservers = vec!["10.0.0.1".into(), bad.into()];
            refused(&request, &["dns.nameservers[1]", bad, kind]);
        }
        for bad in [
            "",
            ".",
            "a..b",
            "has space.example",
            "new\nline.example",
            "tab\t.example",
            "semi;colon",
            &format!("{}.example", "l".repeat(64)),
            &["abcdefghi"; 26].join("."),
        ] {
            let mut request = request();
            request.dns.as_mut().unwrap().searches = vec![bad.into()];
            let error = refused(&request, &["dns.searches[0]", &format!("{bad:?}")]);
            assert!(matches!(error, ConfigError::Domain { .. }), "{bad:?}");
        }
        for good in ["svc.cluster.local.", "_tcp.example", "a-b.c", "localdomain"] {
            let mut request = request();
            request.dns.as_mut().unwrap().searches = vec![good.into()];
            assert!(NetworkConfig::try_from(&request).is_ok(), "{good}");
        }
        for bad in [
            "",
            "ndots:5 edns0",
            "a\nnameserver 1.2.3.4",
            "tab\t",
            &"o".repeat(65),
        ] {
            let mut request = request();
            request.dns.as_mut().unwrap().options = vec!["edns0".into(), bad.into()];
            let error = refused(&request, &["dns.options[1]", &format!("{bad:?}")]);
            assert!(matches!(error, ConfigError::ResolverOption { .. }));
        }
        // Checked even without a nameserver.
        let mut request = request();
        let dns = request.dns.as_mut().unwrap();
        dns.nameservers.clear();
        dns.searches = vec!["bad domain".into()];
        refused(&request, &["dns.searches[0]"]);
    }

    #[test]
    fn test_ip_cidr_network_clears_host_bits() {
        let cidr = IpCidr::parse("10.88.0.5/16").unwrap();
        assert_eq!(cidr.network().to_string(), "10.88.0.0/16");
        assert_eq!(
            IpCidr::parse("10.1.2.3/0").unwrap().network().to_string(),
            "0.0.0.0/0"
        );
        assert_eq!(
            IpCidr::parse("10.1.2.3/32").unwrap().network().to_string(),
            "10.1.2.3/32"
        );
        assert_eq!(
            IpCidr::parse("fd00::5/64").unwrap().network().to_string(),
            "fd00::/64"
        );
        assert_eq!(
            IpCidr::parse("fd00::5/0").unwrap().network().to_string(),
            "::/0"
        );
    }
}
