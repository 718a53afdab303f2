//! The built-in bridge network on this machine's kernel: real bridge, veths and namespaces.
//! Needs root (as CI runs). Every test uses a bridge and subnet of its own (named after the
//! test process) and a temporary state root, and removes what it made, even on failure.

// Test helpers outside #[test] fns: panicking on failure is the point.
#![allow(clippy::unwrap_used)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sched::{setns, CloneFlags};
use zone_net::bridge::{self, BridgeError, BridgeParams};
use zone_net::ipam::{leases_dir, Ipv4Subnet};

/// A bridge of the test's own, removed with the zones attached to it on drop.
struct TestNet {
    params: BridgeParams,
    state_root: tempfile::TempDir,
    tag: char,
    zones: Vec<String>,
}

impl TestNet {
    /// `tag` (a letter) tells the tests of this process apart.
    fn new(tag: char) -> Self {
        require_root();
        let pid = std::process::id();
        let n = tag as u32 - 'a' as u32;
        let subnet: Ipv4Subnet = format!("10.{}.{}.0/24", 240 + n, pid % 256)
            .parse()
            .expect("test subnet");
        TestNet {
            params: BridgeParams {
                bridge: format!("ztb{}{tag}", pid % 1000),
                subnet,
                host_routing: false,
            },
            state_root: tempfile::tempdir().expect("temporary state root"),
            tag,
            zones: Vec::new(),
        }
    }

    /// A zone id unique to this process and test, released when the test ends.
    fn zone_id(&mut self, n: u32) -> String {
        let id = format!("t{}{}{n}", std::process::id() % 1000, self.tag);
        self.zones.push(id.clone());
        id
    }

    fn root(&self) -> &Path {
        self.state_root.path()
    }

    fn attach(&self, zone: &str) -> Result<bridge::BridgeLease, BridgeError> {
        bridge::attach_with(&self.params, self.root(), zone)
    }

    fn release(&self, zone: &str) -> Result<(), BridgeError> {
        bridge::release_with(&self.params, self.root(), zone)
    }

    fn lease_files(&self) -> Vec<String> {
        match std::fs::read_dir(leases_dir(self.root())) {
            Ok(entries) => entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|name| !name.starts_with('.'))
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for zone in &self.zones {
            let _ = bridge::release_with(&self.params, self.state_root.path(), zone);
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.params.bridge])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the bridge tests create bridges, veths and namespaces: run them as root"
    );
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

fn mounted_at(path: &Path) -> bool {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let path = path.to_str().unwrap();
    mountinfo
        .lines()
        .any(|line| line.split(' ').nth(4) == Some(path))
}

/// Runs `f` on a thread inside the namespace at `netns`.
fn in_netns<T: Send>(netns: &Path, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let ns = File::open(netns).unwrap();
                setns(&ns, CloneFlags::CLONE_NEWNET).unwrap();
                f()
            })
            .join()
            .unwrap()
    })
}

/// Listens on `addr` inside `netns` (or on the host), answers one connection's "ping" with
/// "pong from NAME"; returns once the listener is bound.
fn serve_once(
    netns: Option<PathBuf>,
    addr: SocketAddr,
    name: &'static str,
) -> std::thread::JoinHandle<()> {
    let (bound_tx, bound_rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        if let Some(netns) = netns {
            setns(File::open(netns).unwrap(), CloneFlags::CLONE_NEWNET).unwrap();
        }
        let listener = TcpListener::bind(addr).unwrap();
        bound_tx.send(()).unwrap();
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4];
        conn.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        conn.write_all(format!("pong from {name}").as_bytes())
            .unwrap();
    });
    bound_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("listener bound");
    server
}

