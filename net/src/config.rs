//! What the zone's agent configures: the host reads it from a network namespace and sends it
//! as `zone.agent.v1.ConfigureNetworkRequest`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use zone_proto::agent::v1 as proto;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("MAC address {0:?}: expected six hex bytes such as 02:00:0a:58:00:05")]
    Mac(String),
    #[error("{0:?}: expected ADDRESS/PREFIX such as 10.88.0.5/16")]
    Cidr(String),
}

/// An Ethernet MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseError::Mac(s.to_string());
        let mut bytes = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut bytes {
            let part = parts.next().ok_or_else(bad)?;
            if part.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(bytes))
    }
}

/// An address with its prefix length, `10.88.0.5/16`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpCidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl fmt::Display for IpCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for IpCidr {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseError::Cidr(s.to_string());
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad());
        }
        Ok(IpCidr { addr, prefix })
    }
}

/// One interface of the zone (today: its one virtio-net device).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestInterface {
    pub mac: MacAddr,
    pub mtu: u32,
    pub addresses: Vec<IpCidr>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestRoute {
    pub destination: IpCidr,
    pub gateway: Option<IpAddr>,
    pub interface: Option<MacAddr>,
    pub metric: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsConfig {
    pub nameservers: Vec<IpAddr>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// Everything the zone's agent configures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuestNetwork {
    pub interfaces: Vec<GuestInterface>,
    pub routes: Vec<GuestRoute>,
    pub dns: DnsConfig,
}

impl GuestNetwork {
    pub fn to_request(&self) -> proto::ConfigureNetworkRequest {
        proto::ConfigureNetworkRequest {
            interfaces: self
                .interfaces
                .iter()
                .map(|i| proto::NetworkInterface {
                    mac: i.mac.to_string(),
                    name: String::new(),
                    mtu: i.mtu,
                    addresses: i.addresses.iter().map(ToString::to_string).collect(),
                })
                .collect(),
            routes: self
                .routes
                .iter()
                .map(|r| proto::NetworkRoute {
                    destination: r.destination.to_string(),
                    gateway: r.gateway.map(|g| g.to_string()).unwrap_or_default(),
                    interface_mac: r.interface.map(|m| m.to_string()).unwrap_or_default(),
                    metric: r.metric,
                })
                .collect(),
            dns: Some(proto::Dns {
                nameservers: self
                    .dns
                    .nameservers
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                searches: self.dns.searches.clone(),
                options: self.dns.options.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_mac_round_trips_and_bad_ones_refused() {
        let mac: MacAddr = "02:00:0A:58:00:05".parse().unwrap();
        assert_eq!(mac.to_string(), "02:00:0a:58:00:05");
        for bad in [
            "",
            "02:00:0a:58:00",
            "02:00:0a:58:00:05:06",
            "2:00:0a:58:00:05",
            "zz:00:0a:58:00:05",
        ] {
            assert_eq!(
                bad.parse::<MacAddr>(),
                Err(ParseError::Mac(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn test_cidr_round_trips_and_bad_ones_refused() {
        assert_eq!(
            "10.88.0.5/16".parse::<IpCidr>().unwrap().to_string(),
            "10.88.0.5/16"
        );
        assert_eq!("fd00::5/64".parse::<IpCidr>().unwrap().prefix, 64);
        for bad in [
            "10.88.0.5",
            "10.88.0.5/33",
            "fd00::1/129",
            "x/1",
            "10.88.0.5/-1",
        ] {
            assert!(bad.parse::<IpCidr>().is_err(), "{bad}");
        }
    }
}
