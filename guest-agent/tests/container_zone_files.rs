//! The zone's own files in containers, as root on the host (see `container.rs`): the zone's
//! resolv.conf on /etc/resolv.conf and its SPIFFE Workload API directory on /run/spiffe, each
//! read-only, unless the container's spec mounts something there itself.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use zone_agent::container::{MountKind, MountOptions, MountSpec, ProcessConfig};

mod container_world;
use container_world::*;

/// The zone's resolv.conf as ConfigureNetwork writes it, in the test's tempdir.
fn zone_resolv_conf(world: &World) -> PathBuf {
    let path = world.tmp().join("run-zone/resolv.conf");
    fs::create_dir_all(path.parent().expect("has a parent")).expect("zone run dir");
    fs::write(&path, "nameserver 10.96.0.10\nsearch svc.cluster.local\n").expect("resolv.conf");
    path
}

#[test]
fn test_container_gets_zone_resolv_conf_read_only_image_untouched() {
    let world = World::new();
    let mut config = world.config("dns");
    config.resolv_conf = Some(zone_resolv_conf(&world));
    let mut readonly = world.config("dns-ro");
    readonly.resolv_conf = config.resolv_conf.clone();
    readonly.readonly_rootfs = true;
    let container = world.create(&config);
    let readonly = world.create(&readonly);

    let seen = sh(&container, "cat /etc/resolv.conf");
    let write = sh(&container, "{ echo x > /etc/resolv.conf; } 2>&1 || true");
    let mount = sh(&container, "grep ' /etc/resolv.conf ' /proc/self/mounts");
    let seen_ro = sh(&readonly, "cat /etc/resolv.conf");

    assert_eq!(seen, "nameserver 10.96.0.10\nsearch svc.cluster.local\n");
    assert_eq!(
        write,
        "sh: can't create /etc/resolv.conf: Read-only file system\n"
    );
    assert!(mount.contains(" ro,nosuid,nodev,noexec"), "{mount}");
    assert_eq!(seen_ro, seen);
    // The target was made in the container's upper layer, not in the image.
    assert!(!world.image.join("etc/resolv.conf").exists());
}

#[test]
fn test_container_image_resolv_conf_symlink_replaced_in_container_only() {
    let world = World::new();
    // As systemd-resolved images have it: a link to a file that is not there.
    let link = world.image.join("etc/resolv.conf");
    symlink("../run/systemd/resolve/stub-resolv.conf", &link).unwrap();
    let mut config = world.config("dns");
    config.resolv_conf = Some(zone_resolv_conf(&world));
    let container = world.create(&config);

    let seen = sh(&container, "cat /etc/resolv.conf; ls /run 2>&1 || true");

    assert!(seen.starts_with("nameserver 10.96.0.10\n"), "{seen}");
    assert!(!seen.contains("systemd"), "the link was followed: {seen}");
    assert_eq!(
        fs::read_link(&link).unwrap(),
        Path::new("../run/systemd/resolve/stub-resolv.conf")
    );
}

#[test]
fn test_container_spec_resolv_conf_mount_wins_over_zone_one() {
    let world = World::new();
    let own = world.tmp().join("own-resolv.conf");
    fs::write(&own, "nameserver 192.0.2.53\n").unwrap();
    let mut config = world.config("own");
    config.resolv_conf = Some(zone_resolv_conf(&world));
    config.mounts = vec![MountSpec {
        destination: "/etc/resolv.conf".into(),
        kind: MountKind::Bind {
            source: own,
            recursive: false,
        },
        options: MountOptions {
            readonly: true,
            ..Default::default()
        },
    }];
    let container = world.create(&config);

    let seen = sh(&container, "cat /etc/resolv.conf");
    let mountinfo = sh(&container, "cat /proc/self/mountinfo");

    assert_eq!(seen, "nameserver 192.0.2.53\n");
    let points = mount_points(&mountinfo);
    assert_eq!(
        points.iter().filter(|p| **p == "/etc/resolv.conf").count(),
        1,
        "{mountinfo}"
    );
}

/// The zone's Workload API directory with a listening socket in it, as the agent makes it.
fn zone_workload_api(world: &World) -> (PathBuf, std::os::unix::net::UnixListener) {
    let dir = world.tmp().join("run-zone/spiffe");
    fs::create_dir_all(&dir).expect("zone spiffe dir");
    let listener =
        std::os::unix::net::UnixListener::bind(dir.join("workload.sock")).expect("socket");
    fs::set_permissions(dir.join("workload.sock"), fs::Permissions::from_mode(0o666))
        .expect("chmod socket");
    (dir, listener)
}

#[test]
fn test_container_sees_workload_api_read_only_socket_connectable_and_env() {
    let world = World::new();
    let (dir, listener) = zone_workload_api(&world);
    let mut config = world.config("spiffe");
    config.workload_api = Some(dir.clone());
    let mut readonly = world.config("spiffe-ro");
    readonly.workload_api = Some(dir);
    readonly.readonly_rootfs = true;
    let container = world.create(&config);
    let readonly = world.create(&readonly);

    let seen = sh(
        &container,
        "echo $SPIFFE_ENDPOINT_SOCKET; stat -c %F /run/spiffe/workload.sock; \
         { touch /run/spiffe/x; } 2>&1 || true; grep ' /run/spiffe ' /proc/self/mounts",
    );
    let seen_ro = sh(&readonly, "stat -c %F /run/spiffe/workload.sock");
    let mut own = ProcessConfig::new(&["sh", "-c", "echo $SPIFFE_ENDPOINT_SOCKET"]);
    own.env = vec!["SPIFFE_ENDPOINT_SOCKET=unix:///run/spire/agent.sock".into()];
    let own = sh_as(&container, own);
    // Through the read-only bind mount, as a workload's connect(2) goes: EROFS is for
    // writing files, not for connecting to a socket.
    let through_mount = container.root().join("run/spiffe/workload.sock");
    let connected = std::os::unix::net::UnixStream::connect(&through_mount);
    let accepted = listener.accept();

    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(lines[0], "unix:///run/spiffe/workload.sock", "{seen}");
    assert_eq!(lines[1], "socket", "{seen}");
    assert_eq!(
        lines[2], "touch: /run/spiffe/x: Read-only file system",
        "{seen}"
    );
    assert!(lines[3].contains(" ro,nosuid,nodev,noexec"), "{seen}");
    assert_eq!(seen_ro, "socket\n");
    assert_eq!(own, "unix:///run/spire/agent.sock\n");
    assert!(
        connected.is_ok(),
        "connecting through the mount: {connected:?}"
    );
    assert!(accepted.is_ok(), "{accepted:?}");
    // The mount point was made in the container's upper layer, not in the image.
    assert!(!world.image.join("run").exists());
}

#[test]
fn test_container_spec_mount_on_run_spiffe_wins_and_no_endpoint_env() {
    let world = World::new();
    let (dir, _listener) = zone_workload_api(&world);
    let mut config = world.config("own-spiffe");
    config.workload_api = Some(dir);
    config.mounts = vec![MountSpec {
        destination: "/run/spiffe".into(),
        kind: MountKind::Tmpfs {
            size: None,
            mode: None,
        },
        options: MountOptions::default(),
    }];
    let container = world.create(&config);

    let seen = sh(
        &container,
        "ls -A /run/spiffe; echo \"env:$SPIFFE_ENDPOINT_SOCKET\"; grep -c ' /run/spiffe ' /proc/self/mounts",
    );

    assert_eq!(seen, "env:\n1\n");
}
