//! The spiffe-probe test image's packing: `images/test-images/build-busybox --with-file`,
//! which `hack/build` uses to put the static `spiffe-probe` into `zones.local/spiffe-probe:1`.
//! Needs what build-busybox needs (busybox-static, jq, tar, gzip: `hack/setup`).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn build_busybox(args: &[&str]) -> Output {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../images/test-images/build-busybox");
    Command::new(script)
        .args(args)
        .output()
        .expect("run images/test-images/build-busybox")
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&text).expect("JSON")
}

fn blob(layout: &Path, digest: &serde_json::Value) -> PathBuf {
    let digest = digest.as_str().expect("a digest string");
    layout
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").expect("a sha256 digest"))
}

/// The image's one layer (tar.gz) in the OCI layout `layout`.
fn layer(layout: &Path) -> PathBuf {
    let index = json(&layout.join("index.json"));
    let manifest = json(&blob(layout, &index["manifests"][0]["digest"]));
    let layers = manifest["layers"].as_array().expect("a layers array");
    assert_eq!(layers.len(), 1);
    blob(layout, &layers[0]["digest"])
}

fn tar(args: &[&str], layer: &Path) -> String {
    let out = Command::new("tar")
        .args(args)
        .arg(layer)
        .output()
        .expect("run tar");
    assert!(out.status.success(), "tar {args:?}: {out:?}");
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// `tar -tv`'s line for `path` in the layer.
fn listing(layer: &Path, path: &str) -> String {
    tar(&["-tvzf"], layer)
        .lines()
        .find(|line| line.ends_with(&format!(" {path}")) || line.contains(&format!(" {path} -> ")))
        .unwrap_or_else(|| panic!("{path} is not in the layer"))
        .to_owned()
}

#[test]
fn test_with_file_puts_file_at_dest_with_its_mode_and_replaces_applet_link() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let src = dir.path().join("probe");
    std::fs::write(&src, b"#!/bin/sh\necho probe\n").expect("write SRC");
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o750)).expect("chmod SRC");
    let layout = dir.path().join("image");
    let src = src.to_str().expect("a UTF-8 path");

    let out = build_busybox(&[
        layout.to_str().expect("a UTF-8 path"),
        "--ref",
        "zones.local/probe:1",
        "--cmd",
        r#"["probe"]"#,
        "--with-file",
        &format!("{src}:/usr/local/bin/probe"),
        "--with-file",
        &format!("{src}:/bin/sh"),
    ]);

    assert!(out.status.success(), "{out:?}");
    let index = json(&layout.join("index.json"));
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "zones.local/probe:1"
    );
    let layer = layer(&layout);
    let entry = listing(&layer, "./usr/local/bin/probe");
    assert!(entry.starts_with("-rwxr-x--- 0/0 "), "{entry}");
    let content = Command::new("tar")
        .args(["-xzOf"])
        .arg(&layer)
        .arg("./usr/local/bin/probe")
        .output()
        .expect("run tar");
    assert_eq!(content.stdout, b"#!/bin/sh\necho probe\n");
    // /bin/sh was a link to busybox: it is now the file, and busybox is left alone.
    assert!(listing(&layer, "./bin/sh").starts_with("-rwxr-x--- 0/0 "));
    assert!(listing(&layer, "./bin/busybox").starts_with("-rwxr-xr-x 0/0 "));
    assert!(listing(&layer, "./bin/ls").contains("./bin/ls -> busybox"));
}

#[test]
fn test_with_file_is_deterministic() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let src = dir.path().join("probe");
    std::fs::write(&src, b"probe").expect("write SRC");
    let spec = format!("{}:/usr/bin/spiffe-probe", src.display());
    let a = dir.path().join("a");
    let b = dir.path().join("b");

    for layout in [&a, &b] {
        let out = build_busybox(&[layout.to_str().expect("UTF-8"), "--with-file", &spec]);
        assert!(out.status.success(), "{out:?}");
    }

    assert_eq!(
        std::fs::read(a.join("index.json")).expect("read"),
        std::fs::read(b.join("index.json")).expect("read")
    );
}

#[test]
fn test_with_file_rejects_relative_dest() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let src = dir.path().join("probe");
    std::fs::write(&src, b"probe").expect("write SRC");
    let layout = dir.path().join("image");

    let out = build_busybox(&[
        layout.to_str().expect("UTF-8"),
        "--with-file",
        &format!("{}:usr/bin/probe", src.display()),
    ]);

    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("DEST 'usr/bin/probe' must be an absolute path in the image"),
        "{stderr}"
    );
    assert!(!layout.exists());
}

#[test]
fn test_with_file_rejects_missing_src() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let src = dir.path().join("not-built");
    let layout = dir.path().join("image");

    let out = build_busybox(&[
        layout.to_str().expect("UTF-8"),
        "--with-file",
        &format!("{}:/usr/bin/probe", src.display()),
    ]);

    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("SRC '{}' does not exist", src.display())),
        "{stderr}"
    );
    assert!(!layout.exists());
}

#[test]
fn test_with_file_rejects_dest_escaping_or_naming_a_directory() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let src = dir.path().join("probe");
    std::fs::write(&src, b"probe").expect("write SRC");
    let src = src.to_str().expect("UTF-8");
    let layout = dir.path().join("image");
    let layout = layout.to_str().expect("UTF-8");

    for (dest, code, says) in [
        ("/usr/../../etc/x", 2, "must be a plain path"),
        ("/", 2, "must be a plain path"),
        ("/bin", 1, "is a directory in the image"),
    ] {
        let out = build_busybox(&[layout, "--with-file", &format!("{src}:{dest}")]);
        assert_eq!(out.status.code(), Some(code), "{dest}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{dest}: {out:?}"
        );
    }
}
