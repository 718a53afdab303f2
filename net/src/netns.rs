//! A zone on a network namespace prepared by CNI or an operator ("tcfilter" networking, as
//! Kata Containers calls it).
//!
//! The namespace holds one veth (or another Ethernet-like interface: macvlan, ipvlan) with the
//! pod's addresses and routes. [`attach`] creates a tap next to it and joins the two with tc:
//! every frame arriving at the veth leaves through the tap (to the zone's virtio-net device,
//! which the VMM backs with the tap) and every frame the zone sends leaves through the veth.
//! The zone's NIC takes the veth's MAC and the agent inside configures the veth's addresses
//! and routes on it ([`NetnsTap::guest`]), so to the pod network the zone *is* the veth.
//!
//! All the work runs on a short-lived helper thread that enters the namespace (`setns(2)`),
//! so the rest of the process stays where it is; the netlink socket and `/dev/net/tun` are
//! opened on that thread and therefore act in the namespace.

pub mod tap;

mod inspect;
mod tc;

use std::future::Future;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sched::{setns, CloneFlags};
use rtnetlink::{Handle, LinkUnspec};

use crate::config::{GuestInterface, GuestNetwork};
use inspect::{Link, Selection};

pub use tc::FILTER_PRIORITY;

/// The name of the tap [`attach`] creates (one per namespace).
pub const TAP_NAME: &str = "tap0_zone";

/// A tap on the pod network, ready to hand to `zone-vmm`.
#[derive(Debug)]
pub struct NetnsTap {
    /// The tap, open with `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`; passed to zone-vmm as
    /// `--net fd=N,mac=M,mtu=U` (the VMM sets `TUNSETVNETHDRSZ`/`TUNSETOFFLOAD` itself; until
    /// then every frame carries a [`tap::DEFAULT_VNET_HEADER_SIZE`]-byte header). Not
    /// persistent: the tap disappears with the last descriptor, and its tc filter with it.
    pub tap: OwnedFd,
    pub tap_name: String,
    pub veth_name: String,
    /// `interfaces[0]`: the veth's MAC, MTU and global-scope addresses; `routes`: the main
    /// table's routes through the veth that the addresses do not imply; `dns` empty.
    pub guest: GuestNetwork,
}

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("open network namespace {}", .path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a network namespace", .path.display())]
    NotNetns {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("enter network namespace {}", .path.display())]
    Enter {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("start a thread for network namespace {}", .path.display())]
    Thread {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the thread working in network namespace {} panicked", .path.display())]
    ThreadPanicked { path: PathBuf },
    #[error("open a netlink socket in network namespace {}", .path.display())]
    Netlink {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("list the interfaces of network namespace {}", .path.display())]
    ListLinks {
        path: PathBuf,
        #[source]
        source: Box<rtnetlink::Error>,
    },
    #[error(
        "network namespace {} has no veth-like interface (it has: {}); has CNI set it up?",
        .path.display(), .found.join(", ")
    )]
    NoInterface { path: PathBuf, found: Vec<String> },
    #[error(
        "network namespace {} has several veth-like interfaces ({}); a zone takes exactly one",
        .path.display(), .found.join(", ")
    )]
    SeveralInterfaces { path: PathBuf, found: Vec<String> },
    #[error("interface {interface} in network namespace {} has no MAC address", .path.display())]
    NoMac { path: PathBuf, interface: String },
    #[error("read the addresses of {interface} in network namespace {}", .path.display())]
    ReadAddresses {
        path: PathBuf,
        interface: String,
        #[source]
        source: Box<rtnetlink::Error>,
    },
    #[error(
        "interface {interface} in network namespace {} has no global address; has CNI configured it?",
        .path.display()
    )]
    NoAddress { path: PathBuf, interface: String },
    #[error("read the routes of network namespace {}", .path.display())]
    ReadRoutes {
        path: PathBuf,
        #[source]
        source: Box<rtnetlink::Error>,
    },
    #[error(
        "tap {tap} in network namespace {} is in use: is the namespace attached to a running zone?",
        .path.display()
    )]
    TapBusy { path: PathBuf, tap: String },
    #[error("create tap {tap} in network namespace {}", .path.display())]
    CreateTap {
        path: PathBuf,
        tap: String,
        #[source]
        source: io::Error,
    },
    #[error("tap {tap} vanished from network namespace {} right after its creation", .path.display())]
    TapMissing { path: PathBuf, tap: String },
    #[error("set MTU {mtu} and bring up tap {tap} in network namespace {}", .path.display())]
    ConfigureTap {
        path: PathBuf,
        tap: String,
        mtu: u32,
        #[source]
        source: Box<rtnetlink::Error>,
    },
    #[error("redirect {from} to {to} with tc in network namespace {}", .path.display())]
    Redirect {
        path: PathBuf,
        from: String,
        to: String,
        #[source]
        source: Box<rtnetlink::Error>,
    },
    #[error("remove {what} in network namespace {}", .path.display())]
    Remove {
        path: PathBuf,
        what: String,
        #[source]
        source: Box<rtnetlink::Error>,
    },
}

