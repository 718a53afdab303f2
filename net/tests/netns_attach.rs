//! `zone_net::netns::attach`/`detach` on CNI-like namespaces built with `ip`: namespace A holds
//! the pod's veth `eth0` (10.99.0.2/24, default route via 10.99.0.1), its peer `p0` sits in
//! namespace B (10.99.0.1/24) and plays the pod network. The tests run as root (they create
//! namespaces) and each uses its own namespace names, so they run in parallel.
//!
//! Seen here (Linux 6.18): a tap opened with IFF_VNET_HDR reports TUNGETVNETHDRSZ 10 and every
//! frame read from it starts with that 10-byte `virtio_net_hdr`; frames written to it must
//! start with one too.

// Test helpers outside #[test] functions panic on purpose.
#![allow(clippy::unwrap_used)]

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};
use zone_net::netns::{self, tap, NetnsError, TAP_NAME};
use zone_net::{GuestInterface, GuestRoute, MacAddr};

const VNET_HDR: usize = 10;
const ZONE_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);

// ---- namespaces and commands ----

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e} (the tests need iproute2's ip and tc)"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn succeeds(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A named network namespace, deleted on drop (also when the test fails).
struct Netns {
    name: String,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("zn-{tag}-{}", std::process::id());
        // A leftover of an earlier, killed run of this test.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run(&["ip", "netns", "add", &name]);
        Netns { name }
    }

    fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "-n", &self.name];
        all.extend_from_slice(args);
        run(&all)
    }

    fn tc(&self, args: &[&str]) -> String {
        let mut all = vec!["tc", "-n", &self.name];
        all.extend_from_slice(args);
        run(&all)
    }

    fn has_link(&self, name: &str) -> bool {
        succeeds(&["ip", "-n", &self.name, "link", "show", name])
    }

    fn mac(&self, link: &str) -> MacAddr {
        let out = self.ip(&["-o", "link", "show", link]);
        let mac = out
            .split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .unwrap_or_else(|| panic!("no MAC in {out:?}"));
        mac.parse().unwrap()
    }

    /// Adds veth `name` here with its peer `peer` in `other`.
    fn add_veth(&self, name: &str, peer: &str, other: &Netns) {
        self.ip(&[
            "link",
            "add",
            name,
            "type",
            "veth",
            "peer",
            "name",
            peer,
            "netns",
            &other.name,
        ]);
    }

    /// Asserts that no tap and no ingress qdisc are here (attach left nothing behind).
    fn assert_untouched(&self) {
        assert!(!self.has_link(TAP_NAME), "{TAP_NAME} left in {}", self.name);
        let qdiscs = self.tc(&["qdisc", "show"]);
        assert!(
            !qdiscs.contains("ingress"),
            "ingress qdisc left in {}: {qdiscs}",
            self.name
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// The pod namespace A with `eth0` (MTU 1400) 10.99.0.2/24 and a default route via
/// 10.99.0.1, and the network namespace B with the peer `p0` 10.99.0.1/24.
fn cni_like(tag: &str) -> (Netns, Netns) {
    let a = Netns::new(&format!("{tag}-a"));
    let b = Netns::new(&format!("{tag}-b"));
    a.add_veth("eth0", "p0", &b);
    a.ip(&["link", "set", "eth0", "mtu", "1400"]);
    b.ip(&["link", "set", "p0", "mtu", "1400"]);
    a.ip(&["addr", "add", "10.99.0.2/24", "dev", "eth0"]);
    a.ip(&["link", "set", "eth0", "up"]);
    a.ip(&["route", "add", "default", "via", "10.99.0.1"]);
    b.ip(&["addr", "add", "10.99.0.1/24", "dev", "p0"]);
    b.ip(&["link", "set", "p0", "up"]);
    (a, b)
}

/// Runs `f` on a thread inside `ns`: sockets it opens belong to that namespace.
fn in_netns<T: Send + 'static>(ns: &Netns, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = ns.path();
    std::thread::spawn(move || {
        let file = File::open(&path).unwrap();
        setns(file.as_fd(), CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

// ---- frames ----

fn ethertype(frame: &[u8]) -> u16 {
    u16::from_be_bytes([frame[12], frame[13]])
}

fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn arp_reply(zone_mac: MacAddr, peer_mac: [u8; 6]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&peer_mac);
    f.extend_from_slice(&zone_mac.0);
    f.extend_from_slice(&0x0806u16.to_be_bytes());
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]); // Ethernet, IPv4, reply
    f.extend_from_slice(&zone_mac.0);
    f.extend_from_slice(&ZONE_IP.octets());
    f.extend_from_slice(&peer_mac);
    f.extend_from_slice(&PEER_IP.octets());
    f
}

fn udp_frame(
    zone_mac: MacAddr,
    peer_mac: [u8; 6],
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&((20 + 8 + payload.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]); // DF, TTL 64, UDP
    ip.extend_from_slice(&ZONE_IP.octets());
    ip.extend_from_slice(&PEER_IP.octets());
    let sum = ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let mut f = Vec::new();
    f.extend_from_slice(&peer_mac);
    f.extend_from_slice(&zone_mac.0);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]); // no UDP checksum (allowed on IPv4)
    f.extend_from_slice(payload);
    f
}

