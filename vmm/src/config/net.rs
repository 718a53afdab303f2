//! The zone's network device as written (`--net SPEC` or a `[net]` table) and its checked
//! form.
//!
//! `SPEC` is `tap=NAME` or `fd=N`, then optionally `,mac=aa:bb:cc:dd:ee:ff` and `,mtu=N`:
//! - `tap=NAME`: the VMM opens `/dev/net/tun` and attaches to (or creates) the tap interface
//!   NAME in its own network namespace.
//! - `fd=N`: descriptor N, inherited from the parent, is a tap the parent opened with
//!   `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR` (typically inside the pod's network namespace).
//! - `mac`: the guest NIC's address; a random locally administered unicast one by default.
//! - `mtu`: offered to the guest with `VIRTIO_NET_F_MTU`, 68..=65535, 1500 by default.

use std::fmt;
use std::io::Read;
use std::str::FromStr;

use serde::Deserialize;

use super::ConfigError;

pub const DEFAULT_MTU: u16 = 1500;
/// Smallest IPv4 MTU (RFC 791).
pub const MIN_MTU: u64 = 68;
pub const MAX_MTU: u64 = 65535;
/// Longest interface name the kernel accepts (`IFNAMSIZ` less the NUL).
pub const MAX_TAP_NAME: usize = 15;
/// Descriptors 0-2 are stdin, stdout and stderr.
pub const MIN_TAP_FD: i64 = 3;

/// `[net]` / `--net` as written; every value is checked by [`ZoneNet::try_from`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    pub tap: Option<String>,
    pub fd: Option<i64>,
    pub mac: Option<String>,
    pub mtu: Option<u64>,
}

impl FromStr for NetConfig {
    type Err = ConfigError;

    /// `tap=NAME|fd=N[,mac=MAC][,mtu=N]`; keys in any order, each at most once.
    fn from_str(spec: &str) -> Result<Self, ConfigError> {
        let bad = |reason: String| ConfigError::BadNetSpec {
            spec: spec.to_string(),
            reason,
        };
        let mut net = NetConfig::default();
        for part in spec.split(',') {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| bad(format!("{part:?} is not KEY=VALUE")))?;
            let duplicate = match key {
                "tap" => net.tap.replace(value.to_string()).is_some(),
                "fd" => {
                    let fd = value
                        .parse()
                        .map_err(|_| bad(format!("fd {value:?} is not a number")))?;
                    net.fd.replace(fd).is_some()
                }
                "mac" => net.mac.replace(value.to_string()).is_some(),
                "mtu" => {
                    let mtu = value
                        .parse()
                        .map_err(|_| bad(format!("mtu {value:?} is not a number")))?;
                    net.mtu.replace(mtu).is_some()
                }
                _ => return Err(bad(format!("unknown setting {key:?} (tap, fd, mac, mtu)"))),
            };
            if duplicate {
                return Err(bad(format!("{key} is given twice")));
            }
        }
        Ok(net)
    }
}

/// Where the device's frames go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetBackend {
    /// Open `/dev/net/tun` and attach to (or create) this tap interface.
    Tap(String),
    /// An inherited, already attached tap descriptor.
    Fd(i32),
}

/// An Ethernet address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// A random locally administered unicast address.
    pub fn random() -> std::io::Result<Self> {
        let mut bytes = [0u8; 6];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        bytes[0] = (bytes[0] & !0x01) | 0x02;
        Ok(Self(bytes))
    }

    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl FromStr for MacAddr {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, ConfigError> {
        let bad = || ConfigError::BadMac(text.to_string());
        let mut bytes = [0u8; 6];
        let mut parts = text.split(':');
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
        Ok(Self(bytes))
    }
}

/// A checked network device configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneNet {
    pub backend: NetBackend,
    pub mac: MacAddr,
    pub mtu: u16,
}

impl TryFrom<NetConfig> for ZoneNet {
    type Error = ConfigError;

