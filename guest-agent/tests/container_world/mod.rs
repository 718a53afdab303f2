//! The harness of the container tests (`container.rs`, `container_zone_files.rs`): each
//! test's world is a private mount namespace, a tempdir with a busybox image and a layout
//! whose containers and cgroups are the test's own. See `container.rs` for why the host is
//! not disturbed.

// Each test binary uses part of the harness.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use zone_agent::container::{
    CgroupPlace, Container, ContainerConfig, ContainerId, Layout, ProcessConfig, RootfsSource,
};

pub const BUSYBOX: &str = "/bin/busybox";
pub const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:App:/home/app:/bin/sh\n";
pub const GROUP: &str = "root:x:0:\nwheel:x:10:app\napp:x:1000:\n";
/// Docker's default capability mask, as /proc/PID/status prints it.
pub const DOCKER_CAPS: &str = "00000000a80425fb";

pub static SERIAL: Mutex<()> = Mutex::new(());
pub static NEXT: AtomicUsize = AtomicUsize::new(0);

/// One test's world: a private mount namespace, a tempdir with a busybox image, a layout
/// whose containers and cgroups are the test's own.
pub struct World {
    pub layout: Layout,
    pub image: PathBuf,
    pub base: PathBuf,
    pub cgroup_parent: PathBuf,
    // Last: dropped after everything above is unmounted.
    pub tmp: Option<tempfile::TempDir>,
    pub _serial: MutexGuard<'static, ()>,
}

impl World {
    pub fn new() -> World {
        let serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(
            nix::unistd::geteuid().is_root(),
            "the container tests need root (mounts, cgroups, setuid): run them as root, as CI does"
        );
        check_busybox();
        // SAFETY: unshare with a flag; it affects only this thread (CLONE_FS is unshared
        // with it), which the test owns.
        let unshared = unsafe { libc::unshare(libc::CLONE_NEWNS) };
        assert_eq!(
            unshared,
            0,
            "unshare(CLONE_NEWNS): {}",
            std::io::Error::last_os_error()
        );
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_SLAVE,
            None::<&str>,
        )
        .expect("making / a recursive slave in the test's namespace");

        let tmp = tempfile::tempdir().expect("tempdir");
        let image = tmp.path().join("image");
        build_image(&image);
        let base = tmp.path().join("containers");
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let parent = format!("zone-agent-test-{}-{n}", std::process::id());
        let cgroup_mount = tmp.path().join("cgroup");
        let layout = Layout {
            containers_dir: base.clone(),
            cgroup: CgroupPlace {
                mount: cgroup_mount.clone(),
                parent: parent.clone(),
            },
        };
        World {
            layout,
            image,
            base,
            cgroup_parent: cgroup_mount.join(parent),
            tmp: Some(tmp),
            _serial: serial,
        }
    }

    pub fn tmp(&self) -> &Path {
        self.tmp.as_ref().expect("tempdir until drop").path()
    }

    pub fn config(&self, id: &str) -> ContainerConfig {
        ContainerConfig::new(
            ContainerId::new(id).expect("test ids are valid"),
            RootfsSource::Directory(self.image.clone()),
        )
    }

    pub fn create(&self, config: &ContainerConfig) -> Container {
        Container::create_in(&self.layout, config)
            .unwrap_or_else(|e| panic!("creating {}: {}", config.id, chain(&e)))
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // Containers were dropped (destroyed) before: the parent group is empty.
        if self.cgroup_parent.exists() {
            if let Err(e) = fs::remove_dir(&self.cgroup_parent) {
                eprintln!("removing {}: {e}", self.cgroup_parent.display());
            }
        }
        // Unmount whatever is left under the tempdir (the cgroup2 mount at least), deepest
        // first; the tempdir's recursive removal must never walk into a mount.
        let tmp = self.tmp().to_path_buf();
        for target in mounts_under(&tmp).iter().rev() {
            let _ = umount2(target.as_str(), MntFlags::MNT_DETACH);
        }
        if mounts_under(&tmp).is_empty() {
            drop(self.tmp.take());
        } else {
            eprintln!("mounts left under {}: not removing it", tmp.display());
            std::mem::forget(self.tmp.take());
        }
    }
}

/// Mount points under `dir` in this thread's namespace, in mount order.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let text = fs::read_to_string("/proc/thread-self/mountinfo").expect("mountinfo");
    let prefix = format!("{}/", dir.display());
    text.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| point.starts_with(&prefix) || *point == dir.to_str().unwrap_or(""))
        .map(str::to_string)
        .collect()
}

/// The busybox the tests copy must exist and be static: it runs in roots without libc.
pub fn check_busybox() {
    let bytes = fs::read(BUSYBOX).unwrap_or_else(|e| {
        panic!("{BUSYBOX}: {e}: install Debian's busybox-static (hack/setup does)")
    });
    let word = |at: usize, len: usize| {
        bytes[at..at + len]
            .iter()
            .rev()
            .fold(0u64, |acc, b| acc << 8 | u64::from(*b))
    };
    assert!(bytes.starts_with(b"\x7fELF\x02"), "{BUSYBOX} is not ELF64");
    let (phoff, phentsize, phnum) = (word(0x20, 8), word(0x36, 2), word(0x38, 2));
    let interp = (0..phnum).any(|i| word((phoff + i * phentsize) as usize, 4) == 3);
    assert!(
        !interp,
        "{BUSYBOX} is dynamically linked: install Debian's busybox-static (hack/setup does)"
    );
}

pub fn build_image(image: &Path) {
    for dir in ["bin", "etc", "root", "home/app", "srv"] {
        fs::create_dir_all(image.join(dir)).expect("image dir");
    }
    fs::copy(BUSYBOX, image.join("bin/busybox")).expect("copying busybox");
    fs::set_permissions(image.join("bin/busybox"), fs::Permissions::from_mode(0o755))
        .expect("chmod busybox");
    let list = Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            symlink("busybox", image.join("bin").join(applet)).expect("applet link");
        }
    }
    fs::write(image.join("etc/passwd"), PASSWD).expect("passwd");
    fs::write(image.join("etc/group"), GROUP).expect("group");
    fs::write(image.join("srv/in-image"), "image file\n").expect("image file");
    fs::set_permissions(image.join("home/app"), fs::Permissions::from_mode(0o777))
        .expect("chmod home");
}

pub fn chain(error: &dyn std::error::Error) -> String {
    zone_agent::request_error::report(error)
}

pub fn run(container: &Container, process: &ProcessConfig) -> Output {
    let mut command = container
        .command(process)
        .unwrap_or_else(|e| panic!("command {:?}: {}", process.args, chain(&e)));
    command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {:?}: {e}", process.args))
}

/// Runs `sh -c script` in the container and returns its stdout; fails on a non-zero exit.
pub fn sh(container: &Container, script: &str) -> String {
    sh_as(container, ProcessConfig::new(&["sh", "-c", script]))
}

pub fn sh_as(container: &Container, process: ProcessConfig) -> String {
    let out = run(container, &process);
    assert!(
        out.status.success(),
        "{:?} failed ({:?}): {}{}",
        process.args,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of `field` in a process's /proc/self/status text.
pub fn status_field<'a>(status: &'a str, field: &str) -> &'a str {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in {status}"))
        .trim()
}

pub fn mount_points(mountinfo: &str) -> Vec<&str> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .collect()
}
