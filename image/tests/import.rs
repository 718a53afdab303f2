//! Importing images into the store: each format round-trips; every bad input is refused with a
//! message naming the problem and leaves the store's files exactly as they were.

// Test helpers outside #[test] fns: panicking on failure is the point.
#![allow(clippy::unwrap_used)]

mod fixture;

use std::fs;
use std::path::Path;

use fixture::*;
use zone_image::{ImportError, Store};

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("images")).unwrap();
    (dir, store)
}

fn check_imported(store: &Store, name: &str) {
    let list = store.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].name, name);
    assert_eq!(list[0].created.as_deref(), Some("2024-01-02T03:04:05Z"));
    let details = store.inspect(name).unwrap();
    assert_eq!(details.config.cmd, ["sh"]);
    assert_eq!(details.config.env, ["PATH=/bin"]);
    assert_eq!(details.config.working_dir, "/");
    assert_eq!(details.digest, list[0].digest);
    assert_eq!(
        store.inspect(&list[0].digest.hex()[..8]).unwrap().digest,
        list[0].digest
    );
}

/// Imports `path`, expects a failure whose message (with sources) contains `needle`, and
/// checks the store is unchanged.
fn rejected(path: &Path, needle: &str) -> ImportError {
    let (_dir, store) = store();
    let before = tree(store.root());
    let err = store.import(path, Some("bad:latest")).unwrap_err();
    let mut message = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    assert_eq!(
        tree(store.root()),
        before,
        "store changed by a rejected import"
    );
    assert!(store.list().unwrap().is_empty());
    err
}

fn hostile_dir(entries: &[E]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut layers = base_layers();
    layers.push(plain(layer(entries)));
    oci_dir(dir.path(), "hostile:latest", &layers);
    dir
}

#[test]
fn test_import_oci_dir_round_trips() {
    let (_dir, store) = store();
    let src = tempfile::tempdir().unwrap();
    let mut layers = base_layers();
    layers.push(zst(layer(&[E::File("etc/motd", b"hi", 0o644)])));
    let digest = oci_dir(src.path(), "busybox:latest", &layers);

    let image = store.import(src.path(), None).unwrap();

    assert_eq!(image.name, "busybox:latest");
    assert_eq!(image.digest, digest);
    check_imported(&store, "busybox:latest");
    assert_eq!(store.resolve("busybox").unwrap().digest, digest);
    assert!(store.tmp_is_empty());
}

#[test]
fn test_import_oci_archive_round_trips() {
    let (_dir, store) = store();
    let src = tempfile::tempdir().unwrap();
    let digest = oci_dir(&src.path().join("layout"), "arch:v1", &base_layers());
    let archive = src.path().join("image.tar");
    tar_dir(&src.path().join("layout"), &archive);

    let image = store.import(&archive, Some("renamed:v2")).unwrap();

    assert_eq!(image.digest, digest);
    check_imported(&store, "renamed:v2");
}

#[test]
fn test_import_docker_archive_round_trips() {
    let (_dir, store) = store();
    let src = tempfile::tempdir().unwrap();
    let archive = src.path().join("docker.tar");
    let mut layers = base_layers();
    layers.push(plain(layer(&[E::File("etc/motd", b"hi", 0o644)])));
    docker_archive(&archive, "dock:latest", &layers);

    let image = store.import(&archive, None).unwrap();

    assert_eq!(image.name, "dock:latest");
    check_imported(&store, "dock:latest");
    let details = store.inspect("dock").unwrap();
    assert_eq!(details.manifest.layers.len(), 2);
    assert_eq!(
        details.layers[0].media_type,
        zone_image::media::OCI_LAYER_GZIP
    );
    assert_eq!(
        details.layers[1].media_type,
        zone_image::media::OCI_LAYER_TAR
    );
}

#[test]
fn test_import_parent_entry_rejected() {
    let src = hostile_dir(&[E::File("../evil", b"x", 0o644)]);
    let err = rejected(src.path(), "\"../evil\" has a `..` component");
    assert!(matches!(err, ImportError::Layer { .. }));
}

#[test]
fn test_import_absolute_entry_rejected() {
    let src = hostile_dir(&[E::File("/etc/x", b"x", 0o644)]);
    rejected(src.path(), "\"/etc/x\" is an absolute path");
}

#[test]
fn test_import_write_through_symlink_rejected() {
    let src = hostile_dir(&[E::Symlink("link", "/"), E::File("link/etc/x", b"x", 0o644)]);
    rejected(
        src.path(),
        "\"link/etc/x\" would be written through the symlink \"link\"",
    );
}

#[test]
fn test_import_symlink_from_lower_layer_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let layers = vec![
        plain(layer(&[E::Symlink("etc", "/etc")])),
        plain(layer(&[E::File("etc/shadow", b"x", 0o600)])),
    ];
    oci_dir(dir.path(), "x:latest", &layers);
    rejected(dir.path(), "through the symlink \"etc\"");
}

