//! Tier 3: `zonectl run --rootfs` inside the KVM testbed. Each test builds a small ext4 root
//! file system on the host (Debian's static busybox, /etc/passwd and /etc/group, a marker
//! file), copies it into a fresh testbed and runs zones on it.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;
use zone_tests::{
    assert_has, assert_nothing_left, testbed_run, value, TestbedOutput, REPORT_LEFTOVERS,
};

/// Where the image lands inside the testbed.
const IMAGE: &str = "/img.ext4";
const MARKER: &str = "image-marker-7f3a";
const APPLETS: &[&str] = &[
    "sh", "cat", "echo", "id", "pwd", "hostname", "ls", "touch", "stat", "test", "[", "env",
];

/// Builds the test image in a temporary directory; the directory must outlive the test run.
fn build_image() -> (TempDir, PathBuf) {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.is_file(),
        "/bin/busybox (busybox-static) is missing: run hack/setup"
    );
    let dir = tempfile::tempdir().expect("temporary directory");
    let root = dir.path().join("root");
    for sub in ["bin", "etc", "tmp"] {
        fs::create_dir_all(root.join(sub)).expect("staging directory");
    }
    fs::copy(busybox, root.join("bin/busybox")).expect("copy busybox");
    for applet in APPLETS {
        symlink("busybox", root.join("bin").join(applet)).expect("applet link");
    }
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n",
    )
    .expect("passwd");
    fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").expect("group");
    fs::write(root.join("etc/image-marker"), format!("{MARKER}\n")).expect("marker");
    let image = dir.path().join("rootfs.ext4");
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-d"])
        .arg(&root)
        .args(["-L", "rootfs"])
        .arg(&image)
        .arg("32M")
        .status()
        .expect("mkfs.ext4 (e2fsprogs) is missing: run hack/setup");
    assert!(status.success(), "mkfs.ext4 failed: {status}");
    (dir, image)
}

fn run_with_image(script: &str) -> TestbedOutput {
    let (_dir, image) = build_image();
    testbed_run(&format!("{script}\n{REPORT_LEFTOVERS}"), &[(image, IMAGE)])
}

#[test]
fn test_container_rootfs_writes_go_to_overlay_image_unchanged() {
    let out = run_with_image(
        r#"
before=$(sha256sum < /img.ext4)
zonectl run --rootfs /img.ext4 -- sh -c '
  cat /etc/image-marker
  echo written > /etc/new && cat /etc/new
  test -e /init && echo zone-init-visible
  test -c /dev/null && test -c /dev/urandom && echo dev-nodes-ok
  echo "proc-self=$(cat /proc/self/comm)"'
echo "zonectl-exit=$?"
zonectl run --rootfs /img.ext4 -- sh -c 'test -e /etc/new && echo write-survived-zone'
echo "second-exit=$?"
[ "$(sha256sum < /img.ext4)" = "$before" ] && echo image-unchanged
"#,
    );
    assert_eq!(value(&out, "zonectl-exit"), "0", "{out:#?}");
    assert_has(&out, MARKER);
    assert_has(&out, "written");
    assert_has(&out, "dev-nodes-ok");
    assert_eq!(value(&out, "proc-self"), "cat", "{out:#?}");
    assert!(!out.stdout.contains("zone-init-visible"), "{out:#?}");
    assert_eq!(value(&out, "second-exit"), "1", "{out:#?}");
    assert!(!out.stdout.contains("write-survived-zone"), "{out:#?}");
    assert_has(&out, "image-unchanged");
    assert_nothing_left(&out);
}

#[test]
fn test_container_rootfs_user_workdir_hostname_applied() {
    let out = run_with_image(
        r#"
zonectl run --rootfs /img.ext4 --user nobody -w /tmp --hostname web-1 -- sh -c '
  echo "uid=$(id -u)"; echo "gid=$(id -g)"; echo "pwd=$(pwd)"
  echo "host=$(hostname)"; echo "home=$HOME"; echo "path=$PATH"
  touch /etc/denied 2>/dev/null || echo etc-write-denied'
echo "zonectl-exit=$?"
zonectl run --rootfs /img.ext4 -u 1234:5678 -- sh -c 'echo "ids=$(id -u):$(id -g)"; echo "root-home=$HOME"'
zonectl run --rootfs /img.ext4 -- sh -c 'echo "root-uid=$(id -u)"; echo "root-home=$HOME"'
"#,
    );
    assert_eq!(value(&out, "zonectl-exit"), "0", "{out:#?}");
    assert_eq!(value(&out, "uid"), "65534", "{out:#?}");
    assert_eq!(value(&out, "gid"), "65534", "{out:#?}");
    assert_eq!(value(&out, "pwd"), "/tmp", "{out:#?}");
    assert_eq!(value(&out, "host"), "web-1", "{out:#?}");
    assert_eq!(value(&out, "home"), "/nonexistent", "{out:#?}");
    assert_eq!(
        value(&out, "path"),
        "/usr/sbin:/usr/bin:/sbin:/bin",
        "{out:#?}"
    );
    assert_has(&out, "etc-write-denied");
    assert_eq!(value(&out, "ids"), "1234:5678", "{out:#?}");
    assert_eq!(value(&out, "root-uid"), "0", "{out:#?}");
    assert_has(&out, "root-home=/root");
    assert_nothing_left(&out);
}

#[test]
fn test_container_rootfs_bad_requests_fail_clearly_nothing_left() {
    let out = run_with_image(
        r#"
dd if=/dev/zero of=/tmp/zeros.img bs=1M count=8 2>/dev/null
zonectl run --rootfs /tmp/zeros.img -- true 2>/tmp/zeros.err
echo "zeros-exit=$?"
echo "zeros-msg=$(tr '\n' ' ' < /tmp/zeros.err)"
zonectl run --rootfs /img.ext4 -u ghost -- true 2>/tmp/user.err
echo "user-exit=$?"
echo "user-msg=$(tr '\n' ' ' < /tmp/user.err)"
zonectl run --rootfs /img.ext4 -w /no/such/dir -- true 2>/tmp/cwd.err
echo "cwd-exit=$?"
echo "cwd-msg=$(tr '\n' ' ' < /tmp/cwd.err)"
zonectl run --rootfs /img.ext4:xfs -- true 2>/tmp/fstype.err
echo "fstype-exit=$?"
echo "fstype-msg=$(tr '\n' ' ' < /tmp/fstype.err)"
"#,
    );
    assert_eq!(value(&out, "zeros-exit"), "126", "{out:#?}");
    let zeros = value(&out, "zeros-msg");
    assert!(
        zeros.contains("/dev/vda") && zeros.contains("is it an ext4 image?"),
        "{out:#?}"
    );
    assert_eq!(value(&out, "user-exit"), "126", "{out:#?}");
    assert!(
        value(&out, "user-msg").contains("user \"ghost\" not found"),
        "{out:#?}"
    );
    assert_eq!(value(&out, "cwd-exit"), "126", "{out:#?}");
    assert!(
        value(&out, "cwd-msg").contains("\"/no/such/dir\" is not a directory"),
        "{out:#?}"
    );
    assert_eq!(value(&out, "fstype-exit"), "125", "{out:#?}");
    assert!(
        value(&out, "fstype-msg").contains("unknown rootfs type \"xfs\""),
        "{out:#?}"
    );
    assert_nothing_left(&out);
}
