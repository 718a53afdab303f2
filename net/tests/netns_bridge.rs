//! The bridge mode's namespaces are what `netns::attach` expects: a zone attached to a bridge
//! of the test's own gets its tap next to `eth0`, with the lease's address and the default
//! route via the bridge's gateway, and detach plus release leave nothing. Needs root.

// Test helpers outside #[test] fns: panicking on failure is the point.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use zone_net::bridge::{self, BridgeParams};
use zone_net::netns::{self, TAP_NAME};
use zone_net::GuestRoute;

/// Releases the zone and removes the bridge on drop (also when the test fails).
struct Cleanup<'a> {
    params: &'a BridgeParams,
    root: &'a Path,
    zone: &'a str,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = bridge::release_with(self.params, self.root, self.zone);
        let _ = Command::new("ip")
            .args(["link", "del", &self.params.bridge])
            .output();
    }
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(out.status.success(), "ip {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn test_attach_on_bridge_zone_namespace_reads_lease_and_detach_then_release_leave_nothing() {
    let pid = std::process::id();
    let params = BridgeParams {
        bridge: format!("ztn{}", pid % 1000),
        subnet: format!("10.239.{}.0/24", pid % 256).parse().unwrap(),
        host_routing: false,
    };
    let state_root = tempfile::tempdir().unwrap();
    let zone = format!("n{}", pid % 1000);
    let _cleanup = Cleanup {
        params: &params,
        root: state_root.path(),
        zone: &zone,
    };
    let lease = bridge::attach_with(&params, state_root.path(), &zone).unwrap();
    let ns_name = lease
        .netns
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();

    let t = netns::attach(&lease.netns).expect("attach on the bridge's namespace");

    let link = ip(&["-n", &ns_name, "-o", "link", "show", "eth0"]);
    let mac = t.guest.interfaces[0].mac;
    assert!(link.contains(&mac.to_string()), "{mac} not in {link}");
    assert_eq!(t.veth_name, "eth0");
    assert_eq!(t.guest.interfaces[0].addresses, vec![lease.address]);
    assert_eq!(
        t.guest.routes,
        vec![GuestRoute {
            destination: "0.0.0.0/0".parse().unwrap(),
            gateway: Some(lease.gateway),
            interface: Some(mac),
            metric: 0,
        }]
    );
    let filters = Command::new("tc")
        .args(["-n", &ns_name, "filter", "show", "dev", "eth0", "ingress"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&filters.stdout).contains("Egress Redirect to device tap0_zone"),
        "{filters:?}"
    );

    drop(t);
    netns::detach(&lease.netns).unwrap();
    assert!(!ip(&["-n", &ns_name, "link"]).contains(TAP_NAME));
    bridge::release_with(&params, state_root.path(), &zone).unwrap();
    netns::detach(&lease.netns).expect("detach after the bridge released the namespace");
}
