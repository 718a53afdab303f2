//! Tier 3: pods with their own network, through containerd's CRI plugin and Debian's CNI
//! plugins (bridge `zcni0` + host-local IPAM, configured by `hack/containerd-zone`), in zones:
//! two pods get addresses from 10.88.0.0/16 and reach each other over TCP, a pod reaches a
//! server on the testbed host, the pod sees CRI's DNS settings; after the pods are removed no
//! tap, veth, tc filter, network namespace or address lease is left (and none of what
//! `assert_nothing_left` checks).

use zone_tests::containerd::{
    assert_nothing_left, run_with_containerd, ContainerdScript, IMPORT_CRI_IMAGES,
};
use zone_tests::value;

const SETTINGS: &str = r#"
export ZONES_SANDBOX_IMAGE=zones.local/pause:1
L=/tmp/pod-logs
IP=/zones/bin/ip
# CRI copies the host's resolv.conf for a pod with its own network.
echo 'nameserver 10.88.0.53' >/etc/resolv.conf
"#;

const SCRIPT: &str = r#"
pod() { # NAME: a pod with its own network; prints its id
  cri-client run-pod --pod-network --handler zone --log-dir $L $1
}
container() { # POD NAME COMMAND...: created and started
  p=$1 n=$2; shift 2
  c=$(cri-client create --pod "$p" --pod-name "$n" --pod-network --log-dir $L --image busybox "$n-c" -- "$@") &&
    cri-client start "$c" && echo "$c"
}
p1=$(pod p1); echo "pod1-rc=$?"
p2=$(pod p2); echo "pod2-rc=$?"
ip1=$(cri-client pod-status "$p1" | sed -n 's/^ip=//p')
ip2=$(cri-client pod-status "$p2" | sed -n 's/^ip=//p')
echo "ip1=$ip1"; echo "ip2=$ip2"
# A TCP server in pod 1, a client in pod 2.
c1=$(container "$p1" p1 sh -c 'echo pod1-says-hi >/tmp/msg; while :; do nc -l -p 7000 </tmp/msg; done')
echo "c1-rc=$?"
c2=$(container "$p2" p2 sleep 1000); echo "c2-rc=$?"
echo "zone-addr1=$(cri-client exec-sync "$c1" -- sh -c 'ip -o -4 addr show eth0 | awk "{print \$4}"')"
sleep 1
echo "pod-to-pod=$(cri-client exec-sync "$c2" -- sh -c "nc -w 5 $ip1 7000 </dev/null")"
# A server on the testbed host, at the bridge's gateway address.
mkdir -p /tmp/www && echo host-says-hi >/tmp/www/hello.txt
busybox httpd -p 10.88.0.1:8082 -h /tmp/www
echo "pod-to-host=$(cri-client exec-sync "$c2" -- sh -c "printf 'GET /hello.txt HTTP/1.0\r\n\r\n' | nc -w 10 10.88.0.1 8082 | tail -n 1")"
echo "pod-dns=$(cri-client exec-sync "$c2" -- grep ^nameserver /etc/resolv.conf)"
echo "vmm-running=$(count zone-vmm)"
echo "veths-while=$($IP -o link show master zcni0 | wc -l)"
for p in "$p1" "$p2"; do
  cri-client stop-pod "$p" || echo "stop-pod-failed=$p"
  cri-client rm-pod "$p" || echo "rm-pod-failed=$p"
done
sleep 1
echo "left-veths=$($IP -o link show master zcni0 | wc -l)"
echo "left-netns=$(ls /var/run/netns 2>/dev/null | wc -l)"
echo "left-leases=$(ls $C/cni-ipam/zones-test 2>/dev/null | grep -c '^10\.')"
echo "left-taps=$(for n in $(ls /var/run/netns 2>/dev/null); do $IP -n $n -o link show type tun; done | wc -l)"
"#;

#[test]
fn test_cni_pods_in_zones_reach_each_other_and_the_host_then_nothing_left() {
    let out = run_with_containerd(
        &ContainerdScript {
            settings: SETTINGS,
            needs: "cri-client",
            script: &format!("{IMPORT_CRI_IMAGES}{SCRIPT}"),
        },
        900,
    );
    for key in ["pod1-rc", "pod2-rc", "c1-rc", "c2-rc"] {
        assert_eq!(value(&out, key), "0", "{key}\n{out:#?}");
    }
    let ip1 = value(&out, "ip1");
    let ip2 = value(&out, "ip2");
    assert!(
        ip1.starts_with("10.88.") && ip2.starts_with("10.88."),
        "{out:#?}"
    );
    assert_ne!(ip1, ip2, "{out:#?}");
    assert_eq!(
        value(&out, "zone-addr1"),
        format!("{ip1}/16"),
        "the zone's interface has the address CNI gave the pod\n{out:#?}"
    );
    assert_eq!(value(&out, "pod-to-pod"), "pod1-says-hi", "{out:#?}");
    assert_eq!(value(&out, "pod-to-host"), "host-says-hi", "{out:#?}");
    assert_eq!(value(&out, "pod-dns"), "nameserver 10.88.0.53", "{out:#?}");
    assert_eq!(value(&out, "vmm-running"), "2", "a zone a pod\n{out:#?}");
    assert_eq!(value(&out, "veths-while"), "2", "{out:#?}");
    assert!(!out.stdout.contains("stop-pod-failed"), "{out:#?}");
    assert!(!out.stdout.contains("rm-pod-failed"), "{out:#?}");
    for key in ["left-veths", "left-netns", "left-leases", "left-taps"] {
        assert_eq!(value(&out, key), "0", "{key}\n{out:#?}");
    }
    assert_nothing_left(&out);
}
