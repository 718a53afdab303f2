//! `spiffe-probe` without a Workload API to talk to: no socket, or no `SPIFFE_ENDPOINT_SOCKET`.

mod common;

use std::time::Duration;

use common::probe;

#[test]
fn test_probe_missing_socket_fails_after_wait_naming_socket_and_unavailability() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let socket = dir.path().join("workload.sock");
    let endpoint = format!("unix://{}", socket.display());

    let run = probe(Some(&endpoint), &["--wait", "1", "x509"]);

    assert_eq!(run.status, Some(1), "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    let error = run.stderr.trim_end();
    assert!(error.starts_with("error: "), "{run:?}");
    assert_eq!(error.lines().count(), 1, "{run:?}");
    assert!(error.contains(&endpoint), "{run:?}");
    assert!(error.contains("unavailable"), "{run:?}");
    assert!(error.contains("No such file or directory"), "{run:?}");
    assert!(run.took >= Duration::from_secs(1), "{run:?}");
    assert!(run.took < Duration::from_secs(5), "{run:?}");
}

#[test]
fn test_probe_socket_nobody_listens_on_is_unavailable_too() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let socket = dir.path().join("workload.sock");
    // A socket file whose listener is gone: connecting is refused.
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("bind"));
    let endpoint = format!("unix://{}", socket.display());

    let run = probe(Some(&endpoint), &["--wait", "0", "jwt", "db"]);

    assert_eq!(run.status, Some(1), "{run:?}");
    assert!(run.stderr.contains("unavailable"), "{run:?}");
    assert!(run.stderr.contains("Connection refused"), "{run:?}");
}

#[test]
fn test_probe_without_endpoint_variable_names_it() {
    let run = probe(None, &["x509"]);

    assert_eq!(run.status, Some(1), "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    assert!(
        run.stderr
            .starts_with("error: SPIFFE_ENDPOINT_SOCKET is not set"),
        "{run:?}"
    );
    assert!(run.took < Duration::from_secs(5), "{run:?}");
}

#[test]
fn test_probe_malformed_endpoint_fails_at_once() {
    let run = probe(Some("/run/spiffe/workload.sock"), &["--wait", "30", "x509"]);

    assert_eq!(run.status, Some(1), "{run:?}");
    assert!(
        run.stderr
            .starts_with("error: SPIFFE_ENDPOINT_SOCKET=\"/run/spiffe/workload.sock\" is not"),
        "{run:?}"
    );
    assert!(run.took < Duration::from_secs(5), "{run:?}");
}

#[test]
fn test_probe_bad_arguments_exit_2_with_usage() {
    let run = probe(None, &["watch"]);

    assert_eq!(run.status, Some(2), "{run:?}");
    assert!(run.stderr.contains("--rotations"), "{run:?}");
}