fn ping_pong(addr: SocketAddr) -> String {
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.write_all(b"ping").unwrap();
    conn.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn test_attach_two_zones_reach_each_other_and_gateway() {
    let mut net = TestNet::new('a');
    let (a, b) = (net.zone_id(1), net.zone_id(2));

    let lease_a = net.attach(&a).unwrap();
    let lease_b = net.attach(&b).unwrap();

    let subnet = net.params.subnet;
    let gateway = IpAddr::from(subnet.gateway());
    assert_ne!(lease_a.address, lease_b.address);
    assert_eq!(
        lease_a.address.to_string(),
        format!("{}/24", Ipv4Addr::from(u32::from(subnet.network()) + 2))
    );
    assert_eq!(
        lease_b.address.to_string(),
        format!("{}/24", Ipv4Addr::from(u32::from(subnet.network()) + 3))
    );
    assert_eq!(lease_a.gateway, gateway);
    assert_eq!(
        lease_a.netns,
        Path::new("/run/netns").join(format!("zone-{a}"))
    );
    assert!(link_exists(&lease_a.host_veth) && link_exists(&lease_b.host_veth));
    assert!(
        Path::new("/sys/class/net")
            .join(&lease_a.host_veth)
            .join("master")
            .canonicalize()
            .unwrap()
            .ends_with(&net.params.bridge),
        "host veth is a port of the bridge"
    );
    assert_eq!(lease_a.note, None, "host routing is off in tests");

    // The operator's view: `ip netns exec zone-<id>` finds the namespace and its eth0.
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &format!("zone-{a}"),
            "ip",
            "-4",
            "-o",
            "addr",
            "show",
            "dev",
            "eth0",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&lease_a.address.to_string()));
    let route = in_netns(&lease_a.netns, || {
        Command::new("ip")
            .args(["-4", "route", "show", "default"])
            .output()
            .unwrap()
    });
    assert!(
        String::from_utf8_lossy(&route.stdout).contains(&format!("default via {gateway} dev eth0"))
    );

    // Zone b reaches a TCP listener in zone a, and a listener on the host at the gateway.
    let a_addr = SocketAddr::new(lease_a.address.addr, 7000);
    let server = serve_once(Some(lease_a.netns.clone()), a_addr, "a");
    let answer = in_netns(&lease_b.netns, || ping_pong(a_addr));
    server.join().unwrap();
    assert_eq!(answer, "pong from a");

    let gw_addr = SocketAddr::new(gateway, 7001);
    let server = serve_once(None, gw_addr, "host");
    let answer = in_netns(&lease_b.netns, || ping_pong(gw_addr));
    server.join().unwrap();
    assert_eq!(answer, "pong from host");

    // And zone a's loopback is up.
    let lo_addr: SocketAddr = "127.0.0.1:7002".parse().unwrap();
    let server = serve_once(Some(lease_a.netns.clone()), lo_addr, "a-lo");
    let answer = in_netns(&lease_a.netns, || ping_pong(lo_addr));
    server.join().unwrap();
    assert_eq!(answer, "pong from a-lo");
}

#[test]
fn test_release_leaves_nothing_and_twice_ok() {
    let mut net = TestNet::new('b');
    let zone = net.zone_id(1);
    let lease = net.attach(&zone).unwrap();
    assert!(link_exists(&lease.host_veth));
    assert!(mounted_at(&lease.netns));
    assert_eq!(net.lease_files().len(), 1);

    net.release(&zone).unwrap();

    assert!(!link_exists(&lease.host_veth), "host veth left behind");
    assert!(!mounted_at(&lease.netns), "namespace still mounted");
    assert!(!lease.netns.exists(), "namespace file left behind");
    assert!(
        net.lease_files().is_empty(),
        "lease left behind: {:?}",
        net.lease_files()
    );
    assert!(link_exists(&net.params.bridge), "the bridge stays");

    net.release(&zone).unwrap();

    // The address is free again.
    let again = net.attach(&zone).unwrap();
    assert_eq!(again.address, lease.address);
}

#[test]
fn test_attach_namespace_exists_fails_and_leaves_nothing() {
    let mut net = TestNet::new('c');
    let zone = net.zone_id(1);
    let netns = bridge::netns_path(&zone);
    std::fs::create_dir_all("/run/netns").unwrap();
    std::fs::write(&netns, b"").unwrap();

    let err = net.attach(&zone).unwrap_err();

    let exists = netns.exists();
    let _ = std::fs::remove_file(&netns);
    assert!(matches!(err, BridgeError::NetnsExists { .. }), "{err}");
    assert!(err.to_string().contains(&format!("zone-{zone}")), "{err}");
    assert!(exists, "someone else's namespace file must stay");
    assert!(net.lease_files().is_empty(), "lease left behind");
    assert!(
        !link_exists(&bridge::host_veth_name(&zone)),
        "veth left behind"
    );
}