    fn try_from(raw: NetConfig) -> Result<Self, ConfigError> {
        let backend = match (raw.tap, raw.fd) {
            (Some(name), None) => {
                let ok = !name.is_empty()
                    && name.len() <= MAX_TAP_NAME
                    && name != "."
                    && name != ".."
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
                if !ok {
                    return Err(ConfigError::BadTapName(name));
                }
                NetBackend::Tap(name)
            }
            (None, Some(fd)) => {
                let fd = i32::try_from(fd)
                    .ok()
                    .filter(|&n| i64::from(n) >= MIN_TAP_FD)
                    .ok_or(ConfigError::BadNetFd(fd))?;
                NetBackend::Fd(fd)
            }
            _ => return Err(ConfigError::NetBackend),
        };
        let mac = match raw.mac {
            Some(text) => {
                let mac: MacAddr = text.parse()?;
                if mac.is_multicast() || mac.0 == [0; 6] {
                    return Err(ConfigError::NotUnicastMac(mac.to_string()));
                }
                mac
            }
            None => MacAddr::random().map_err(|e| ConfigError::RandomMac(e.to_string()))?,
        };
        let mtu = match raw.mtu {
            None => DEFAULT_MTU,
            Some(mtu) => u16::try_from(mtu)
                .ok()
                .filter(|&m| (MIN_MTU..=MAX_MTU).contains(&u64::from(m)))
                .ok_or(ConfigError::BadMtu(mtu))?,
        };
        Ok(Self { backend, mac, mtu })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(spec: &str) -> Result<ZoneNet, ConfigError> {
        ZoneNet::try_from(spec.parse::<NetConfig>()?)
    }

    #[test]
    fn test_net_spec_tap_with_mac_and_mtu_parses() {
        let n = net("tap=tap0,mac=02:00:00:aa:bb:cc,mtu=9000").expect("valid");

        assert_eq!(n.backend, NetBackend::Tap("tap0".into()));
        assert_eq!(n.mac, MacAddr([2, 0, 0, 0xaa, 0xbb, 0xcc]));
        assert_eq!(n.mtu, 9000);
    }

    #[test]
    fn test_net_spec_fd_defaults_random_local_unicast_mac_and_1500() {
        let a = net("fd=3").expect("valid");
        let b = net("mtu=1500,fd=7").expect("valid");

        assert_eq!(a.backend, NetBackend::Fd(3));
        assert_eq!(b.backend, NetBackend::Fd(7));
        assert_eq!(a.mtu, DEFAULT_MTU);
        assert_eq!(a.mac.0[0] & 0x03, 0x02, "{}", a.mac);
        assert_ne!(a.mac, b.mac);
    }

    #[test]
    fn test_net_spec_structure_errors_name_the_spec() {
        for bad in [
            "",
            "tap",
            "tap=a,tap=b",
            "fd=x",
            "mtu=big,tap=a",
            "tap=a,speed=10",
        ] {
            let err = bad.parse::<NetConfig>().expect_err(bad);
            assert!(
                matches!(err, ConfigError::BadNetSpec { .. }),
                "{bad}: {err}"
            );
            assert!(err.to_string().starts_with("net "), "{err}");
        }
    }

    #[test]
    fn test_net_spec_bad_values_fail_naming_the_setting() {
        let cases = [
            ("mac=02:00:00:00:00:01", "tap=NAME or fd=N"),
            ("tap=a,fd=3", "tap=NAME or fd=N"),
            ("tap=", "tap name"),
            ("tap=averyveryverylongname", "tap name"),
            ("tap=a/b", "tap name"),
            ("fd=2", "fd=2"),
            ("fd=-1", "fd=-1"),
            ("fd=99999999999", "fd=99999999999"),
            ("tap=a,mac=02:00:00:00:00", "mac"),
            ("tap=a,mac=02:00:00:00:00:0g", "mac"),
            ("tap=a,mac=02:00:00:00:00:01:02", "mac"),
            ("tap=a,mac=2:0:0:0:0:1", "mac"),
            ("tap=a,mac=01:00:5e:00:00:01", "mac"),
            ("tap=a,mac=ff:ff:ff:ff:ff:ff", "mac"),
            ("tap=a,mac=00:00:00:00:00:00", "mac"),
            ("tap=a,mtu=67", "mtu 67"),
            ("tap=a,mtu=65536", "mtu 65536"),
            ("tap=a,mtu=0", "mtu 0"),
        ];
        for (spec, named) in cases {
            let err = net(spec).expect_err(spec);
            assert!(err.to_string().contains(named), "{spec}: {err}");
        }
    }

    #[test]
    fn test_net_mtu_bounds_accepted() {
        assert_eq!(net("tap=a,mtu=68").expect("min").mtu, 68);
        assert_eq!(net("tap=a,mtu=65535").expect("max").mtu, 65535);
    }

    #[test]
    fn test_mac_display_round_trips() {
        let mac: MacAddr = "0a:1B:2c:3d:4e:5f".parse().expect("valid");

        assert_eq!(mac.to_string(), "0a:1b:2c:3d:4e:5f");
    }
}
