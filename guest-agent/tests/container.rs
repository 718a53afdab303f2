//! Containers for real, as root on the host (as CI and `hack/test` run the tests): a tiny
//! busybox root in a tempdir becomes a container's lower layer, processes run through
//! `Container::command`, and the tests look at what they see.
//!
//! The host is not disturbed: each test runs in a mount namespace of its own thread
//! (`unshare(CLONE_NEWNS)` changes only the calling thread, and its children inherit it),
//! with `/` a recursive slave, so no mount made here reaches the host and all of them vanish
//! with the thread. Cgroups are global: each test makes its own parent group and removes it.
//! The tests run one at a time (they share the cgroup tree and the agent's registry).

use std::fs;
use std::os::unix::fs::symlink;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use zone_agent::container::{
    default_capabilities, CapSet, CgroupError, ConfigError, Container, ContainerConfig,
    ContainerError, ContainerId, Limit, Limits, MountKind, MountOptions, MountSpec, ProcessConfig,
    Rlimit, RootfsSource, RootfsSpec,
};

mod container_world;
use container_world::*;

#[test]
fn test_container_sees_only_its_own_mounts_bind_and_tmpfs() {
    let world = World::new();
    let volume = world.tmp().join("volume");
    fs::create_dir(&volume).unwrap();
    fs::write(volume.join("hello"), "from the zone\n").unwrap();
    let mut config = world.config("c1");
    config.mounts = vec![
        MountSpec {
            destination: "/data".into(),
            kind: MountKind::Bind {
                source: volume.clone(),
                recursive: false,
            },
            options: MountOptions {
                readonly: true,
                ..Default::default()
            },
        },
        MountSpec {
            destination: "/scratch".into(),
            kind: MountKind::Tmpfs {
                size: Some(1 << 20),
                mode: Some(0o1777),
            },
            options: MountOptions {
                nosuid: true,
                nodev: true,
                ..Default::default()
            },
        },
    ];
    let container = world.create(&config);

    let mountinfo = sh(&container, "cat /proc/self/mountinfo");
    let data = sh(&container, "cat /data/hello; touch /data/x 2>&1 || true");
    let scratch = sh(
        &container,
        "echo written > /scratch/f && cat /scratch/f && grep ' /scratch ' /proc/self/mounts",
    );
    let image = sh(&container, "cat /srv/in-image; ls /dev; ls -d /tmp");

    let mut points = mount_points(&mountinfo);
    points.sort_unstable();
    assert_eq!(
        points,
        ["/", "/data", "/dev", "/dev/pts", "/dev/shm", "/proc", "/scratch", "/sys", "/tmp"],
        "{mountinfo}"
    );
    // The overlay's options and the bind's source root name the agent's directories (as
    // Docker's do); no mount of the zone is listed.
    assert!(
        !mountinfo.contains(&format!("{} ", world.tmp().display())),
        "{mountinfo}"
    );
    assert_eq!(
        data,
        "from the zone\ntouch: /data/x: Read-only file system\n"
    );
    assert!(
        scratch.starts_with("written\ntmpfs /scratch tmpfs rw,nosuid,nodev"),
        "{scratch}"
    );
    assert!(image.starts_with("image file\n"), "{image}");
    for node in ["null", "zero", "urandom", "tty", "pts", "shm", "ptmx", "fd"] {
        assert!(image.lines().any(|l| l == node), "no /dev/{node}: {image}");
    }
}

#[test]
fn test_container_root_process_gets_docker_default_caps() {
    let world = World::new();
    let container = world.create(&world.config("caps"));

    let status = sh(&container, "cat /proc/self/status");

    assert_eq!(status_field(&status, "CapEff"), DOCKER_CAPS);
    assert_eq!(status_field(&status, "CapPrm"), DOCKER_CAPS);
    assert_eq!(status_field(&status, "CapBnd"), DOCKER_CAPS);
    assert_eq!(status_field(&status, "CapInh"), "0000000000000000");
    assert_eq!(status_field(&status, "CapAmb"), "0000000000000000");
    assert_eq!(status_field(&status, "NoNewPrivs"), "0");
    assert_eq!(status_field(&status, "SigBlk"), "0000000000000000");
}

