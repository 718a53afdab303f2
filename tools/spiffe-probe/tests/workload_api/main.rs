//! `spiffe-probe` against a fake Workload API (the zone agent's proto, scripted per test):
//! what each subcommand prints, and what it says when the API refuses or is not ready yet.

#[path = "../common/mod.rs"]
mod common;
mod fake;
mod pki;

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use tonic::Code;

use common::probe;
use fake::{Script, Server};
use pki::{unix_now, Authority, WORKLOAD_ID};

/// The zone agent's words for a zone the policy refused (`SetIdentity` `refused`).
const REFUSAL: &str = "this zone has no SPIFFE identity: kernel \
    sha256:5f0c2e1a9b8d7c6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1 is not one of the \
    policy's trusted_kernels";

fn value<'a>(stdout: &'a str, key: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .filter_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn test_x509_prints_id_chain_bundle_expiry_and_key_match() {
    let authority = Authority::new();
    let svid = authority.issue(WORKLOAD_ID, 0x8a_01, unix_now() + 3600);
    let server = Server::start(Script {
        svids: vec![svid.clone()],
        bundle: authority.ca.clone(),
        ..Script::default()
    });

    let run = probe(Some(&server.endpoint()), &["x509"]);

    assert_eq!(run.status, Some(0), "{run:?}");
    assert_eq!(
        run.stdout,
        format!(
            "spiffe-id={WORKLOAD_ID}\nsvid-cert={}\nbundle-cert={}\nnot-after={}\n\
             key-matches-leaf=yes\n",
            STANDARD.encode(&svid.leaf),
            STANDARD.encode(&authority.ca),
            svid.not_after
        )
    );
    assert!(run.stderr.is_empty(), "{run:?}");
}

#[test]
fn test_x509_key_of_another_leaf_prints_no() {
    let authority = Authority::new();
    let svid = authority.issue_with_wrong_key(WORKLOAD_ID, 7, unix_now() + 3600);
    let server = Server::start(Script {
        svids: vec![svid],
        bundle: authority.ca.clone(),
        ..Script::default()
    });

    let run = probe(Some(&server.endpoint()), &["x509"]);

    assert_eq!(run.status, Some(0), "{run:?}");
    assert_eq!(value(&run.stdout, "key-matches-leaf"), ["no"], "{run:?}");
}

#[test]
fn test_x509_refused_identity_shows_permission_denied_and_reason_at_once() {
    let server = Server::start(Script {
        refuse: Some((Code::PermissionDenied, REFUSAL.to_owned())),
        ..Script::default()
    });

    let run = probe(Some(&server.endpoint()), &["--wait", "30", "x509"]);

    assert_eq!(run.status, Some(1), "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    assert_eq!(
        run.stderr,
        format!("error: FetchX509SVID failed: PERMISSION_DENIED: {REFUSAL}\n")
    );
    assert!(run.took < Duration::from_secs(5), "not retried: {run:?}");
    assert_eq!(server.calls(), 1);
}

#[test]
fn test_jwt_refused_shows_code_and_message() {
    let server = Server::start(Script {
        refuse: Some((
            Code::FailedPrecondition,
            "the JWT signer is not connected".to_owned(),
        )),
        ..Script::default()
    });

    let run = probe(Some(&server.endpoint()), &["jwt", "db"]);

    assert_eq!(run.status, Some(1), "{run:?}");
    assert_eq!(
        run.stderr,
        "error: FetchJWTSVID failed: FAILED_PRECONDITION: the JWT signer is not connected\n"
    );
}

#[test]
fn test_x509_waits_while_unavailable_then_prints() {
    let authority = Authority::new();
    let server = Server::start(Script {
        unavailable_first: 3,
        svids: vec![authority.issue(WORKLOAD_ID, 1, unix_now() + 3600)],
        bundle: authority.ca.clone(),
        ..Script::default()
    });

    let run = probe(Some(&server.endpoint()), &["--wait", "20", "x509"]);

    assert_eq!(run.status, Some(0), "{run:?}");
    assert_eq!(value(&run.stdout, "spiffe-id"), [WORKLOAD_ID], "{run:?}");
    assert_eq!(server.calls(), 4);
}

#[test]
fn test_x509_unavailable_past_wait_names_status_message() {
    let server = Server::start(Script {
        unavailable_first: usize::MAX,
        ..Script::default()
    });

    let run = probe(Some(&server.endpoint()), &["--wait", "1", "x509"]);

    assert_eq!(run.status, Some(1), "{run:?}");
    assert_eq!(
        run.stderr,
        format!(
            "error: the Workload API at {} is still unavailable after waiting 1s (--wait): \
             FetchX509SVID failed: UNAVAILABLE: the zone's identity is not decided yet\n",
            server.endpoint()
        )
    );
    assert!(server.calls() >= 2, "retried: {}", server.calls());
}

#[test]
fn test_jwt_prints_validated_claims_and_token() {
    let authority = Authority::new();
    let exp = unix_now() + 300;
    let token = authority.jwt(WORKLOAD_ID, &["spiffe://example.org/db"], exp);
    let server = Server::start(Script {
        jwt: token.clone(),
        jwks: authority.jwks(),
        ..Script::default()
    });

    let run = probe(
        Some(&server.endpoint()),
        &["jwt", "spiffe://example.org/db"],
    );

    assert_eq!(run.status, Some(0), "{run:?}");
    assert_eq!(
        run.stdout,
        format!(
            "jwt-spiffe-id={WORKLOAD_ID}\njwt-audience=spiffe://example.org/db\n\
             jwt-expiry={exp}\njwt-valid=yes\njwt-token={token}\n"
        )
    );
    assert_eq!(server.jwt_audiences(), [["spiffe://example.org/db"]]);
}

