//! The built-in single-host bridge network (`zonectl run --network bridge`).
//!
//! It prepares a zone's network namespace the way the CNI `bridge` plugin would, so that the
//! rest of the path is the same as for CNI: [`attach`] leases an address ([`crate::ipam`]),
//! creates a named network namespace (`/run/netns/zone-<id>`, usable with
//! `ip netns exec zone-<id> ...`), and a veth pair whose host end `zv<id>` is a port of the
//! bridge `zones0` and whose other end is the namespace's `eth0`, configured with the address
//! and a default route via the bridge's address. The caller then hands the namespace to
//! `netns::attach`, which puts the zone's tap next to `eth0`.
//!
//! Links, addresses and routes go through rtnetlink on a current-thread tokio runtime on a
//! short-lived thread; the in-namespace part runs on a thread that entered the namespace
//! (`setns(2)`), so no other thread of the caller ever changes namespace.

mod host;
mod namespace;

use std::fs::File;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use futures_util::TryStreamExt;
use nix::sched::{setns, CloneFlags};
use rtnetlink::packet_route::link::{InfoData, InfoVeth};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::ipam::{Ipam, IpamError, Ipv4Subnet};
use crate::IpCidr;

/// The host bridge zones are ports of.
pub const BRIDGE: &str = "zones0";
/// The bridge network; its first address (10.213.0.1) is the gateway, on the bridge.
pub const SUBNET: &str = "10.213.0.0/16";
/// Where named network namespaces live (iproute2's `ip netns` folder).
pub const NETNS_DIR: &str = "/run/netns";
/// The zone end of the veth, inside the namespace.
pub const ZONE_IFNAME: &str = "eth0";

/// Longest zone id used verbatim in the host veth name (`zv` + id fits IFNAMSIZ - 1 = 15).
const VETH_ID_MAX: usize = 13;
const ZONE_ID_MAX: usize = 64;

