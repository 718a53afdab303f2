//! ConfigureNetwork for real, as root on the host, each test in a network namespace of its
//! own: a thread calls `unshare(CLONE_NEWNET)` (it changes only that thread; the processes
//! it starts inherit it) and runs a current-thread runtime, so the agent's netlink socket
//! and the `ip` commands that set up and inspect the namespace all live there, and the
//! host's network is never touched. A veth pair with a chosen MAC stands for the zone's
//! virtio-net device (the machine has no dummy links); what the agent did is read back with
//! iproute2's `ip`, not with the agent's own netlink code.

use std::future::Future;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use zone_agent::network::{ApplyError, Network, NetworkError};
use zone_agent::request_error::RequestError;
use zone_proto::agent::v1::{ConfigureNetworkRequest, Dns, NetworkInterface, NetworkRoute};

const MAC: &str = "02:42:0a:58:00:05";

/// Runs `test` on a thread of its own in a new network namespace, with a current-thread
/// runtime (every task stays on that thread, so in that namespace).
fn in_new_netns<F, Fut>(test: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let thread = std::thread::spawn(move || {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the network tests need root (network namespaces): run them as root, as CI does"
        );
        // SAFETY: unshare with a flag; it changes only this thread's network namespace,
        // and this thread belongs to the test.
        let unshared = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            unshared,
            0,
            "unshare(CLONE_NEWNET): {}",
            std::io::Error::last_os_error()
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("test runtime");
        runtime.block_on(test());
    });
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