fn summary(frame: &[u8]) -> String {
    if frame.len() < 14 {
        return format!("{} bytes", frame.len());
    }
    format!("ethertype {:#06x}, {} bytes", ethertype(frame), frame.len())
}

/// The tap as a non-blocking file.
fn tap_file(t: &netns::NetnsTap) -> File {
    let fd = t.tap.try_clone().unwrap();
    // SAFETY: F_GETFL/F_SETFL on a descriptor we own, with integer arguments only.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        assert!(flags >= 0);
        assert_eq!(
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK),
            0
        );
    }
    File::from(fd)
}

/// Reads frames (vnet header stripped) from the tap until `want` accepts one, for 5 s.
fn read_until(tap: &mut File, what: &str, want: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline {
        match tap.read(&mut buf) {
            Ok(n) => {
                assert!(n >= VNET_HDR, "short read {n} from the tap");
                let frame = &buf[VNET_HDR..n];
                if want(frame) {
                    return frame.to_vec();
                }
                seen.push(summary(frame));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("read the tap: {e}"),
        }
    }
    panic!("no {what} arrived on the tap in 5 s; it saw: {seen:?}");
}

fn write_frame(tap: &mut File, frame: &[u8]) {
    let mut out = vec![0u8; VNET_HDR];
    out.extend_from_slice(frame);
    assert_eq!(tap.write(&out).unwrap(), out.len());
}

/// Proves both redirects: B sends a UDP datagram to 10.99.0.2; its ARP request and then the
/// datagram must come out of the tap (A's own stack never sees them: the veth's ingress is
/// redirected, so only the tap can answer). The ARP reply and a UDP datagram written to the
/// tap must reach B: the datagram arrives at B's socket from 10.99.0.2.
fn assert_traffic_flows(t: &netns::NetnsTap, b: &Netns, zone_mac: MacAddr) {
    // B must ask for 10.99.0.2 again, even if an earlier round taught it the answer.
    b.ip(&["neigh", "flush", "dev", "p0"]);
    let peer = in_netns(b, || UdpSocket::bind((PEER_IP, 5555)).unwrap());
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut tap = tap_file(t);
    peer.send_to(b"to-zone", (ZONE_IP, 7777)).unwrap();

    let arp = read_until(&mut tap, "ARP request for 10.99.0.2 from B", |f| {
        f.len() >= 42 && ethertype(f) == 0x0806 && f[21] == 1 && f[38..42] == ZONE_IP.octets()
    });
    let peer_mac: [u8; 6] = arp[22..28].try_into().unwrap();
    write_frame(&mut tap, &arp_reply(zone_mac, peer_mac));

    let udp = read_until(&mut tap, "UDP datagram from B to 10.99.0.2:7777", |f| {
        f.len() >= 42
            && ethertype(f) == 0x0800
            && f[23] == 17
            && f[30..34] == ZONE_IP.octets()
            && f[36..38] == 7777u16.to_be_bytes()
    });
    assert_eq!(&udp[42..], b"to-zone");
    assert_eq!(
        udp[0..6],
        zone_mac.0,
        "B addressed the zone by the veth's MAC"
    );

    write_frame(
        &mut tap,
        &udp_frame(zone_mac, peer_mac, 7777, 5555, b"from-zone"),
    );
    let mut buf = [0u8; 64];
    let (n, from) = peer
        .recv_from(&mut buf)
        .expect("the datagram written to the tap did not reach B");
    assert_eq!(&buf[..n], b"from-zone");
    assert_eq!(from, SocketAddr::from((ZONE_IP, 7777)));
}

// ---- tests ----

#[test]
fn test_attach_cni_namespace_redirects_both_ways_and_detach_removes_everything() {
    let (a, b) = cni_like("flow");
    let veth_mac = a.mac("eth0");

    let t = netns::attach(&a.path()).expect("attach");

    assert_eq!(t.tap_name, TAP_NAME);
    assert_eq!(t.veth_name, "eth0");
    assert_eq!(
        t.guest.interfaces,
        vec![GuestInterface {
            mac: veth_mac,
            mtu: 1400,
            addresses: vec!["10.99.0.2/24".parse().unwrap()],
        }]
    );
    assert_eq!(
        t.guest.routes,
        vec![GuestRoute {
            destination: "0.0.0.0/0".parse().unwrap(),
            gateway: Some(PEER_IP.into()),
            interface: Some(veth_mac),
            metric: 0,
        }]
    );
    assert!(t.guest.dns.nameservers.is_empty());
    assert_eq!(tap::vnet_header_size(t.tap.as_fd()).unwrap(), VNET_HDR);
    let tap_link = a.ip(&["-o", "link", "show", TAP_NAME]);
    assert!(tap_link.contains("mtu 1400"), "{tap_link}");
    assert!(tap_link.contains(",UP"), "{tap_link}");
    let filters = a.tc(&["filter", "show", "dev", "eth0", "ingress"]);
    assert!(filters.contains("protocol all"), "{filters}");
    assert!(
        filters.contains("Egress Redirect to device tap0_zone"),
        "{filters}"
    );
    let filters = a.tc(&["filter", "show", "dev", TAP_NAME, "ingress"]);
    assert!(
        filters.contains("Egress Redirect to device eth0"),
        "{filters}"
    );

    assert_traffic_flows(&t, &b, veth_mac);

    drop(t);
    assert!(!a.has_link(TAP_NAME), "the tap outlived its descriptor");
    netns::detach(&a.path()).expect("detach");
    assert_eq!(a.tc(&["filter", "show", "dev", "eth0", "ingress"]), "");
    a.assert_untouched();
    netns::detach(&a.path()).expect("detach twice");

    let path = a.path();
    drop(a);
    assert!(!path.exists());
    netns::detach(&path).expect("detach of a deleted namespace");
}

#[test]
fn test_attach_again_replaces_stale_redirect_but_refuses_a_tap_in_use() {
    let (a, b) = cni_like("again");
    let veth_mac = a.mac("eth0");
    let first = netns::attach(&a.path()).expect("first attach");

    let err = netns::attach(&a.path()).expect_err("second attach while the tap is held");
    assert!(matches!(err, NetnsError::TapBusy { .. }), "{err:?}");
    assert!(err.to_string().contains(&a.name), "{err}");
    // The running zone keeps its redirect.
    assert_traffic_flows(&first, &b, veth_mac);

    // The "VMM" dies: the tap goes, the veth's redirect stays behind, stale.
    drop(first);
    assert!(!a.has_link(TAP_NAME));
    assert!(a
        .tc(&["filter", "show", "dev", "eth0", "ingress"])
        .contains("mirred"));

    let second = netns::attach(&a.path()).expect("attach over a stale redirect");
    let filters = a.tc(&["filter", "show", "dev", "eth0", "ingress"]);
    assert_eq!(
        filters.matches("action order 1: mirred").count(),
        1,
        "{filters}"
    );
    assert!(
        filters.contains("Egress Redirect to device tap0_zone"),
        "{filters}"
    );
    assert_traffic_flows(&second, &b, veth_mac);
    drop(second);
    netns::detach(&a.path()).unwrap();
    a.assert_untouched();
}

#[test]
fn test_attach_detach_leave_other_ingress_filters_alone() {
    let (a, _b) = cni_like("other");
    a.tc(&["qdisc", "add", "dev", "eth0", "ingress"]);
    // A filter of someone else's (a classifier without actions: this kernel has no act_gact).
    a.tc(&[
        "filter", "add", "dev", "eth0", "ingress", "pref", "40000", "protocol", "ip", "u32",
        "match", "u8", "0", "0", "flowid", "1:1",
    ]);
    let t = netns::attach(&a.path()).unwrap();
    drop(t);
    netns::detach(&a.path()).unwrap();
    let filters = a.tc(&["filter", "show", "dev", "eth0", "ingress"]);
    assert!(filters.contains("pref 40000 "), "{filters}");
    assert!(!filters.contains("mirred"), "{filters}");
}

#[test]
fn test_attach_path_not_a_network_namespace_refused() {
    let file = std::env::temp_dir().join(format!("zn-not-netns-{}", std::process::id()));
    std::fs::write(&file, "").unwrap();
    let err = netns::attach(&file).expect_err("a regular file");
    std::fs::remove_file(&file).unwrap();
    assert!(matches!(err, NetnsError::NotNetns { .. }), "{err:?}");
    assert!(
        err.to_string().contains("is not a network namespace"),
        "{err}"
    );

    let err = netns::attach(Path::new("/proc/self/ns/uts")).expect_err("a UTS namespace");
    assert!(matches!(err, NetnsError::NotNetns { .. }), "{err:?}");

    let missing = Path::new("/run/netns/zn-does-not-exist");
    let err = netns::attach(missing).expect_err("a missing path");
    assert!(matches!(err, NetnsError::Open { .. }), "{err:?}");
    assert!(err.to_string().contains("zn-does-not-exist"), "{err}");
    netns::detach(missing).expect("detach of a missing namespace");
}

#[test]
fn test_attach_namespace_without_interface_refused_naming_what_is_there() {
    let a = Netns::new("empty");
    let err = netns::attach(&a.path()).expect_err("only lo");
    match &err {
        NetnsError::NoInterface { found, .. } => assert_eq!(found, &["lo"]),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains(&a.name), "{err}");
    a.assert_untouched();
    netns::detach(&a.path()).expect("detach of a never attached namespace");
}

#[test]
fn test_attach_namespace_with_two_veths_refused_naming_both() {
    let a = Netns::new("two-a");
    let b = Netns::new("two-b");
    a.add_veth("eth0", "p0", &b);
    a.add_veth("eth1", "p1", &b);
    a.ip(&["addr", "add", "10.99.0.2/24", "dev", "eth0"]);
    a.ip(&["addr", "add", "10.98.0.2/24", "dev", "eth1"]);
    let err = netns::attach(&a.path()).expect_err("two candidates");
    match &err {
        NetnsError::SeveralInterfaces { found, .. } => assert_eq!(found, &["eth0", "eth1"]),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("eth0, eth1"), "{err}");
    a.assert_untouched();
}

#[test]
fn test_attach_interface_without_address_refused() {
    let a = Netns::new("noaddr-a");
    let b = Netns::new("noaddr-b");
    a.add_veth("eth0", "p0", &b);
    a.ip(&["link", "set", "eth0", "up"]);
    let err = netns::attach(&a.path()).expect_err("no address");
    assert!(
        matches!(&err, NetnsError::NoAddress { interface, .. } if interface == "eth0"),
        "{err:?}"
    );
    assert!(err.to_string().contains("eth0"), "{err}");
    a.assert_untouched();
}

#[test]
fn test_attach_tap_name_taken_by_other_device_fails_before_touching_tc() {
    let (a, b) = cni_like("taken");
    // A device of another kind under the tap's name (a veth: this kernel has no dummy driver).
    a.add_veth(TAP_NAME, "q0", &b);
    let err = netns::attach(&a.path()).expect_err("tap name taken");
    assert!(matches!(err, NetnsError::CreateTap { .. }), "{err:?}");
    let qdiscs = a.tc(&["qdisc", "show"]);
    assert!(!qdiscs.contains("ingress"), "{qdiscs}");
}

/// A process holding a namespace, killed on drop (also when the test fails).
struct Holder(std::process::Child);

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn test_attach_by_proc_pid_path_works_and_detach_after_the_process_is_gone_is_ok() {
    let (a, b) = cni_like("proc");
    let veth_mac = a.mac("eth0");
    let holder = Holder(
        Command::new("ip")
            .args(["netns", "exec", &a.name, "sleep", "60"])
            .spawn()
            .unwrap(),
    );
    let path = PathBuf::from(format!("/proc/{}/ns/net", holder.0.id()));
    // `ip netns exec` enters A a moment after it starts.
    let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_link(&path).unwrap() == ours {
        assert!(Instant::now() < deadline, "ip netns exec never entered A");
        std::thread::sleep(Duration::from_millis(10));
    }
    let t = netns::attach(&path).expect("attach through /proc/PID/ns/net");
    assert_eq!(t.guest.interfaces[0].mac, veth_mac);
    assert_traffic_flows(&t, &b, veth_mac);
    drop(t);
    netns::detach(&path).expect("detach through /proc/PID/ns/net");
    a.assert_untouched();
    drop(holder);
    netns::detach(&path).expect("detach once the process is gone");
}