/// rtnetlink's error holds a whole netlink message: boxed to keep `BridgeError` small.
pub type NetlinkError = Box<rtnetlink::Error>;

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error(
        "zone id {0:?}: expected 1 to {ZONE_ID_MAX} letters, digits, '-', '_' or '.', \
         not starting with '-' or '.'"
    )]
    ZoneId(String),
    #[error("starting a tokio runtime for netlink")]
    Runtime(#[source] io::Error),
    #[error("opening a netlink socket")]
    NetlinkSocket(#[source] io::Error),
    #[error("a netlink thread panicked")]
    ThreadPanicked,
    #[error("entering the network namespace {}", .0.display())]
    EnterNetns(PathBuf, #[source] io::Error),
    #[error("looking up link {0}")]
    LinkLookup(String, #[source] NetlinkError),
    #[error("link {0} vanished while being set up")]
    LinkVanished(String),
    #[error("creating bridge {0}")]
    CreateBridge(String, #[source] NetlinkError),
    #[error("adding {address} to bridge {bridge}")]
    BridgeAddress {
        bridge: String,
        address: IpCidr,
        #[source]
        source: NetlinkError,
    },
    #[error("bringing bridge {0} up")]
    BridgeUp(String, #[source] NetlinkError),
    #[error("turning on IPv4 forwarding ({})", host::IP_FORWARD)]
    Forwarding(#[source] io::Error),
    #[error("leasing an address")]
    Lease(#[source] IpamError),
    #[error("preparing {}", .0.display())]
    NetnsDir(PathBuf, #[source] io::Error),
    #[error(
        "network namespace {} already exists: another zone with this id is attached, \
         or a previous one was not released (ip netns delete {})", .path.display(), .name
    )]
    NetnsExists { path: PathBuf, name: String },
    #[error("creating the network namespace {}", .0.display())]
    CreateNetns(PathBuf, #[source] io::Error),
    #[error("creating veth {veth} on {bridge}")]
    CreateVeth {
        veth: String,
        bridge: String,
        #[source]
        source: NetlinkError,
    },
    #[error("bringing lo up in the zone namespace")]
    LoopbackUp(#[source] NetlinkError),
    #[error("adding {0} to {ZONE_IFNAME} in the zone namespace")]
    ZoneAddress(IpCidr, #[source] NetlinkError),
    #[error("bringing {ZONE_IFNAME} up in the zone namespace")]
    ZoneLinkUp(#[source] NetlinkError),
    #[error("adding the default route via {0} in the zone namespace")]
    DefaultRoute(Ipv4Addr, #[source] NetlinkError),
    #[error("deleting veth {0}")]
    DeleteVeth(String, #[source] NetlinkError),
    #[error("removing the network namespace {}", .0.display())]
    RemoveNetns(PathBuf, #[source] io::Error),
    #[error("releasing the address lease")]
    ReleaseLease(#[source] IpamError),
}

/// Which bridge and subnet to use. [`attach`]/[`release`] use [`BridgeParams::default`];
/// tests (and perhaps one day a `--subnet`) pass their own.
#[derive(Clone, Debug)]
pub struct BridgeParams {
    pub bridge: String,
    pub subnet: Ipv4Subnet,
    /// Host-wide routing set-up when ensuring the bridge: IPv4 forwarding on and, if `nft` is
    /// installed, the masquerade rule. On by default; tests that must not change the host
    /// turn it off.
    pub host_routing: bool,
}

impl Default for BridgeParams {
    fn default() -> Self {
        BridgeParams {
            bridge: BRIDGE.to_string(),
            subnet: SUBNET.parse().expect("SUBNET is a valid /16"),
            host_routing: true,
        }
    }
}

/// A zone's place on the bridge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeLease {
    pub zone_id: String,
    /// The bind-mounted namespace file, `/run/netns/zone-<id>`; hand it to `netns::attach`.
    pub netns: PathBuf,
    /// The zone's address with the subnet's prefix, e.g. 10.213.0.2/16.
    pub address: IpCidr,
    pub gateway: IpAddr,
    /// The host end of the veth, a port of the bridge.
    pub host_veth: String,
    /// Something the operator should hear once (e.g. that zones cannot reach beyond the host
    /// because `nft` is not installed); `None` when all is well.
    pub note: Option<String>,
}

/// Ensures the bridge and attaches `zone_id` to it with the default [`BridgeParams`].
///
/// Ensures the bridge (created if missing, with the gateway address, up; IPv4 forwarding on,
/// masquerading when `nft` exists), leases an address, creates the namespace
/// `/run/netns/zone-<id>`, and a veth pair: host end `zv<id>` on the bridge, up; the other end
/// `eth0` in the namespace with the address, up, default route via the gateway; `lo` up.
/// On failure everything this call did is undone (the bridge stays).
pub fn attach(state_root: &Path, zone_id: &str) -> Result<BridgeLease, BridgeError> {
    attach_with(&BridgeParams::default(), state_root, zone_id)
}

/// Undoes [`attach`]: deletes the host veth (its peer goes with it), unmounts and removes the
/// namespace file, releases the lease. Parts already gone are fine; the bridge stays.
pub fn release(state_root: &Path, zone_id: &str) -> Result<(), BridgeError> {
    release_with(&BridgeParams::default(), state_root, zone_id)
}

/// [`attach`] with explicit parameters.
#[tracing::instrument(skip_all, fields(zone = %zone_id, bridge = %params.bridge))]
pub fn attach_with(
    params: &BridgeParams,
    state_root: &Path,
    zone_id: &str,
) -> Result<BridgeLease, BridgeError> {
    check_zone_id(zone_id)?;
    let note = ensure_bridge(params)?;
    let address = Ipam::new(state_root, params.subnet)
        .allocate(zone_id)
        .map_err(BridgeError::Lease)?;
    let lease = BridgeLease {
        zone_id: zone_id.to_string(),
        netns: netns_path(zone_id),
        address: IpCidr {
            addr: address.into(),
            prefix: params.subnet.prefix(),
        },
        gateway: params.subnet.gateway().into(),
        host_veth: host_veth_name(zone_id),
        note,
    };
    let mut done = Done::default();
    match attach_steps(params, &lease, address, &mut done) {
        Ok(()) => {
            tracing::debug!(address = %lease.address, "attached");
            Ok(lease)
        }
        Err(e) => {
            undo(params, state_root, &lease, &done);
            Err(e)
        }
    }
}

/// [`release`] with explicit parameters. Every step is tried; the first failure is returned.
#[tracing::instrument(skip_all, fields(zone = %zone_id))]
pub fn release_with(
    params: &BridgeParams,
    state_root: &Path,
    zone_id: &str,
) -> Result<(), BridgeError> {
    check_zone_id(zone_id)?;
    let veth = delete_veth(&host_veth_name(zone_id));
    let netns = namespace::remove(&netns_path(zone_id));
    let lease = Ipam::new(state_root, params.subnet)
        .release(zone_id)
        .map(drop)
        .map_err(BridgeError::ReleaseLease);
    veth.and(netns).and(lease)
}

/// `/run/netns/zone-<id>`.
pub fn netns_path(zone_id: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(netns_name(zone_id))
}

/// `zone-<id>`, the name `ip netns` knows the namespace by.
pub fn netns_name(zone_id: &str) -> String {
    format!("zone-{zone_id}")
}

/// `zv<id>` for ids of up to 13 characters (zonectl's ids have 12), else `zv` and 13 hex
/// digits of a hash of the id, so that two long ids sharing a prefix never share a veth.
pub fn host_veth_name(zone_id: &str) -> String {
    if zone_id.len() <= VETH_ID_MAX {
        return format!("zv{zone_id}");
    }
    // FNV-1a, 64 bits: stable across builds and platforms; the ids are not hostile.
    let hash = zone_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("zv{:013x}", hash >> 12)
}

fn check_zone_id(zone_id: &str) -> Result<(), BridgeError> {
    let ok = !zone_id.is_empty()
        && zone_id.len() <= ZONE_ID_MAX
        && !zone_id.starts_with(['-', '.'])
        && zone_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(BridgeError::ZoneId(zone_id.to_string()))
    }
}

/// What [`attach_steps`] got done, so that a failure undoes exactly that.
#[derive(Debug, Default)]
struct Done {
    netns: bool,
    veth: bool,
}

fn attach_steps(
    params: &BridgeParams,
    lease: &BridgeLease,
    address: Ipv4Addr,
    done: &mut Done,
) -> Result<(), BridgeError> {
    namespace::create(&lease.netns, &netns_name(&lease.zone_id))?;
    done.netns = true;
    create_veth(&params.bridge, &lease.host_veth, &lease.netns)?;
    done.veth = true;
    configure_zone_side(&lease.netns, address, params.subnet)
}

fn undo(params: &BridgeParams, state_root: &Path, lease: &BridgeLease, done: &Done) {
    let zone = &lease.zone_id;
    if done.veth {
        if let Err(e) = delete_veth(&lease.host_veth) {
            tracing::warn!(zone = %zone, error = %e, "undoing attach: deleting the veth");
        }
    }
    if done.netns {
        if let Err(e) = namespace::remove(&lease.netns) {
            tracing::warn!(zone = %zone, error = %e, "undoing attach: removing the namespace");
        }
    }
    if let Err(e) = Ipam::new(state_root, params.subnet).release(zone) {
        tracing::warn!(zone = %zone, error = %e, "undoing attach: releasing the lease");
    }
}

/// Runs `step` with an rtnetlink handle on a fresh thread, inside `netns` if given.
fn netlink<T, F, Fut>(netns: Option<&Path>, step: F) -> Result<T, BridgeError>
where
    T: Send,
    F: FnOnce(Handle) -> Fut + Send,
    Fut: Future<Output = Result<T, BridgeError>>,
{
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                if let Some(path) = netns {
                    let enter = || -> io::Result<()> {
                        let file = File::open(path)?;
                        Ok(setns(&file, CloneFlags::CLONE_NEWNET)?)
                    };
                    enter().map_err(|e| BridgeError::EnterNetns(path.to_path_buf(), e))?;
                }
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()
                    .map_err(BridgeError::Runtime)?;
                runtime.block_on(async move {
                    let (connection, handle, _) =
                        rtnetlink::new_connection().map_err(BridgeError::NetlinkSocket)?;
                    let connection = tokio::spawn(connection);
                    let result = step(handle).await;
                    connection.abort();
                    result
                })
            })
            .join()
            .map_err(|_| BridgeError::ThreadPanicked)?
    })
}

fn is_errno(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -errno)
}

async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>, BridgeError> {
    match handle
        .link()
        .get()
        .match_name(name)
        .execute()
        .try_next()
        .await
    {
        Ok(link) => Ok(link.map(|l| l.header.index)),
        Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
        Err(e) => Err(BridgeError::LinkLookup(name.to_string(), e.into())),
    }
}

/// Creates the bridge if missing, adds the gateway address, brings it up; then the host-wide
/// routing set-up if asked for. Returns a note for the operator.
fn ensure_bridge(params: &BridgeParams) -> Result<Option<String>, BridgeError> {
    let bridge = params.bridge.as_str();
    let gateway = IpCidr {
        addr: params.subnet.gateway().into(),
        prefix: params.subnet.prefix(),
    };
    netlink(None, |handle| async move {
        let index = match link_index(&handle, bridge).await? {
            Some(index) => index,
            None => {
                match handle
                    .link()
                    .add(LinkBridge::new(bridge).build())
                    .execute()
                    .await
                {
                    // Another zonectl may have created it meanwhile.
                    Err(e) if !is_errno(&e, libc::EEXIST) => {
                        return Err(BridgeError::CreateBridge(bridge.to_string(), e.into()))
                    }
                    _ => {}
                }
                link_index(&handle, bridge)
                    .await?
                    .ok_or_else(|| BridgeError::LinkVanished(bridge.to_string()))?
            }
        };
        match handle
            .address()
            .add(index, gateway.addr, gateway.prefix)
            .execute()
            .await
        {
            Err(e) if !is_errno(&e, libc::EEXIST) => {
                return Err(BridgeError::BridgeAddress {
                    bridge: bridge.to_string(),
                    address: gateway,
                    source: e.into(),
                })
            }
            _ => {}
        }
        handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| BridgeError::BridgeUp(bridge.to_string(), e.into()))
    })?;
    if !params.host_routing {
        return Ok(None);
    }
    host::enable_forwarding().map_err(BridgeError::Forwarding)?;
    Ok(host::ensure_masquerade(bridge, params.subnet))
}

/// Creates the veth pair with its zone end born inside the namespace as `eth0` (so no
/// temporary name on the host), the host end a port of the bridge, up.
fn create_veth(bridge: &str, veth: &str, netns: &Path) -> Result<(), BridgeError> {
    let ns = File::open(netns).map_err(|e| BridgeError::EnterNetns(netns.to_path_buf(), e))?;
    let ns_fd = ns.as_raw_fd();
    netlink(None, |handle| async move {
        let bridge_index = link_index(&handle, bridge)
            .await?
            .ok_or_else(|| BridgeError::LinkVanished(bridge.to_string()))?;
        let peer = LinkUnspec::new_with_name(ZONE_IFNAME)
            .setns_by_fd(ns_fd)
            .build();
        let message = LinkVeth::new(veth, ZONE_IFNAME)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .controller(bridge_index)
            .up()
            .build();
        handle
            .link()
            .add(message)
            .execute()
            .await
            .map_err(|source| BridgeError::CreateVeth {
                veth: veth.to_string(),
                bridge: bridge.to_string(),
                source: source.into(),
            })
    })
}

/// Inside the namespace: `lo` up, the address on `eth0`, `eth0` up, default route.
fn configure_zone_side(
    netns: &Path,
    address: Ipv4Addr,
    subnet: Ipv4Subnet,
) -> Result<(), BridgeError> {
    netlink(Some(netns), |handle| async move {
        let lo = link_index(&handle, "lo")
            .await?
            .ok_or_else(|| BridgeError::LinkVanished("lo".to_string()))?;
        handle
            .link()
            .set(LinkUnspec::new_with_index(lo).up().build())
            .execute()
            .await
            .map_err(|e| BridgeError::LoopbackUp(e.into()))?;
        let eth0 = link_index(&handle, ZONE_IFNAME)
            .await?
            .ok_or_else(|| BridgeError::LinkVanished(ZONE_IFNAME.to_string()))?;
        let cidr = IpCidr {
            addr: address.into(),
            prefix: subnet.prefix(),
        };
        handle
            .address()
            .add(eth0, cidr.addr, cidr.prefix)
            .execute()
            .await
            .map_err(|e| BridgeError::ZoneAddress(cidr, e.into()))?;
        handle
            .link()
            .set(LinkUnspec::new_with_index(eth0).up().build())
            .execute()
            .await
            .map_err(|e| BridgeError::ZoneLinkUp(e.into()))?;
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(subnet.gateway())
            .output_interface(eth0)
            .build();
        handle
            .route()
            .add(route)
            .execute()
            .await
            .map_err(|e| BridgeError::DefaultRoute(subnet.gateway(), e.into()))
    })
}

/// Deletes the host veth (its peer goes with it); a veth already gone is fine.
fn delete_veth(veth: &str) -> Result<(), BridgeError> {
    netlink(None, |handle| async move {
        let Some(index) = link_index(&handle, veth).await? else {
            return Ok(());
        };
        match handle.link().del(index).execute().await {
            Err(e) if !is_errno(&e, libc::ENODEV) => {
                Err(BridgeError::DeleteVeth(veth.to_string(), e.into()))
            }
            _ => Ok(()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_host_veth_name_short_id_verbatim() {
        assert_eq!(host_veth_name("0123456789ab"), "zv0123456789ab");
        assert_eq!(host_veth_name("0123456789abc"), "zv0123456789abc");
    }

    #[test]
    fn test_host_veth_name_long_id_hashed_fits_ifnamsiz() {
        let a = host_veth_name("a-rather-long-zone-name-1");
        let b = host_veth_name("a-rather-long-zone-name-2");
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("zv"));
        assert_ne!(a, b);
        assert_eq!(a, host_veth_name("a-rather-long-zone-name-1"));
    }

    #[test]
    fn test_check_zone_id_bad_ids_refused() {
        for bad in [
            "",
            "../x",
            "a/b",
            ".hidden",
            "-flag",
            "a b",
            &"x".repeat(65),
        ] {
            assert!(
                matches!(check_zone_id(bad), Err(BridgeError::ZoneId(_))),
                "{bad:?}"
            );
        }
        for good in ["0123456789ab", "web_1", "db.2", "A-b"] {
            assert!(check_zone_id(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn test_default_params_zones0_on_10_213() {
        let params = BridgeParams::default();
        assert_eq!(params.bridge, "zones0");
        assert_eq!(params.subnet.gateway(), Ipv4Addr::new(10, 213, 0, 1));
        assert_eq!(params.subnet.prefix(), 16);
        assert_eq!(netns_path("abc"), Path::new("/run/netns/zone-abc"));
    }
}
