//! Building ext4 root filesystems: whiteouts and opaque directories across layers, the cache,
//! and hostile layers that reached the store anyway.

// Test helpers outside #[test] fns: panicking on failure is the point.
#![allow(clippy::unwrap_used)]

mod fixture;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use fixture::*;
use zone_image::rootfs::{self, RootfsError};
use zone_image::Store;

fn two_layer_image(store: &Store) {
    let lower = layer(&[
        E::Dir("etc", 0o755),
        E::File("etc/keep", b"k", 0o644),
        E::File("etc/gone", b"g", 0o644),
        E::Dir("opq", 0o755),
        E::File("opq/old", b"o", 0o644),
        E::Dir("opq/sub", 0o755),
        E::File("opq/sub/deep", b"d", 0o644),
        E::Owned("bin/tool", b"#!tool", 0o4755, 1000, 1000),
        E::HardLink("bin/tool2", "bin/tool"),
        E::Symlink("bin/sh", "tool"),
    ]);
    let upper = layer(&[
        E::File("etc/.wh.gone", b"", 0o644),
        E::File("opq/new", b"n", 0o600),
        E::File("opq/.wh..wh..opq", b"", 0o644),
        E::Dir("tmp", 0o1777),
    ]);
    let src = tempfile::tempdir().unwrap();
    oci_dir(src.path(), "two:latest", &[gz(lower), zst(upper)]);
    store.import(src.path(), None).unwrap();
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn debugfs_ls(image: &Path, dir: &str) -> String {
    let out = Command::new("debugfs")
        .args(["-R", &format!("ls -l {dir}")])
        .arg(image)
        .output()
        .expect("debugfs (e2fsprogs) is installed by hack/setup");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn test_apply_layers_whiteout_and_opaque_applied() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("images")).unwrap();
    two_layer_image(&store);
    let image = store.resolve("two").unwrap();
    let manifest = store.manifest(&image.digest).unwrap();
    let tree = dir.path().join("tree");
    fs::create_dir(&tree).unwrap();

    rootfs::apply_layers(&store, &manifest, &tree).unwrap();

    assert_eq!(names(&tree.join("etc")), ["keep"]);
    assert_eq!(
        names(&tree.join("opq")),
        ["new"],
        "opaque hides lower entries only"
    );
    let tool = fs::metadata(tree.join("bin/tool")).unwrap();
    assert_eq!(tool.mode() & 0o7777, 0o4755);
    assert_eq!((tool.uid(), tool.gid()), (1000, 1000));
    assert_eq!(tool.nlink(), 2, "hard link kept");
    assert_eq!(
        fs::read_link(tree.join("bin/sh")).unwrap(),
        Path::new("tool")
    );
    assert_eq!(
        fs::metadata(tree.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
    assert_eq!(
        fs::metadata(tree.join("opq/new")).unwrap().mode() & 0o7777,
        0o600
    );
}

#[test]
fn test_build_ext4_content_matches_layers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("images")).unwrap();
    two_layer_image(&store);

    let image = rootfs::build(&store, "two:latest").unwrap();

    assert_eq!(image.parent().unwrap(), dir.path().join("rootfs"));
    let etc = debugfs_ls(&image, "/etc");
    assert!(etc.contains("keep") && !etc.contains("gone"), "{etc}");
    let opq = debugfs_ls(&image, "/opq");
    assert!(
        opq.contains("new") && !opq.contains("old") && !opq.contains("sub"),
        "{opq}"
    );
    let bin = debugfs_ls(&image, "/bin");
    assert!(bin.contains("104755") && bin.contains("1000"), "{bin}");
    assert_eq!(
        names(&dir.path().join("rootfs")),
        [image.file_name().unwrap().to_string_lossy()]
    );
}

#[test]
fn test_build_cached_image_reused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("images")).unwrap();
    two_layer_image(&store);
    let first = rootfs::build(&store, "two").unwrap();
    let inode = fs::metadata(&first).unwrap().ino();

    let second = rootfs::build(&store, "two").unwrap();

    assert_eq!(first, second);
    assert_eq!(fs::metadata(&second).unwrap().ino(), inode, "not rebuilt");
}

#[test]
fn test_build_hostile_layer_in_store_leaves_nothing() {
    // A layer that slipped past import (the store was written by hand): the build still refuses.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("images")).unwrap();
    let layers = vec![plain(layer(&[
        E::Symlink("link", "/"),
        E::File("link/etc/x", b"x", 0o644),
    ]))];
    let src = tempfile::tempdir().unwrap();
    let digest = oci_dir(src.path(), "evil:latest", &layers);
    for blob in fs::read_dir(src.path().join("blobs/sha256")).unwrap() {
        let blob = blob.unwrap();
        fs::copy(blob.path(), store.blob_dir().join(blob.file_name())).unwrap();
    }
    let refs = serde_json::json!({"refs": {"evil:latest": digest}});
    fs::write(store.root().join("refs.json"), refs.to_string()).unwrap();

    let err = rootfs::build(&store, "evil").unwrap_err();

    assert!(matches!(err, RootfsError::Layer { .. }), "{err:?}");
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert!(
        source.contains("written through the symlink \"link\""),
        "{source}"
    );
    assert_eq!(names(&dir.path().join("rootfs")), Vec::<String>::new());
}

#[test]
fn test_build_unknown_image_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("images")).unwrap();

    let err = rootfs::build(&store, "nope").unwrap_err();

    assert!(err.to_string().contains("zonectl image ls"), "{err}");
}
