//! Tests of the ConfigureNetwork request checks: every refusal names its field and value.
use super::*;

const MAC: &str = "02:00:0a:58:00:05";

fn eth0() -> NetworkInterface {
    NetworkInterface {
        mac: MAC.into(),
        name: "eth0".into(),
        mtu: 1500,
        addresses: vec!["10.88.0.5/16".into(), "fd00::5/64".into()],
    }
}

fn default_route() -> NetworkRoute {
    NetworkRoute {
        destination: "0.0.0.0/0".into(),
        gateway: "10.88.0.1".into(),
        interface_mac: String::new(),
        metric: 0,
    }
}

fn request() -> ConfigureNetworkRequest {
    ConfigureNetworkRequest {
        interfaces: vec![eth0()],
        routes: vec![default_route()],
        dns: Some(Dns {
            nameservers: vec!["10.88.0.1".into()],
            searches: vec!["default.svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        }),
    }
}

/// The message of refusing `request`, which must name every one of `names`.
fn refused(request: &ConfigureNetworkRequest, names: &[&str]) -> ConfigError {
    let error = NetworkConfig::try_from(request).expect_err("the request was accepted");
    let message = error.to_string();
    for name in names {
        assert!(message.contains(name), "{message:?} does not name {name:?}");
    }
    error
}

#[test]
fn test_network_config_cni_request_accepted() {
    let config = NetworkConfig::try_from(&request()).unwrap();

    let interface = &config.interfaces[0];
    assert_eq!(interface.mac, MacAddr([2, 0, 0x0a, 0x58, 0, 5]));
    assert_eq!(interface.name, "eth0");
    assert_eq!(interface.mtu, Some(1500));
    assert_eq!(interface.addresses[0].to_string(), "10.88.0.5/16");
    assert_eq!(interface.addresses[1].to_string(), "fd00::5/64");
    assert_eq!(config.routes[0].describe(None), "default via 10.88.0.1");
    let dns = config.dns.unwrap();
    assert_eq!(dns.nameservers, ["10.88.0.1".parse::<IpAddr>().unwrap()]);
    assert_eq!(dns.searches, ["default.svc.cluster.local"]);
    assert_eq!(dns.options, ["ndots:5"]);
}

#[test]
fn test_network_config_defaults_name_mtu_and_no_dns() {
    let mut request = request();
    request.interfaces[0].name.clear();
    request.interfaces[0].mtu = 0;
    request.dns = Some(Dns {
        nameservers: vec![],
        searches: vec!["example.com".into()],
        options: vec![],
    });

    let config = NetworkConfig::try_from(&request).unwrap();

    assert_eq!(config.interfaces[0].name, "eth0");
    assert_eq!(config.interfaces[0].mtu, None);
    assert_eq!(config.dns, None);
    request.dns = None;
    assert_eq!(NetworkConfig::try_from(&request).unwrap().dns, None);
}

#[test]
fn test_network_config_empty_request_accepted() {
    let config = NetworkConfig::try_from(&ConfigureNetworkRequest::default()).unwrap();
    assert!(config.interfaces.is_empty() && config.routes.is_empty());
    assert_eq!(config.dns, None);
}

#[test]
fn test_mac_parse_forms() {
    assert_eq!(
        "AA:bb:0C:dd:0e:FE".parse::<MacAddr>().unwrap().to_string(),
        "aa:bb:0c:dd:0e:fe"
    );
    for bad in [
        "",
        "aa:bb:cc:dd:ee",
        "aa:bb:cc:dd:ee:ff:00",
        "aa-bb-cc-dd-ee-ff",
        "a:bb:cc:dd:ee:ff",
        "aaa:bb:cc:dd:ee:f",
        "gg:bb:cc:dd:ee:ff",
        "+a:bb:cc:dd:ee:ff",
        "aa:bb:cc:dd:ee:ff:",
        "aabbccddeeff",
    ] {
        assert!(bad.parse::<MacAddr>().is_err(), "{bad:?}");
    }
}

#[test]
fn test_network_config_bad_mac_refused_named() {
    for bad in [
        "",
        "02:00:00:00:00",
        "zz:00:00:00:00:01",
        "02:00:00:00:00:01\n",
    ] {
        let mut request = request();
        request.interfaces[0].mac = bad.into();
        let error = refused(&request, &["interfaces[0].mac", &format!("{bad:?}")]);
        assert!(matches!(error, ConfigError::Mac { .. }), "{error:?}");
    }
    for not_unicast in [
        "01:00:5e:00:00:01",
        "ff:ff:ff:ff:ff:ff",
        "00:00:00:00:00:00",
    ] {
        let mut request = request();
        request.interfaces[0].mac = not_unicast.into();
        let error = refused(&request, &["interfaces[0].mac", not_unicast]);
        assert!(matches!(error, ConfigError::MacNotUnicast { .. }));
    }
}

#[test]
fn test_network_config_bad_interface_name_refused_named() {
    for bad in [
        ".",
        "..",
        "a/b",
        "eth:0",
        "eth 0",
        "eth\t0",
        "eth0\n",
        "sixteen-bytes-xx",
        "é",
    ] {
        let mut request = request();
        request.interfaces[0].name = bad.into();
        let error = refused(&request, &["interfaces[0].name", &format!("{bad:?}")]);
        assert!(matches!(error, ConfigError::Name { .. }), "{bad:?}");
    }
    let mut request = request();
    request.interfaces[0].name = "lo".into();
    assert!(matches!(
        refused(&request, &["interfaces[0].name", "\"lo\"", "loopback"]),
        ConfigError::LoopbackName { .. }
    ));
    request.interfaces[0].name = "fifteen-bytes-x".into();
    assert!(NetworkConfig::try_from(&request).is_ok());
}

#[test]
fn test_network_config_bad_mtu_refused_named() {
    for bad in [1, 67, 65536, u32::MAX] {
        let mut request = request();
        request.interfaces[0].mtu = bad;
        let error = refused(&request, &["interfaces[0].mtu", &bad.to_string()]);
        assert!(matches!(error, ConfigError::Mtu { .. }));
    }
    for good in [68, 9000, 65535] {
        let mut request = request();
        request.interfaces[0].mtu = good;
        assert!(NetworkConfig::try_from(&request).is_ok(), "{good}");
    }
}

#[test]
fn test_network_config_bad_address_refused_named() {
    for bad in [
        "10.88.0.5",
        "10.88.0.5/",
        "10.88.0.5/33",
        "fd00::5/129",
        "10.88.0.5/+16",
        "10.88.0.5/016x",
        "10.88.0/16",
        "host/16",
        "10.88.0.5/16 ",
        "",
    ] {
        let mut request = request();
        request.interfaces[0].addresses[1] = bad.into();
        let error = refused(
            &request,
            &["interfaces[0].addresses[1]", &format!("{bad:?}")],
        );
        assert!(matches!(error, ConfigError::Cidr { .. }), "{bad:?}");
    }
    for (bad, kind) in [
        ("0.0.0.0/8", "unspecified"),
        ("::/64", "unspecified"),
        ("224.0.0.1/4", "multicast"),
        ("ff02::1/64", "multicast"),
        ("255.255.255.255/32", "broadcast"),
    ] {
        let mut request = request();
        request.interfaces[0].addresses[0] = bad.into();
        refused(&request, &["interfaces[0].addresses[0]", bad, kind]);
    }
    let mut request = request();
    request.interfaces[0].addresses[1] = "10.88.0.5/16".into();
    assert!(matches!(
        refused(
            &request,
            &["interfaces[0].addresses[1]", "10.88.0.5/16", "twice"]
        ),
        ConfigError::Duplicate { .. }
    ));
}

#[test]
fn test_network_config_duplicate_interfaces_refused_named() {
    let mut request = request();
    let mut second = eth0();
    second.name = "eth1".into();
    request.interfaces.push(second);
    refused(&request, &["interfaces[1].mac", MAC, "twice"]);

    let mut request = self::request();
    let mut second = eth0();
    second.mac = "02:00:00:00:00:99".into();
    second.addresses.clear();
    request.interfaces.push(second);
    refused(&request, &["interfaces[1].name", "eth0", "twice"]);
}

#[test]
fn test_network_config_counts_bounded() {
    let mut request = request();
    request.interfaces = (0..9)
        .map(|i| NetworkInterface {
            mac: format!("02:00:00:00:00:{i:02x}"),
            name: format!("eth{i}"),
            ..Default::default()
        })
        .collect();
    request.routes.clear();
    assert!(matches!(
        refused(&request, &["interfaces", "9", "8"]),
        ConfigError::TooMany { .. }
    ));
    request.interfaces.pop();
    assert!(NetworkConfig::try_from(&request).is_ok());

    let mut request = self::request();
    request.interfaces[0].addresses = (0..33).map(|i| format!("10.0.0.{}/24", i + 1)).collect();
    refused(&request, &["interfaces[0].addresses", "33", "32"]);

    let mut request = self::request();
    request.routes = (0..65)
        .map(|i| NetworkRoute {
            destination: format!("10.{i}.0.0/16"),
            gateway: "10.88.0.1".into(),
            ..Default::default()
        })
        .collect();
    refused(&request, &["routes", "65", "64"]);

    let dns = |n: usize, s: usize, o: usize| Dns {
        nameservers: (0..n).map(|i| format!("10.0.0.{}", i + 1)).collect(),
        searches: (0..s).map(|i| format!("d{i}.example")).collect(),
        options: (0..o).map(|i| format!("opt{i}")).collect(),
    };
    let mut request = self::request();
    request.dns = Some(dns(3, 6, 16));
    assert!(NetworkConfig::try_from(&request).is_ok());
    request.dns = Some(dns(4, 0, 0));
    refused(&request, &["dns.nameservers", "4", "3"]);
    request.dns = Some(dns(1, 7, 0));
    refused(&request, &["dns.searches", "7", "6"]);
    request.dns = Some(dns(1, 0, 17));
    refused(&request, &["dns.options", "17", "16"]);
}

#[test]
fn test_network_config_bad_route_destination_refused_named() {
    for bad in ["default", "0.0.0.0", "10.0.0.0/33", "", "::/129"] {
        let mut request = request();
        request.routes[0].destination = bad.into();
        let error = refused(&request, &["routes[0].destination", &format!("{bad:?}")]);
        assert!(matches!(error, ConfigError::Cidr { .. }), "{bad:?}");
    }
    let mut request = request();
    request.routes[0].destination = "10.88.0.5/16".into();
    assert!(matches!(
        refused(
            &request,
            &["routes[0].destination", "10.88.0.5/16", "10.88.0.0/16"]
        ),
        ConfigError::HostBits { .. }
    ));
}

#[test]
fn test_network_config_bad_gateway_refused_named() {
    for bad in ["10.88.0", "gateway", "10.88.0.1/16", "fe80::1%eth0"] {
        let mut request = request();
        request.routes[0].gateway = bad.into();
        let error = refused(&request, &["routes[0].gateway", &format!("{bad:?}")]);
        assert!(matches!(error, ConfigError::Ip { .. }), "{bad:?}");
    }
    let mut request = request();
    request.routes[0].gateway = "fd00::1".into();
    assert!(matches!(
        refused(
            &request,
            &["routes[0].gateway", "fd00::1", "IPv6", "0.0.0.0/0"]
        ),
        ConfigError::Family { .. }
    ));
    request.routes[0].destination = "::/0".into();
    request.routes[0].gateway = "10.88.0.1".into();
    refused(
        &request,
        &["routes[0].gateway", "10.88.0.1", "IPv4", "::/0"],
    );
    request.routes[0].gateway = "fd00::1".into();
    assert!(NetworkConfig::try_from(&request).is_ok());
    request.routes[0].gateway = "ff02::2".into();
    refused(&request, &["routes[0].gateway", "ff02::2", "multicast"]);
}

#[test]
fn test_network_config_route_interface_checked() {
    let mut request = request();
    request.routes[0].interface_mac = "02:00:00:00:00:77".into();
    assert!(matches!(
        refused(&request, &["routes[0].interface_mac", "02:00:00:00:00:77"]),
        ConfigError::UnknownInterface { .. }
    ));
    request.routes[0].interface_mac = "bad".into();
    refused(&request, &["routes[0].interface_mac", "\"bad\""]);
    // Either case names the interface.
    request.routes[0].interface_mac = MAC.to_uppercase();
    assert!(NetworkConfig::try_from(&request).is_ok());

    request.routes.push(NetworkRoute {
        destination: "192.168.0.0/24".into(),
        ..Default::default()
    });
    assert!(matches!(
        refused(&request, &["routes[1]", "interface_mac"]),
        ConfigError::OnLinkWithoutInterface { .. }
    ));
    request.routes[1].interface_mac = MAC.into();
    let config = NetworkConfig::try_from(&request).unwrap();
    assert_eq!(config.routes[1].interface, Some(MAC.parse().unwrap()));
    assert_eq!(
        config.routes[1].describe(Some("eth0")),
        "192.168.0.0/24 dev eth0"
    );
}

#[test]
fn test_network_config_duplicate_route_refused_metric_tells_apart() {
    let mut request = request();
    request.routes.push(default_route());
    refused(&request, &["routes[1]", "0.0.0.0/0", "metric 0"]);
    request.routes[1].metric = 100;
    request.routes[1].gateway = "10.88.0.2".into();
    let config = NetworkConfig::try_from(&request).unwrap();
    assert_eq!(
        config.routes[1].describe(None),
        "default via 10.88.0.2 metric 100"
    );
    request.routes[1].metric = u32::MAX;
    assert!(NetworkConfig::try_from(&request).is_ok());
}

#[test]
fn test_network_config_bad_dns_refused_named() {
    for (bad, kind) in [("dns.example", "not an IP"), ("0.0.0.0", "unspecified")] {
        let mut request = request();
        request.dns.as_mut().unwrap().nameservers = vec!["10.0.0.1".into(), bad.into()];
        refused(&request, &["dns.nameservers[1]", bad, kind]);
    }
    for bad in [
        "",
        ".",
        "a..b",
        "has space.example",
        "new\nline.example",
        "tab\t.example",
        "semi;colon",
        &format!("{}.example", "l".repeat(64)),
        &["abcdefghi"; 26].join("."),
    ] {
        let mut request = request();
        request.dns.as_mut().unwrap().searches = vec![bad.into()];
        let error = refused(&request, &["dns.searches[0]", &format!("{bad:?}")]);
        assert!(matches!(error, ConfigError::Domain { .. }), "{bad:?}");
    }
    for good in ["svc.cluster.local.", "_tcp.example", "a-b.c", "localdomain"] {
        let mut request = request();
        request.dns.as_mut().unwrap().searches = vec![good.into()];
        assert!(NetworkConfig::try_from(&request).is_ok(), "{good}");
    }
    for bad in [
        "",
        "ndots:5 edns0",
        "a\nnameserver 1.2.3.4",
        "tab\t",
        &"o".repeat(65),
    ] {
        let mut request = request();
        request.dns.as_mut().unwrap().options = vec!["edns0".into(), bad.into()];
        let error = refused(&request, &["dns.options[1]", &format!("{bad:?}")]);
        assert!(matches!(error, ConfigError::ResolverOption { .. }));
    }
    // Checked even without a nameserver.
    let mut request = request();
    let dns = request.dns.as_mut().unwrap();
    dns.nameservers.clear();
    dns.searches = vec!["bad domain".into()];
    refused(&request, &["dns.searches[0]"]);
}

#[test]
fn test_ip_cidr_network_clears_host_bits() {
    let cidr = IpCidr::parse("10.88.0.5/16").unwrap();
    assert_eq!(cidr.network().to_string(), "10.88.0.0/16");
    assert_eq!(
        IpCidr::parse("10.1.2.3/0").unwrap().network().to_string(),
        "0.0.0.0/0"
    );
    assert_eq!(
        IpCidr::parse("10.1.2.3/32").unwrap().network().to_string(),
        "10.1.2.3/32"
    );
    assert_eq!(
        IpCidr::parse("fd00::5/64").unwrap().network().to_string(),
        "fd00::/64"
    );
    assert_eq!(
        IpCidr::parse("fd00::5/0").unwrap().network().to_string(),
        "::/0"
    );
}