#[test]
fn test_import_hardlink_outside_rejected() {
    let src = hostile_dir(&[E::HardLink("passwd", "../../etc/passwd")]);
    rejected(src.path(), "hard link \"passwd\" points outside the root");
    let src = hostile_dir(&[E::HardLink("shadow", "/etc/shadow")]);
    rejected(src.path(), "points outside the root, to \"/etc/shadow\"");
}

#[test]
fn test_import_whiteout_through_symlink_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let layers = vec![
        plain(layer(&[E::Symlink("link", "/etc")])),
        plain(layer(&[E::File("link/.wh.passwd", b"", 0o644)])),
    ];
    oci_dir(dir.path(), "x:latest", &layers);
    rejected(
        dir.path(),
        "\"link/.wh.passwd\" would be written through the symlink \"link\"",
    );
}

#[test]
fn test_import_tampered_blob_rejected() {
    let src = tempfile::tempdir().unwrap();
    let layers = base_layers();
    oci_dir(src.path(), "t:latest", &layers);
    let blob = src
        .path()
        .join("blobs/sha256")
        .join(zone_image::Digest::of_bytes(&layers[0].blob).hex());
    let mut bytes = fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&blob, &bytes).unwrap();

    rejected(src.path(), "layer blob does not match its digest");
}

#[test]
fn test_import_wrong_size_rejected() {
    let src = tempfile::tempdir().unwrap();
    let layers = base_layers();
    oci_dir(src.path(), "t:latest", &layers);
    let blob = src
        .path()
        .join("blobs/sha256")
        .join(zone_image::Digest::of_bytes(&layers[0].blob).hex());
    let mut bytes = fs::read(&blob).unwrap();
    bytes.extend_from_slice(b"more");
    fs::write(&blob, &bytes).unwrap();

    rejected(src.path(), "its descriptor says");
}

#[test]
fn test_import_unknown_media_type_rejected() {
    let src = tempfile::tempdir().unwrap();
    let mut layers = base_layers();
    layers[0].media_type = "application/x-bogus-layer".into();
    oci_dir(src.path(), "u:latest", &layers);

    rejected(
        src.path(),
        "unsupported media type \"application/x-bogus-layer\"",
    );
}

#[test]
fn test_import_truncated_archive_rejected() {
    let src = tempfile::tempdir().unwrap();
    oci_dir(&src.path().join("layout"), "tr:latest", &base_layers());
    let archive = src.path().join("image.tar");
    tar_dir(&src.path().join("layout"), &archive);
    let bytes = fs::read(&archive).unwrap();
    fs::write(&archive, &bytes[..bytes.len() / 2 + 100]).unwrap();

    rejected(&archive, "truncated");
}

#[test]
fn test_import_missing_blob_rejected() {
    let src = tempfile::tempdir().unwrap();
    let layers = base_layers();
    oci_dir(src.path(), "m:latest", &layers);
    let digest = zone_image::Digest::of_bytes(&layers[0].blob);
    fs::remove_file(src.path().join("blobs/sha256").join(digest.hex())).unwrap();

    rejected(src.path(), &format!("the image lacks layer {digest}"));
}

#[test]
fn test_import_no_linux_amd64_rejected() {
    let src = tempfile::tempdir().unwrap();
    oci_dir_multi(
        src.path(),
        &[("linux", "arm64"), ("windows", "amd64")],
        &base_layers(),
    );

    rejected(
        src.path(),
        "no linux/amd64 image (it has: linux/arm64, windows/amd64)",
    );
}

#[test]
fn test_import_multi_platform_picks_amd64() {
    let (_dir, store) = store();
    let src = tempfile::tempdir().unwrap();
    oci_dir_multi(
        src.path(),
        &[("linux", "arm64"), ("linux", "amd64")],
        &base_layers(),
    );

    let image = store.import(src.path(), None).unwrap();

    assert_eq!(image.name, "multi:latest");
    check_imported(&store, "multi:latest");
}

#[test]
fn test_import_docker_diff_id_mismatch_rejected() {
    let src = tempfile::tempdir().unwrap();
    let archive = src.path().join("docker.tar");
    let mut layers = base_layers();
    layers[0].tar.push(0);
    docker_archive(&archive, "d:latest", &layers);

    rejected(&archive, "against the config's diff_ids");
}

#[test]
fn test_remove_unreferenced_blobs_collected() {
    let (_dir, store) = store();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    oci_dir(a.path(), "a:latest", &base_layers());
    let mut layers = base_layers();
    layers.push(plain(layer(&[E::File("b", b"b", 0o644)])));
    oci_dir(b.path(), "b:latest", &layers);
    store.import(a.path(), None).unwrap();
    let only_a = tree(store.root());
    store.import(b.path(), None).unwrap();
    assert_eq!(fs::read_dir(store.blob_dir()).unwrap().count(), 3 + 3);

    let deleted = store.remove("b").unwrap();

    assert_eq!(
        deleted, 3,
        "b's manifest, config and own layer; the shared layer stays"
    );
    assert_eq!(tree(store.root()), only_a);
    store.remove("a:latest").unwrap();
    assert_eq!(fs::read_dir(store.blob_dir()).unwrap().count(), 0);
    assert!(matches!(
        store.remove("a"),
        Err(zone_image::StoreError::NotFound(_))
    ));
}