#[test]
fn test_jwt_audience_list_is_comma_joined() {
    let authority = Authority::new();
    let token = authority.jwt(WORKLOAD_ID, &["db", "cache"], unix_now() + 300);
    let server = Server::start(Script {
        jwt: token,
        jwks: authority.jwks(),
        ..Script::default()
    });

    let run = probe(Some(&server.endpoint()), &["jwt", "cache"]);

    assert_eq!(run.status, Some(0), "{run:?}");
    assert_eq!(value(&run.stdout, "jwt-audience"), ["db,cache"], "{run:?}");
}

#[test]
fn test_jwt_not_signed_by_bundle_key_is_an_error() {
    let authority = Authority::new();
    let server = Server::start(Script {
        jwt: authority.forged_jwt(WORKLOAD_ID, &["db"], unix_now() + 300),
        jwks: authority.jwks(),
        ..Script::default()
    });

    let run = probe(Some(&server.endpoint()), &["jwt", "db"]);

    assert_eq!(run.status, Some(1), "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    assert!(
        run.stderr
            .starts_with("error: the JWT-SVID does not validate against the JWT bundles"),
        "{run:?}"
    );
}

#[test]
fn test_jwt_for_another_audience_is_an_error() {
    let authority = Authority::new();
    let server = Server::start(Script {
        jwt: authority.jwt(WORKLOAD_ID, &["somebody-else"], unix_now() + 300),
        jwks: authority.jwks(),
        ..Script::default()
    });

    let run = probe(Some(&server.endpoint()), &["jwt", "db"]);

    assert_eq!(run.status, Some(1), "{run:?}");
    assert!(run.stderr.contains("does not validate"), "{run:?}");
}

#[test]
fn test_watch_reports_each_new_svid_and_stops_after_n_rotations() {
    let authority = Authority::new();
    let now = unix_now();
    let first = authority.issue(WORKLOAD_ID, 0x01, now + 3600);
    // Already expired when the third arrives: that rotation came too late.
    let second = authority.issue(WORKLOAD_ID, 0x02, now - 1);
    // The second SVID is sent twice (as on a bundle update): one rotation, not two. The
    // third's serial is DER 00 ff (sign padding), printed without the padding.
    let third = authority.issue(WORKLOAD_ID, 0xff, now + 20);
    let server = Server::start(Script {
        svids: vec![first.clone(), second.clone(), second, third],
        pause: Duration::from_millis(100),
        bundle: authority.ca.clone(),
        ..Script::default()
    });

    let run = probe(Some(&server.endpoint()), &["watch", "--rotations", "2"]);

    assert_eq!(run.status, Some(0), "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{run:?}");
    let received: Vec<u64> = value(&run.stdout, "svid serial")
        .iter()
        .map(|rest| {
            rest.rsplit_once("received=")
                .and_then(|(_, t)| t.parse().ok())
                .expect("received=<unix>")
        })
        .collect();
    assert_eq!(
        lines,
        [
            format!(
                "svid serial=01 not-after={} received={}",
                now + 3600,
                received[0]
            ),
            format!(
                "svid serial=02 not-after={} received={}",
                now - 1,
                received[1]
            ),
            "rotated-before-expiry=yes".to_owned(),
            format!(
                "svid serial=ff not-after={} received={}",
                now + 20,
                received[2]
            ),
            "rotated-before-expiry=no".to_owned(),
            "rotations=2".to_owned(),
        ]
    );
    assert!(received.iter().all(|&t| t >= now && t <= unix_now()));
}

#[test]
fn test_watch_times_out_without_enough_rotations() {
    let authority = Authority::new();
    let server = Server::start(Script {
        svids: vec![authority.issue(WORKLOAD_ID, 1, unix_now() + 3600)],
        bundle: authority.ca.clone(),
        ..Script::default()
    });

    let run = probe(
        Some(&server.endpoint()),
        &["watch", "--rotations", "1", "--timeout", "1"],
    );

    assert_eq!(run.status, Some(1), "{run:?}");
    assert_eq!(value(&run.stdout, "svid serial").len(), 1, "{run:?}");
    assert_eq!(
        run.stderr,
        "error: 0 of 1 rotations within 1s (--timeout)\n"
    );
    assert!(run.took < Duration::from_secs(5), "{run:?}");
}

#[test]
fn test_watch_stream_end_is_an_error() {
    let authority = Authority::new();
    let server = Server::start(Script {
        svids: vec![authority.issue(WORKLOAD_ID, 1, unix_now() + 3600)],
        close_after_svids: true,
        bundle: authority.ca.clone(),
        ..Script::default()
    });

    let run = probe(Some(&server.endpoint()), &["watch", "--rotations", "3"]);

    assert_eq!(run.status, Some(1), "{run:?}");
    assert_eq!(
        run.stderr,
        "error: the X.509-SVID stream ended after 0 of 3 rotations\n"
    );
}