#[test]
fn test_container_user_groups_ambient_cap_no_new_privs_rlimits() {
    let world = World::new();
    let container = world.create(&world.config("user"));
    let mut process = ProcessConfig::new(&[
        "sh",
        "-c",
        "id -u; id -g; id -G; echo $HOME; pwd; ulimit -n; ulimit -Hn; cat /proc/self/status",
    ]);
    process.user = "app".into();
    process.cwd = "/home/app".into();
    process.additional_gids = vec![44, 10];
    process.no_new_privileges = true;
    process.rlimits = vec![Rlimit::parse("RLIMIT_NOFILE", 64, 128).unwrap()];
    let mut caps = default_capabilities();
    let raw = CapSet::from_names(&["CAP_NET_RAW"]).unwrap();
    caps.inheritable = raw;
    caps.ambient = raw;
    process.capabilities = Some(caps);

    let out = sh_as(&container, process);

    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..7],
        [
            "1000",
            "1000",
            "1000 10 44",
            "/home/app",
            "/home/app",
            "64",
            "128"
        ],
        "{out}"
    );
    // A non-root user keeps after exec only its ambient capabilities.
    assert_eq!(status_field(&out, "CapAmb"), "0000000000002000");
    assert_eq!(status_field(&out, "CapEff"), "0000000000002000");
    assert_eq!(status_field(&out, "CapPrm"), "0000000000002000");
    assert_eq!(status_field(&out, "CapInh"), "0000000000002000");
    assert_eq!(status_field(&out, "CapBnd"), DOCKER_CAPS);
    assert_eq!(status_field(&out, "NoNewPrivs"), "1");
}

#[test]
fn test_container_readonly_rootfs_erofs_but_tmpfs_writable() {
    let world = World::new();
    let mut config = world.config("ro");
    config.readonly_rootfs = true;
    config.mounts = vec![MountSpec {
        destination: "/scratch".into(),
        kind: MountKind::Tmpfs {
            size: None,
            mode: None,
        },
        options: MountOptions::default(),
    }];
    let container = world.create(&config);

    let out = sh(
        &container,
        "touch /new 2>&1; { echo x > /srv/in-image; } 2>&1; touch /scratch/ok /tmp/ok /dev/shm/ok && echo writable",
    );

    assert_eq!(
        out,
        "touch: /new: Read-only file system\n\
         sh: can't create /srv/in-image: Read-only file system\n\
         writable\n"
    );
}

#[test]
fn test_container_two_containers_see_neither_each_others_files_nor_mounts() {
    let world = World::new();
    let a = world.create(&world.config("a"));
    let b = world.create(&world.config("b"));

    sh(&a, "echo a > /srv/only-a");
    let seen_by_b = sh(&b, "ls /srv; cat /proc/self/mountinfo");

    assert!(!seen_by_b.contains("only-a"), "{seen_by_b}");
    assert!(!seen_by_b.contains("/containers/a"), "{seen_by_b}");
    assert_eq!(sh(&a, "cat /srv/only-a"), "a\n");
    let twice = Container::create_in(&world.layout, &world.config("a")).unwrap_err();
    assert!(
        matches!(&twice, ContainerError::AlreadyExists(id) if id.as_str() == "a"),
        "{twice}"
    );
    assert_eq!(twice.to_string(), "container a already exists");
}

#[test]
fn test_container_destroy_kills_unmounts_and_removes_cgroup() {
    let world = World::new();
    let mut config = world.config("doomed");
    config.mounts = vec![MountSpec {
        destination: "/scratch".into(),
        kind: MountKind::Tmpfs {
            size: None,
            mode: None,
        },
        options: MountOptions::default(),
    }];
    let mut container = world.create(&config);
    let cgroup = world.cgroup_parent.join("doomed");
    let mut sleeper = container
        .command(&ProcessConfig::new(&["sleep", "1000"]))
        .unwrap()
        .spawn()
        .unwrap();
    wait_until(|| container.pids().unwrap().contains(&sleeper.id()));
    assert!(cgroup.is_dir());
    assert!(!mounts_under(&world.base).is_empty());

    container
        .destroy()
        .unwrap_or_else(|e| panic!("destroy: {}", chain(&e)));

    let status = sleeper.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert_eq!(mounts_under(&world.base), Vec::<String>::new());
    assert!(!cgroup.exists());
    assert!(!world.base.join("doomed").exists());
    let after = container
        .command(&ProcessConfig::new(&["true"]))
        .unwrap_err();
    assert!(matches!(after, ContainerError::Destroyed(_)), "{after}");
    assert!(matches!(
        container.stats(),
        Err(ContainerError::Destroyed(_))
    ));
    // The id is free again.
    drop(world.create(&config));
    assert_eq!(mounts_under(&world.base), Vec::<String>::new());
}