#[test]
fn test_attach_veth_name_taken_fails_and_undoes_namespace_and_lease() {
    let mut net = TestNet::new('d');
    let zone = net.zone_id(1);
    let veth = bridge::host_veth_name(&zone);
    let added = Command::new("ip")
        .args(["link", "add", &veth, "type", "bridge"])
        .status()
        .unwrap();
    assert!(added.success());

    let err = net.attach(&zone).unwrap_err();

    let dummy_stays = link_exists(&veth);
    let _ = Command::new("ip").args(["link", "del", &veth]).status();
    assert!(matches!(err, BridgeError::CreateVeth { .. }), "{err}");
    assert!(dummy_stays, "someone else's link must stay");
    let netns = bridge::netns_path(&zone);
    assert!(
        !mounted_at(&netns) && !netns.exists(),
        "namespace left behind"
    );
    assert!(net.lease_files().is_empty(), "lease left behind");
}

#[test]
fn test_attach_same_zone_twice_refused_first_intact() {
    let mut net = TestNet::new('e');
    let zone = net.zone_id(1);
    let lease = net.attach(&zone).unwrap();

    let err = net.attach(&zone).unwrap_err();

    assert!(matches!(err, BridgeError::Lease(_)), "{err}");
    assert!(
        mounted_at(&lease.netns),
        "the first attach's namespace must stay"
    );
    assert!(link_exists(&lease.host_veth));
    assert_eq!(net.lease_files().len(), 1);
}

#[test]
fn test_attach_bad_zone_id_refused_before_anything() {
    let net = TestNet::new('f');
    let err = net.attach("../etc").unwrap_err();
    assert!(matches!(err, BridgeError::ZoneId(_)), "{err}");
    assert!(!link_exists(&net.params.bridge));
}

#[test]
fn test_attach_host_routing_in_sandbox_forwarding_and_nat_or_note() {
    // The host-wide part (ip_forward, nftables) is per network namespace: run the whole
    // attach from a thread in a throwaway namespace so the machine's settings stay as they are.
    let mut net = TestNet::new('g');
    net.params.host_routing = true;
    let zone = net.zone_id(1);
    let forwarding_before = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                nix::sched::unshare(CloneFlags::CLONE_NEWNET).unwrap();
                let lease = net.attach(&zone).unwrap();
                let forwarding = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
                let nft = Command::new("nft")
                    .args(["list", "table", "ip", "zones"])
                    .output();
                net.release(&zone).unwrap();

                assert_eq!(forwarding.trim(), "1");
                match nft {
                    Ok(out) if out.status.success() => {
                        let table = String::from_utf8_lossy(&out.stdout).into_owned();
                        assert!(table.contains("masquerade"), "{table}");
                        assert_eq!(lease.note, None);
                    }
                    _ => assert_eq!(
                        lease.note.as_deref(),
                        Some(
                            format!(
                                "zones on {} can reach this host but not beyond: nft not found",
                                net.params.bridge
                            )
                            .as_str()
                        ),
                        "without nft the caller gets the note"
                    ),
                }
            })
            .join()
            .unwrap();
    });
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        forwarding_before,
        "the test's own namespace was not touched"
    );
}

#[tokio::test]
async fn test_publish_host_port_reaches_zone_on_bridge() {
    let mut net = TestNet::new('h');
    let zone = net.zone_id(1);
    let lease = net.attach(&zone).unwrap();
    let zone_addr = SocketAddr::new(lease.address.addr, 8080);
    let server = serve_once(Some(lease.netns.clone()), zone_addr, "zone");
    let mapping = zone_net::ports::PortMapping {
        host_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        host_port: 0,
        zone_port: 8080,
    };

    let publisher = zone_net::ports::publish(&[mapping], lease.address.addr)
        .await
        .unwrap();

    let host_addr = publisher.local_addrs()[0];
    let answer = tokio::task::spawn_blocking(move || ping_pong(host_addr))
        .await
        .unwrap();
    server.join().unwrap();
    assert_eq!(answer, "pong from zone");
}