/// Enters `netns` (a path such as `/var/run/netns/cni-1234` or `/proc/PID/ns/net`) on a helper
/// thread, finds the one veth-like interface, reads it, creates the tap [`TAP_NAME`] with the
/// veth's MTU, brings it up and adds the two redirects, replacing a stale redirect of an earlier
/// attach. On failure it undoes what it did.
///
/// Blocking (for a few milliseconds): async callers may prefer `spawn_blocking`.
pub fn attach(netns: &Path) -> Result<NetnsTap, NetnsError> {
    in_netns(netns, attach_inside)
}

/// Removes what [`attach`] added that outlives the tap: our filter on the veth's ingress and
/// the veth's `ingress` qdisc when no other filter is left on it, and the tap if it is still
/// there. A namespace that no longer exists, or was never attached, is fine.
pub fn detach(netns: &Path) -> Result<(), NetnsError> {
    match in_netns(netns, detach_inside) {
        Err(NetnsError::Open { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// The namespace the helper thread works in.
struct Ns {
    path: PathBuf,
    handle: Handle,
}

/// Runs `work` on a new thread inside `netns`, with a current-thread tokio runtime and a
/// netlink connection opened there.
fn in_netns<T, F, Fut>(netns: &Path, work: F) -> Result<T, NetnsError>
where
    T: Send + 'static,
    F: FnOnce(Ns) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, NetnsError>>,
{
    let path = netns.to_path_buf();
    let thread_path = path.clone();
    let thread = std::thread::Builder::new()
        .name("zone-netns".into())
        .spawn(move || -> Result<T, NetnsError> {
            let path = thread_path;
            enter(&path)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .map_err(|source| NetnsError::Netlink {
                    path: path.clone(),
                    source,
                })?;
            runtime.block_on(async move {
                let (connection, handle, _) =
                    rtnetlink::new_connection().map_err(|source| NetnsError::Netlink {
                        path: path.clone(),
                        source,
                    })?;
                let connection = tokio::spawn(connection);
                let result = work(Ns { path, handle }).await;
                connection.abort();
                result
            })
        })
        .map_err(|source| NetnsError::Thread {
            path: path.clone(),
            source,
        })?;
    thread
        .join()
        .map_err(|_| NetnsError::ThreadPanicked { path })?
}

/// Moves the calling thread into the network namespace at `path`.
fn enter(path: &Path) -> Result<(), NetnsError> {
    let file = std::fs::File::open(path).map_err(|source| NetnsError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    setns(file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|source| match source {
        nix::Error::EINVAL => NetnsError::NotNetns {
            path: path.to_path_buf(),
            source,
        },
        source => NetnsError::Enter {
            path: path.to_path_buf(),
            source,
        },
    })
}

async fn attach_inside(ns: Ns) -> Result<NetnsTap, NetnsError> {
    let links = inspect::links(&ns.handle)
        .await
        .map_err(|source| NetnsError::ListLinks {
            path: ns.path.clone(),
            source: source.into(),
        })?;
    let veth = inspect::select(&links, TAP_NAME).map_err(|s| match s {
        Selection::None(found) => NetnsError::NoInterface {
            path: ns.path.clone(),
            found,
        },
        Selection::Several(found) => NetnsError::SeveralInterfaces {
            path: ns.path.clone(),
            found,
        },
    })?;
    let mac = veth.mac.ok_or_else(|| NetnsError::NoMac {
        path: ns.path.clone(),
        interface: veth.name.clone(),
    })?;
    let addresses = inspect::global_addresses(&ns.handle, veth.index)
        .await
        .map_err(|source| NetnsError::ReadAddresses {
            path: ns.path.clone(),
            interface: veth.name.clone(),
            source: source.into(),
        })?;
    if addresses.is_empty() {
        return Err(NetnsError::NoAddress {
            path: ns.path.clone(),
            interface: veth.name.clone(),
        });
    }
    let routes =
        inspect::main_routes(&ns.handle)
            .await
            .map_err(|source| NetnsError::ReadRoutes {
                path: ns.path.clone(),
                source: source.into(),
            })?;
    let routes = inspect::guest_routes(&routes, veth.index, mac);

    // The tap first: if a running zone holds it, this fails with EBUSY before we touch that
    // zone's redirect.
    let tap = tap::open(TAP_NAME).map_err(|source| {
        if source.raw_os_error() == Some(libc::EBUSY) {
            NetnsError::TapBusy {
                path: ns.path.clone(),
                tap: TAP_NAME.into(),
            }
        } else {
            NetnsError::CreateTap {
                path: ns.path.clone(),
                tap: TAP_NAME.into(),
                source,
            }
        }
    })?;
    let mut undo = Undo::default();
    if let Err(e) = plumb(&ns, &veth, &mut undo).await {
        undo.run(&ns).await;
        // Dropping `tap` removes the tap, its qdisc and its filter.
        return Err(e);
    }
    tracing::info!(
        netns = %ns.path.display(),
        veth = %veth.name,
        tap = TAP_NAME,
        %mac,
        "zone tap attached"
    );
    Ok(NetnsTap {
        tap,
        tap_name: TAP_NAME.into(),
        veth_name: veth.name.clone(),
        guest: GuestNetwork {
            interfaces: vec![GuestInterface {
                mac,
                mtu: veth.mtu,
                addresses,
            }],
            routes,
            dns: Default::default(),
        },
    })
}

/// What [`plumb`] changed on the veth, for undoing it.
#[derive(Default)]
struct Undo {
    veth: Option<u32>,
    veth_qdisc_created: bool,
}

impl Undo {
    /// Best effort: the error that made us undo is the one to report.
    async fn run(self, ns: &Ns) {
        let Some(veth) = self.veth else { return };
        if let Err(e) = tc::delete_redirect(&ns.handle, veth).await {
            tracing::warn!(netns = %ns.path.display(), error = %e, "undo: remove the veth redirect");
        }
        if self.veth_qdisc_created {
            if let Err(e) = tc::delete_ingress_qdisc(&ns.handle, veth).await {
                tracing::warn!(netns = %ns.path.display(), error = %e, "undo: remove the veth ingress qdisc");
            }
        }
    }
}

/// Configures the new tap and joins it to the veth.
async fn plumb(ns: &Ns, veth: &Link, undo: &mut Undo) -> Result<(), NetnsError> {
    let tap = inspect::link_by_name(&ns.handle, TAP_NAME)
        .await
        .ok()
        .flatten()
        .ok_or_else(|| NetnsError::TapMissing {
            path: ns.path.clone(),
            tap: TAP_NAME.into(),
        })?;
    // The namespace's own IPv6 stack has nothing to say to the zone: without this it would
    // send router solicitations and MLD reports down the tap. Best effort (IPv6 may be off).
    let sysctl = format!("/proc/sys/net/ipv6/conf/{TAP_NAME}/disable_ipv6");
    if let Err(e) = std::fs::write(&sysctl, "1") {
        tracing::debug!(path = sysctl, error = %e, "IPv6 not disabled on the tap");
    }
    ns.handle
        .link()
        .set(
            LinkUnspec::new_with_index(tap.index)
                .mtu(veth.mtu)
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(|source| NetnsError::ConfigureTap {
            path: ns.path.clone(),
            tap: TAP_NAME.into(),
            mtu: veth.mtu,
            source: source.into(),
        })?;
    let redirect_err = |from: &str, to: &str| {
        let path = ns.path.clone();
        let (from, to) = (from.to_string(), to.to_string());
        move |source: rtnetlink::Error| NetnsError::Redirect {
            path,
            from,
            to,
            source: source.into(),
        }
    };
    undo.veth = Some(veth.index);
    undo.veth_qdisc_created = tc::ensure_ingress_qdisc(&ns.handle, veth.index)
        .await
        .map_err(redirect_err(&veth.name, TAP_NAME))?;
    tc::redirect(&ns.handle, veth.index, tap.index)
        .await
        .map_err(redirect_err(&veth.name, TAP_NAME))?;
    tc::ensure_ingress_qdisc(&ns.handle, tap.index)
        .await
        .map_err(redirect_err(TAP_NAME, &veth.name))?;
    tc::redirect(&ns.handle, tap.index, veth.index)
        .await
        .map_err(redirect_err(TAP_NAME, &veth.name))?;
    Ok(())
}

async fn detach_inside(ns: Ns) -> Result<(), NetnsError> {
    let remove_err = |what: String| {
        let path = ns.path.clone();
        move |source: rtnetlink::Error| NetnsError::Remove {
            path,
            what,
            source: source.into(),
        }
    };
    if let Some(tap) = inspect::link_by_name(&ns.handle, TAP_NAME)
        .await
        .map_err(|source| NetnsError::ListLinks {
            path: ns.path.clone(),
            source: source.into(),
        })?
    {
        match ns.handle.link().del(tap.index).execute().await {
            Err(e) if tc::errno(&e) != Some(libc::ENODEV) => {
                return Err(remove_err(format!("tap {TAP_NAME}"))(e))
            }
            _ => {}
        }
    }
    let links = inspect::links(&ns.handle)
        .await
        .map_err(|source| NetnsError::ListLinks {
            path: ns.path.clone(),
            source: source.into(),
        })?;
    // Every interface, not only the one attach would pick today: CNI may have added or
    // removed one since.
    for link in links.iter().filter(|l| l.name != TAP_NAME) {
        let what = |s: &str| format!("{s} of {}", link.name);
        let filters = tc::ingress_filters(&ns.handle, link.index)
            .await
            .map_err(remove_err(what("the ingress filters")))?;
        if !filters.iter().any(|(prio, _)| *prio == FILTER_PRIORITY) {
            continue;
        }
        tc::delete_redirect(&ns.handle, link.index)
            .await
            .map_err(remove_err(what("the redirect")))?;
        let left = tc::ingress_filters(&ns.handle, link.index)
            .await
            .map_err(remove_err(what("the ingress filters")))?;
        if left.is_empty() {
            tc::delete_ingress_qdisc(&ns.handle, link.index)
                .await
                .map_err(remove_err(what("the ingress qdisc")))?;
        }
        tracing::info!(netns = %ns.path.display(), interface = %link.name, "zone redirect removed");
    }
    Ok(())
}