#[test]
fn test_container_hostname_in_own_uts_namespace() {
    let world = World::new();
    let zone_hostname = nix::unistd::gethostname().unwrap();
    let mut config = world.config("named");
    config.hostname = Some("web-1".into());
    let container = world.create(&config);

    let out = sh(&container, "hostname");

    assert_eq!(out, "web-1\n");
    assert_eq!(nix::unistd::gethostname().unwrap(), zone_hostname);
}

#[test]
fn test_container_stats_cpu_and_controllers_or_missing_memory_named() {
    let world = World::new();
    let container = world.create(&world.config("busy"));

    sh(
        &container,
        "i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done",
    );
    let stats = container
        .stats()
        .unwrap_or_else(|e| panic!("stats: {}", chain(&e)));

    assert!(stats.cpu.usage_usec > 0, "{stats:?}");
    assert!(stats.cpu.usage_usec >= stats.cpu.user_usec, "{stats:?}");
    let available =
        fs::read_to_string(world.cgroup_parent.join("busy/cgroup.controllers")).unwrap();
    let has = |c: &str| available.split_whitespace().any(|a| a == c);
    assert_eq!(
        stats.memory.is_some(),
        has("memory"),
        "{available:?} {stats:?}"
    );
    assert_eq!(stats.pids.is_some(), has("pids"), "{available:?} {stats:?}");

    let mut limited = world.config("limited");
    limited.memory_limit = Some(64 << 20);
    match Container::create_in(&world.layout, &limited) {
        Ok(container) => {
            assert!(has("memory"));
            let memory = container.stats().unwrap().memory.unwrap();
            assert_eq!(memory.max, Some(64 << 20));
        }
        Err(e) => {
            assert!(!has("memory"), "{}", chain(&e));
            assert!(
                matches!(
                    e,
                    ContainerError::Cgroup(CgroupError::ControllerMissing("memory"))
                ),
                "{}",
                chain(&e)
            );
            assert!(!world.cgroup_parent.join("limited").exists());
            assert!(!world.base.join("limited").exists());
        }
    }
}

#[test]
fn test_container_update_writes_limits_or_names_missing_controller() {
    let world = World::new();
    let container = world.create(&world.config("upd"));
    let dir = world.cgroup_parent.join("upd");
    let available = fs::read_to_string(dir.join("cgroup.controllers")).unwrap();
    let has = |c: &str| available.split_whitespace().any(|a| a == c);
    let read = |file: &str| fs::read_to_string(dir.join(file)).unwrap();

    let cases = [
        (
            "memory",
            Limits {
                memory: Some(48 << 20),
                ..Limits::default()
            },
            "memory.max",
            "50331648\n",
        ),
        (
            "cpu",
            Limits {
                cpu: Some((Limit::At(50_000), 100_000)),
                ..Limits::default()
            },
            "cpu.max",
            "50000 100000\n",
        ),
        (
            "cpu",
            Limits {
                cpu: Some((Limit::Max, 100_000)),
                ..Limits::default()
            },
            "cpu.max",
            "max 100000\n",
        ),
        (
            "pids",
            Limits {
                pids: Some(Limit::At(20)),
                ..Limits::default()
            },
            "pids.max",
            "20\n",
        ),
    ];
    for (controller, limits, file, expected) in cases {
        match container.update(&limits) {
            Ok(()) => assert_eq!(read(file), expected, "{limits:?}"),
            // This host's kernel may lack the controller, or the file (cpu.max needs
            // CFS_BANDWIDTH): refused by name, nothing written.
            Err(ContainerError::Cgroup(CgroupError::ControllerMissing(c))) => {
                assert_eq!(c, controller);
                assert!(!has(controller), "{controller} is available");
            }
            Err(ContainerError::Cgroup(CgroupError::LimitMissing(path))) => {
                assert_eq!(path, dir.join(file));
                assert!(!path.exists());
            }
            Err(e) => panic!("{limits:?}: {}", chain(&e)),
        }
    }
}