/// Runs `ip ARGS` in the calling thread's namespace; its stdout, or a panic with its stderr.
fn ip(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running ip {args:?}: {e} (install iproute2)"));
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A veth pair: `name` with `mac` (the zone's device) and `peer`, up so the pair has a
/// carrier. The peer has no address: one in this namespace would make the gateway a local
/// address, which the kernel refuses as a next hop.
fn add_device(name: &str, mac: &str, peer: &str) {
    ip(&[
        "link", "add", name, "address", mac, "type", "veth", "peer", "name", peer,
    ]);
    ip(&["link", "set", peer, "up"]);
}

/// The flags between '<' and '>' of `ip -o link show NAME`.
fn link_flags(line: &str) -> Vec<String> {
    let start = line.find('<').map_or(0, |i| i + 1);
    let end = line.find('>').unwrap_or(start);
    line[start..end].split(',').map(str::to_string).collect()
}

fn interface(name: &str, mtu: u32, addresses: &[&str]) -> NetworkInterface {
    NetworkInterface {
        mac: MAC.into(),
        name: name.into(),
        mtu,
        addresses: addresses.iter().map(|a| a.to_string()).collect(),
    }
}

fn route(destination: &str, gateway: &str, interface_mac: &str, metric: u32) -> NetworkRoute {
    NetworkRoute {
        destination: destination.into(),
        gateway: gateway.into(),
        interface_mac: interface_mac.into(),
        metric,
    }
}

/// What the host reads from a CNI pod namespace, plus an on-link route and a metric.
fn cni_request() -> ConfigureNetworkRequest {
    ConfigureNetworkRequest {
        interfaces: vec![interface("eth0", 1400, &["10.88.0.5/16", "fd00:88::5/64"])],
        routes: vec![
            route("0.0.0.0/0", "10.88.0.1", "", 0),
            route("::/0", "fd00:88::1", MAC, 0),
            route("192.168.7.0/24", "", MAC, 0),
            route("172.16.0.0/12", "10.88.0.254", MAC, 50),
        ],
        dns: Some(Dns {
            nameservers: vec!["10.96.0.10".into()],
            searches: vec!["default.svc.cluster.local".into(), "cluster.local".into()],
            options: vec!["ndots:5".into()],
        }),
    }
}

fn network(dir: &Path) -> Network {
    Network::new(dir.join("run/zone/resolv.conf"))
}

fn request_error(error: NetworkError) -> RequestError {
    RequestError::from(error)
}

#[test]
fn test_configure_network_cni_config_applied_in_netns() {
    in_new_netns(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        add_device("virt0", MAC, "host0");
        // Up already: the agent must take it down to rename it.
        ip(&["link", "set", "virt0", "up"]);
        let network = network(dir.path());

        let written = network
            .configure(&cni_request())
            .await
            .unwrap_or_else(|e| panic!("{}", zone_agent::request_error::report(&e)));

        let link = ip(&["-o", "link", "show", "eth0"]);
        assert!(link.contains("mtu 1400 "), "{link}");
        assert!(link.contains(&format!("link/ether {MAC}")), "{link}");
        assert!(link_flags(&link).contains(&"UP".to_string()), "{link}");
        assert!(!ip(&["-o", "link"]).contains("virt0"), "old name left");
        let lo = ip(&["-o", "link", "show", "lo"]);
        assert!(link_flags(&lo).contains(&"UP".to_string()), "{lo}");
        let addresses = ip(&["-o", "addr", "show", "dev", "eth0"]);
        assert!(addresses.contains("inet 10.88.0.5/16 "), "{addresses}");
        assert!(addresses.contains("inet6 fd00:88::5/64 "), "{addresses}");
        let routes = ip(&["-4", "route", "show"]);
        let has = |routes: &str, start: &str, parts: &[&str]| {
            routes
                .lines()
                .any(|l| l.starts_with(start) && parts.iter().all(|p| l.contains(p)))
        };
        assert!(
            has(&routes, "default via 10.88.0.1 dev eth0", &[]),
            "{routes}"
        );
        assert!(
            has(&routes, "192.168.7.0/24 dev eth0", &["scope link"]),
            "{routes}"
        );
        assert!(
            has(
                &routes,
                "172.16.0.0/12 via 10.88.0.254 dev eth0",
                &["metric 50"]
            ),
            "{routes}"
        );
        let routes6 = ip(&["-6", "route", "show"]);
        assert!(
            has(&routes6, "default via fd00:88::1 dev eth0", &[]),
            "{routes6}"
        );
        let path = written.expect("the request had a nameserver");
        assert_eq!(path, dir.path().join("run/zone/resolv.conf"));
        let text = std::fs::read_to_string(&path).expect("resolv.conf");
        assert!(text.contains("nameserver 10.96.0.10\n"), "{text}");
        assert!(
            text.contains("search default.svc.cluster.local cluster.local\n"),
            "{text}"
        );
        assert!(text.contains("options ndots:5\n"), "{text}");
    });
}

#[test]
fn test_configure_network_unknown_mac_not_found_named_then_retry_allowed() {
    in_new_netns(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let network = network(dir.path()).with_link_wait(Duration::from_millis(300));
        let started = Instant::now();

        let error = network.configure(&cni_request()).await.unwrap_err();

        assert!(
            matches!(error, NetworkError::Apply(ApplyError::LinkNotFound { .. })),
            "{error:?}"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "did not wait"
        );
        match request_error(error) {
            RequestError::NotFound(message) => assert!(message.contains(MAC), "{message}"),
            other => panic!("{other:?}"),
        }
        // Nothing was changed, so the call did not count.
        assert!(!ip(&["-o", "link", "show", "lo"]).contains(",UP"));
        add_device("virt0", MAC, "host0");
        network
            .configure(&cni_request())
            .await
            .unwrap_or_else(|e| panic!("{}", zone_agent::request_error::report(&e)));
        assert!(ip(&["-o", "addr", "show", "dev", "eth0"]).contains("10.88.0.5/16"));
    });
}

#[test]
fn test_configure_network_waits_for_a_late_device() {
    in_new_netns(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let network = network(dir.path());
        let request = ConfigureNetworkRequest {
            interfaces: vec![interface("", 0, &["10.88.0.5/16"])],
            ..Default::default()
        };
        // On this thread (so in this namespace), while the agent polls.
        let late = async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            add_device("virt0", MAC, "host0");
        };

        let (configured, ()) = tokio::join!(network.configure(&request), late);

        assert_eq!(configured.expect("configured"), None);
        let addresses = ip(&["-o", "addr", "show", "dev", "eth0"]);
        assert!(addresses.contains("inet 10.88.0.5/16 "), "{addresses}");
        assert!(
            !dir.path().join("run/zone/resolv.conf").exists(),
            "no nameserver, no resolv.conf"
        );
    });
}

