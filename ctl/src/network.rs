//! A zone's network for `zonectl run`: none (loopback only), a network namespace the operator
//! prepared, or the built-in bridge (`zones0`, with `-p` publishing ports on the host).
//!
//! Both kinds with a network end up the same way: a namespace holding a veth, next to which
//! `zone_net::netns::attach` creates the tap the VMM gets as a descriptor, with tc redirecting
//! frames between the two; the agent then gives the zone's interface the veth's addresses and
//! routes, and the host's DNS servers. What was set up is recorded in `state.json`, so that
//! whoever ends the zone (`run`, the supervisor, or `rm` after a crash) can undo it.

use std::fmt;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use zone_net::ports::PortMapping;
use zone_net::{bridge, dns, netns, GuestNetwork, MacAddr};

/// Where the host's DNS configuration is read from for zones with a network.
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

/// The `--network` argument.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NetworkMode {
    /// Loopback only.
    #[default]
    None,
    /// The built-in bridge: an address on zones0, reachable from the host.
    Bridge,
    /// A network namespace (a file such as /var/run/netns/NAME) holding one veth.
    Namespace(PathBuf),
}

impl FromStr for NetworkMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "none" => Ok(NetworkMode::None),
            "bridge" => Ok(NetworkMode::Bridge),
            _ => {
                let path = text.strip_prefix("ns:").unwrap_or(text);
                if path.starts_with('/') {
                    Ok(NetworkMode::Namespace(PathBuf::from(path)))
                } else {
                    Err(format!(
                        "{text:?}: expected none, bridge, or ns:PATH of a network namespace \
                         (such as ns:/var/run/netns/blue)"
                    ))
                }
            }
        }
    }
}

impl fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetworkMode::None => write!(f, "none"),
            NetworkMode::Bridge => write!(f, "bridge"),
            NetworkMode::Namespace(path) => write!(f, "ns:{}", path.display()),
        }
    }
}

/// What `state.json` keeps of a zone's network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    /// `bridge` or `ns:PATH`.
    pub mode: String,
    /// The namespace the zone's tap lives in.
    pub netns: PathBuf,
    /// The zone's addresses, `ADDRESS/PREFIX`.
    pub addresses: Vec<String>,
    pub mac: String,
    /// `-p` mappings, as given.
    #[serde(default)]
    pub published: Vec<String>,
    /// The built-in bridge leased an address and made the namespace: release both at the end.
    pub bridge_lease: bool,
}

/// A zone's network while it is being started: the tap goes to the VMM, the guest network to
/// the agent.
#[derive(Debug)]
pub struct ZoneNetwork {
    pub record: NetworkRecord,
    /// Until the VMM has been spawned with it.
    pub tap: Option<OwnedFd>,
    pub mac: MacAddr,
    pub mtu: u32,
    pub guest: GuestNetwork,
    /// Where `-p` connections go.
    pub zone_ip: Option<IpAddr>,
    pub publish: Vec<PortMapping>,
    state_root: PathBuf,
    zone_id: String,
}

impl Drop for ZoneNetwork {
    /// Runs after the VMM is gone (declare the network before the VMM process).
    fn drop(&mut self) {
        tear_down(&self.record, &self.state_root, &self.zone_id);
    }
}

/// Checks `-p` against the mode before anything is created.
pub fn check_args(mode: &NetworkMode, publish: &[PortMapping]) -> anyhow::Result<()> {
    if !publish.is_empty() && *mode != NetworkMode::Bridge {
        anyhow::bail!(
            "-p/--publish needs --network bridge (the zone's address on other networks is not \
             known to be reachable from this host)"
        );
    }
    // Early, so that `run -d` reports it rather than the zone's log; `publish` binds for real
    // once the zone is up.
    for mapping in publish {
        let addr = mapping.host_addr();
        if let Err(e) = std::net::TcpListener::bind(addr) {
            anyhow::bail!("-p {mapping}: cannot listen on {addr}: {e}");
        }
    }
    if let NetworkMode::Namespace(path) = mode {
        if !path.exists() {
            anyhow::bail!(
                "--network ns:{}: no such network namespace file (create one with `ip netns add \
                 NAME`, then pass ns:/var/run/netns/NAME)",
                path.display()
            );
        }
    }
    Ok(())
}

