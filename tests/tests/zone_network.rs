//! Tier 3: zone networking with `zonectl run --network` in the KVM testbed: a zone joins a
//! network namespace an operator prepared (a veth with an address and a default route, as CNI
//! makes it) and reaches a server on the testbed host through it, with the host's DNS servers
//! in its resolv.conf; zones on the built-in bridge reach each other, `-p 8080:80` serves a
//! request from the host to a server in a zone; bad `--network`/`-p` values are refused; and
//! nothing (tap, veth, tc filter, namespace, lease) is left afterwards.

use zone_tests::{testbed_run, value};

#[test]
fn test_zone_networks_namespace_bridge_and_published_port_then_nothing_left() {
    let script = r#"
IP=/zones/bin/ip TC=/zones/bin/tc
# GET HOST PORT PATH: the body's last line (busybox's static wget crashes here: glibc's NSS).
get() { printf 'GET %s HTTP/1.0\r\n\r\n' "$3" | nc -w 10 "$1" "$2" | tail -n 1; }
zonectl image import /zones/images/busybox >/dev/null || echo import-failed
echo 'nameserver 10.77.0.53' >/etc/resolv.conf
echo 'search zones.test' >>/etc/resolv.conf

# An operator's namespace "blue": eth0 10.77.0.2/24, default via the host end 10.77.0.1.
$IP netns add blue
$IP link add veth-blue type veth peer name eth0 netns blue
$IP addr add 10.77.0.1/24 dev veth-blue && $IP link set veth-blue up
$IP -n blue addr add 10.77.0.2/24 dev eth0 && $IP -n blue link set eth0 up
$IP -n blue route add default via 10.77.0.1
mkdir -p /tmp/www && echo host-says-hi >/tmp/www/hello.txt
busybox httpd -p 10.77.0.1:8081 -h /tmp/www
zonectl run --rm --network ns:/var/run/netns/blue busybox sh -c '
  echo "zone-addr=$(ip -o -4 addr show eth0 | awk "{print \$4}")"
  echo "zone-route=$(ip route | grep ^default)"
  echo "zone-dns=$(grep ^nameserver /etc/resolv.conf)"
  echo "zone-search=$(grep ^search /etc/resolv.conf)"
  echo "fetched=$(printf "GET /hello.txt HTTP/1.0\r\n\r\n" | nc -w 10 10.77.0.1 8081 | tail -n 1)"
'
echo "ns-run-rc=$?"
echo "blue-ingress-after=$($TC -n blue qdisc show dev eth0 | grep -c ingress)"
echo "blue-links-after=$($IP -n blue -o link show | wc -l)"

# The built-in bridge: a web server zone with port 80 published as 8080, a client zone.
zonectl run -d --name web --network bridge -p 8080:80 busybox sh -c \
  'mkdir /www && echo zone-says-hi >/www/index.html && exec httpd -f -p 80 -h /www' >/dev/null
echo "web-rc=$?"
for i in $(seq 60); do
  out=$(get 127.0.0.1 8080 /) && [ -n "$out" ] && break
  sleep 1
done
echo "published=$out"
web_ip=$(zonectl inspect web | grep -o '"10\.213\.[0-9.]*' | tr -d '"' | head -n 1)
echo "web-ip=$web_ip"
echo "zone-to-zone=$(zonectl run --rm --network bridge busybox sh -c "printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 10 $web_ip 80 | tail -n 1")"
echo "bridge-links-while=$($IP -o link show master zones0 | wc -l)"
zonectl run --rm --network bridge -p 8080:80 busybox true 2>/tmp/inuse.err; echo "port-in-use-rc=$?"
echo "port-in-use-named=$(grep -c 8080 /tmp/inuse.err)"
zonectl rm -f web >/dev/null
sleep 1

# Bad values are refused before anything starts.
zonectl run --rm --network host busybox true 2>/tmp/bad.err; echo "bad-mode-rc=$?"
echo "bad-mode-named=$(grep -c '"host"' /tmp/bad.err)"
zonectl run --rm -p 8080:80 busybox true 2>/tmp/bad.err; echo "publish-without-bridge-rc=$?"
zonectl run --rm --network bridge -p 80:99999 busybox true 2>/tmp/bad.err; echo "bad-port-rc=$?"
zonectl run --rm --network ns:/var/run/netns/none-such busybox true 2>/tmp/bad.err
echo "missing-ns-rc=$?"
echo "missing-ns-named=$(grep -c none-such /tmp/bad.err)"

echo "left-taps=$($IP -o link show type tun | wc -l)"
echo "left-bridge-ports=$($IP -o link show master zones0 | wc -l)"
echo "left-zone-netns=$(ls /var/run/netns | grep -c '^zone-')"
echo "left-leases=$(ls /run/zones/.network/leases 2>/dev/null | wc -l)"
echo "left-state=$(ls /run/zones | wc -l)"
echo "left-vmm=$(ps -o comm | grep -c '^zone-vmm')"
"#;
    let out = testbed_run(script, &[]);
    assert_eq!(value(&out, "ns-run-rc"), "0", "{out:#?}");
    assert_eq!(value(&out, "zone-addr"), "10.77.0.2/24", "{out:#?}");
    assert_eq!(
        value(&out, "zone-route").trim_end(),
        "default via 10.77.0.1 dev eth0",
        "{out:#?}"
    );
    assert_eq!(value(&out, "zone-dns"), "nameserver 10.77.0.53", "{out:#?}");
    assert_eq!(value(&out, "zone-search"), "search zones.test", "{out:#?}");
    assert_eq!(
        value(&out, "fetched"),
        "host-says-hi",
        "the zone reached the host's server through the namespace\n{out:#?}"
    );
    assert_eq!(
        value(&out, "blue-ingress-after"),
        "0",
        "the redirect on the operator's veth is gone\n{out:#?}"
    );
    assert_eq!(
        value(&out, "blue-links-after"),
        "2",
        "lo and eth0 only: the tap is gone\n{out:#?}"
    );
    assert_eq!(value(&out, "web-rc"), "0", "{out:#?}");
    assert_eq!(
        value(&out, "published"),
        "zone-says-hi",
        "-p 8080:80 serves the host\n{out:#?}"
    );
    assert!(value(&out, "web-ip").starts_with("10.213."), "{out:#?}");
    assert_eq!(value(&out, "zone-to-zone"), "zone-says-hi", "{out:#?}");
    assert_eq!(value(&out, "bridge-links-while"), "1", "{out:#?}");
    assert_eq!(value(&out, "port-in-use-rc"), "125", "{out:#?}");
    assert_eq!(value(&out, "port-in-use-named"), "1", "{out:#?}");
    assert_eq!(value(&out, "bad-mode-rc"), "125", "{out:#?}");
    assert_eq!(value(&out, "bad-mode-named"), "1", "{out:#?}");
    assert_ne!(value(&out, "publish-without-bridge-rc"), "0", "{out:#?}");
    assert_eq!(value(&out, "bad-port-rc"), "125", "{out:#?}");
    assert_ne!(value(&out, "missing-ns-rc"), "0", "{out:#?}");
    assert_eq!(value(&out, "missing-ns-named"), "1", "{out:#?}");
    for key in [
        "left-taps",
        "left-bridge-ports",
        "left-zone-netns",
        "left-leases",
        "left-state",
        "left-vmm",
    ] {
        assert_eq!(value(&out, key), "0", "{key}\n{out:#?}");
    }
}