#[test]
fn test_container_bad_process_and_mount_rejected_with_names() {
    let world = World::new();
    let container = world.create(&world.config("checks"));
    let mut process = ProcessConfig::new(&["true"]);
    process.user = "ghost".into();
    let user = container.command(&process).unwrap_err();
    let mut process = ProcessConfig::new(&["true"]);
    process.cwd = "/srv/in-image".into();
    let cwd = container.command(&process).unwrap_err();
    let mut hostile = world.config("hostile");
    let outside = world.tmp().join("outside");
    fs::create_dir(&outside).unwrap();
    hostile.mounts = vec![MountSpec {
        destination: "/../../etc".into(),
        kind: MountKind::Proc,
        options: MountOptions::default(),
    }];
    let dotdot = Container::create_in(&world.layout, &hostile).unwrap_err();

    assert!(user.to_string().contains("\"ghost\" not found"), "{user}");
    assert!(cwd.to_string().contains("not a directory"), "{cwd}");
    assert!(
        matches!(dotdot, ContainerError::Config(ConfigError::Destination(_))),
        "{dotdot}"
    );
    assert!(!world.base.join("hostile").exists());
}

#[test]
fn test_container_mount_through_image_symlink_stays_in_root() {
    let world = World::new();
    let outside = world.tmp().join("outside");
    fs::create_dir(&outside).unwrap();
    // The image's link points at a zone directory by its absolute path.
    symlink(&outside, world.image.join("escape")).unwrap();
    let inside = world.image.join(outside.strip_prefix("/").unwrap());
    fs::create_dir_all(&inside).unwrap();
    let mut config = world.config("links");
    config.mounts = vec![MountSpec {
        destination: "/escape/mnt".into(),
        kind: MountKind::Tmpfs {
            size: None,
            mode: None,
        },
        options: MountOptions::default(),
    }];
    let container = world.create(&config);

    sh(&container, "echo in > /escape/mnt/file");

    assert!(!outside.join("mnt").exists(), "the mount escaped the root");
    assert!(mounts_under(&outside).is_empty());
    assert_eq!(sh(&container, "cat /escape/mnt/file"), "in\n");
}

#[test]
fn test_container_ext4_block_device_root_and_device_in_use() {
    let world = World::new();
    let img = world.tmp().join("rootfs.ext4");
    let mkfs = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&world.image)
        .arg(&img)
        .arg("32M")
        .output()
        .unwrap_or_else(|e| panic!("mkfs.ext4: {e}: install e2fsprogs (hack/setup does)"));
    assert!(mkfs.status.success(), "mkfs.ext4: {mkfs:?}");
    let loop_dev = LoopDevice::attach(&img);
    let spec = RootfsSpec::new(loop_dev.path(), "ext4").unwrap();
    let config = ContainerConfig::new(
        ContainerId::new("disk").unwrap(),
        RootfsSource::Device(spec.clone()),
    );
    let second = ContainerConfig::new(
        ContainerId::new("disk2").unwrap(),
        RootfsSource::Device(spec),
    );

    let mut container = world.create(&config);
    let out = sh(
        &container,
        "cat /srv/in-image; grep ' / ' /proc/self/mounts",
    );
    let in_use = Container::create_in(&world.layout, &second).unwrap_err();
    container.destroy().unwrap();

    assert!(out.starts_with("image file\noverlay / overlay"), "{out}");
    assert_eq!(
        in_use.to_string(),
        format!(
            "{} is already the rootfs of container disk",
            loop_dev.path()
        )
    );
    assert!(!world.base.join("disk2").exists());
    assert_eq!(mounts_under(&world.base), Vec::<String>::new());
}

/// A read-only loop device over an image file, detached on drop.
struct LoopDevice(String);

impl LoopDevice {
    fn attach(file: &Path) -> LoopDevice {
        let out = Command::new("losetup")
            .args(["--find", "--show", "--read-only"])
            .arg(file)
            .output()
            .unwrap_or_else(|e| panic!("losetup: {e}: install util-linux"));
        assert!(out.status.success(), "losetup: {out:?}");
        LoopDevice(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn path(&self) -> &str {
        &self.0
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

fn wait_until(mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("condition not met within 5 s");
}