#[test]
fn test_configure_network_once_per_zone_refusals_do_not_count() {
    in_new_netns(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        add_device("virt0", MAC, "host0");
        let network = network(dir.path());
        let mut bad = cni_request();
        bad.interfaces[0].mtu = 20;

        let refused = network.configure(&bad).await.unwrap_err();
        let request = ConfigureNetworkRequest {
            interfaces: vec![interface("eth0", 0, &["10.88.0.5/16"])],
            routes: vec![route("0.0.0.0/0", "10.88.0.1", "", 0)],
            dns: None,
        };
        let first = network.configure(&request).await;
        let second = network.configure(&request).await.unwrap_err();

        match request_error(refused) {
            RequestError::InvalidArgument(m) => assert!(m.contains("interfaces[0].mtu"), "{m}"),
            other => panic!("{other:?}"),
        }
        first.unwrap_or_else(|e| panic!("{}", zone_agent::request_error::report(&e)));
        assert_eq!(
            request_error(second),
            RequestError::FailedPrecondition("network already configured".into())
        );
        // The refused request changed nothing: its MTU is not there.
        assert!(ip(&["-o", "link", "show", "eth0"]).contains("mtu 1500 "));
    });
}

#[test]
fn test_configure_network_failed_step_internal_named_and_counts() {
    in_new_netns(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        add_device("virt0", MAC, "host0");
        let network = network(dir.path());
        // No address of the zone reaches this gateway.
        let request = ConfigureNetworkRequest {
            interfaces: vec![interface("eth0", 0, &["10.88.0.5/16"])],
            routes: vec![route("0.0.0.0/0", "10.99.0.1", "", 0)],
            dns: Some(Dns {
                nameservers: vec!["10.96.0.10".into()],
                ..Default::default()
            }),
        };

        let failed = network.configure(&request).await.unwrap_err();
        let again = network.configure(&request).await.unwrap_err();

        match request_error(failed) {
            RequestError::Internal(m) => assert!(
                m.starts_with("adding route default via 10.99.0.1: Network is unreachable"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
        match request_error(again) {
            RequestError::FailedPrecondition(m) => {
                assert!(m.contains("failed part-way"), "{m}");
                assert!(m.contains("adding route default via 10.99.0.1"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            !dir.path().join("run/zone/resolv.conf").exists(),
            "DNS written after a failed step"
        );
    });
}

#[test]
fn test_configure_network_kernel_prefix_routes_from_the_pod_accepted_others_exist() {
    in_new_netns(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        add_device("virt0", MAC, "host0");
        let network = network(dir.path());
        // What `ip route` lists in a CNI namespace, the kernel's own prefix routes included.
        let mut request = cni_request();
        request.routes = vec![
            route("10.88.0.0/16", "", MAC, 0),
            route("fd00:88::/64", "", MAC, 256),
            route("0.0.0.0/0", "10.88.0.1", MAC, 0),
        ];

        network
            .configure(&request)
            .await
            .unwrap_or_else(|e| panic!("{}", zone_agent::request_error::report(&e)));

        let routes = ip(&["-4", "route", "show", "10.88.0.0/16"]);
        assert_eq!(routes.lines().count(), 1, "{routes}");
        assert!(routes.contains("proto kernel"), "{routes}");

        // A route that exists already and is not the kernel's own is an error.
        let other = Network::new(dir.path().join("other/resolv.conf"));
        let mut twice = cni_request();
        twice.interfaces[0].addresses.clear();
        twice.interfaces[0].name = "eth0".into();
        twice.routes = vec![route("0.0.0.0/0", "10.88.0.1", MAC, 0)];
        let error = other.configure(&twice).await.unwrap_err();
        match request_error(error) {
            RequestError::Internal(m) => assert_eq!(
                m,
                "adding route default via 10.88.0.1 dev eth0: File exists"
            ),
            other => panic!("{other:?}"),
        }
    });
}