/// Sets up the zone's network; `None` for `--network none`. On failure nothing stays behind.
pub fn set_up(
    mode: &NetworkMode,
    publish: &[PortMapping],
    state_root: &Path,
    zone_id: &str,
) -> anyhow::Result<Option<ZoneNetwork>> {
    let (netns_path, bridge_lease) = match mode {
        NetworkMode::None => return Ok(None),
        NetworkMode::Bridge => {
            let lease = bridge::attach(state_root, zone_id)
                .context("connecting the zone to the zones0 bridge")?;
            if let Some(note) = &lease.note {
                eprintln!("zonectl: note: {note}");
            }
            (lease.netns.clone(), true)
        }
        NetworkMode::Namespace(path) => (path.clone(), false),
    };
    let attached = match netns::attach(&netns_path) {
        Ok(attached) => attached,
        Err(e) => {
            if bridge_lease {
                release_bridge(state_root, zone_id);
            }
            return Err(anyhow::Error::new(e).context(format!(
                "creating the zone's tap in {}",
                netns_path.display()
            )));
        }
    };
    let mut guest = attached.guest.clone();
    guest.dns = host_dns();
    let interface = guest
        .interfaces
        .first()
        .context("the network namespace gave the zone no interface")?;
    let zone_ip = interface
        .addresses
        .iter()
        .map(|a| a.addr)
        .find(IpAddr::is_ipv4)
        .or_else(|| interface.addresses.first().map(|a| a.addr));
    let record = NetworkRecord {
        mode: mode.to_string(),
        netns: netns_path,
        addresses: interface
            .addresses
            .iter()
            .map(ToString::to_string)
            .collect(),
        mac: interface.mac.to_string(),
        published: publish.iter().map(ToString::to_string).collect(),
        bridge_lease,
    };
    Ok(Some(ZoneNetwork {
        mac: interface.mac,
        mtu: interface.mtu,
        zone_ip,
        record,
        tap: Some(attached.tap),
        guest,
        publish: publish.to_vec(),
        state_root: state_root.to_path_buf(),
        zone_id: zone_id.to_string(),
    }))
}

/// Undoes [`set_up`] once the VMM is gone (its tap went with it). Idempotent; failures are
/// reported and the rest still undone.
pub fn tear_down(record: &NetworkRecord, state_root: &Path, zone_id: &str) {
    if let Err(e) = netns::detach(&record.netns) {
        eprintln!(
            "zonectl: warning: removing the zone's traffic redirect in {}: {e}",
            record.netns.display()
        );
    }
    if record.bridge_lease {
        release_bridge(state_root, zone_id);
    }
}

fn release_bridge(state_root: &Path, zone_id: &str) {
    if let Err(e) = bridge::release(state_root, zone_id) {
        eprintln!("zonectl: warning: releasing the zone's bridge address: {e:#}");
    }
}

/// The host's DNS servers for the zone; loopback ones (a local resolver such as
/// systemd-resolved's 127.0.0.53) cannot be reached from a zone and are left out.
fn host_dns() -> zone_net::DnsConfig {
    match std::fs::read_to_string(HOST_RESOLV_CONF) {
        Ok(text) => {
            let parsed = dns::parse_resolv_conf(&text);
            if parsed.dropped_loopback > 0 && parsed.dns.nameservers.is_empty() {
                eprintln!(
                    "zonectl: note: {HOST_RESOLV_CONF} names only loopback nameservers, which a \
                     zone cannot reach: the zone gets no DNS servers"
                );
            }
            parsed.dns
        }
        Err(e) => {
            tracing::debug!(error = %e, "no host resolv.conf; the zone gets no DNS servers");
            zone_net::DnsConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_network_mode_parses_known_forms() {
        assert_eq!("none".parse(), Ok(NetworkMode::None));
        assert_eq!("bridge".parse(), Ok(NetworkMode::Bridge));
        assert_eq!(
            "ns:/var/run/netns/blue".parse(),
            Ok(NetworkMode::Namespace("/var/run/netns/blue".into()))
        );
        assert_eq!(
            "/proc/1/ns/net".parse(),
            Ok(NetworkMode::Namespace("/proc/1/ns/net".into()))
        );
    }

    #[test]
    fn test_network_mode_bad_value_refused_with_forms() {
        let error = "host".parse::<NetworkMode>().unwrap_err();
        assert!(
            error.contains("\"host\"") && error.contains("ns:PATH"),
            "{error}"
        );
        assert!("ns:relative".parse::<NetworkMode>().is_err());
    }

    #[test]
    fn test_check_args_publish_needs_bridge() {
        let publish = vec!["8080:80".parse::<PortMapping>().unwrap()];
        assert!(check_args(&NetworkMode::Bridge, &publish).is_ok());
        let error = check_args(&NetworkMode::None, &publish).unwrap_err();
        assert!(error.to_string().contains("--network bridge"), "{error}");
    }

    #[test]
    fn test_check_args_port_in_use_named() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let publish = vec![format!("127.0.0.1:{port}:80")
            .parse::<PortMapping>()
            .unwrap()];
        let error = check_args(&NetworkMode::Bridge, &publish).unwrap_err();
        assert!(error.to_string().contains(&port.to_string()), "{error}");
    }

    #[test]
    fn test_check_args_missing_namespace_named() {
        let mode = NetworkMode::Namespace("/var/run/netns/no-such-ns-zones-test".into());
        let error = check_args(&mode, &[]).unwrap_err();
        assert!(
            error.to_string().contains("no-such-ns-zones-test"),
            "{error}"
        );
    }
}
