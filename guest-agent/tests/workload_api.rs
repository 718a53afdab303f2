//! The SPIFFE Workload API as a workload sees it: the agent's real servers on Unix sockets
//! in a tempdir (the `zone.agent.v1` service the host calls, the Workload API the workloads
//! call), the host's side played with an ephemeral identity authority over the real identity
//! RPCs, and the workload's side by the `spiffe` crate from crates.io (its own tonic), as a
//! Rust workload in a container would use it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use spiffe::{JwtSvid, WorkloadApiClient};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tokio_stream::StreamExt;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};
use zone_agent::containers::Containers;
use zone_agent::identity::{socket, Identity};
use zone_agent::network::Network;
use zone_agent::reaper::Reaper;
use zone_agent::server;
use zone_attest::identity::authority::IdentityAuthority;
use zone_attest::identity::spiffe_id::{SpiffeId, TrustDomain};
use zone_attest::identity::svid_key::SvidKey;
use zone_attest::identity::x509::leaf_public_key;
use zone_proto::agent::v1::agent_client::AgentClient;
use zone_proto::agent::v1::{
    jwt_signer_answer, set_identity_request, IssuedIdentity, JwtSignerAnswer,
    NewIdentityKeyRequest, SetIdentityRequest,
};
use zone_proto::spiffe_workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use zone_proto::spiffe_workload::{JwtsvidRequest, ValidateJwtsvidRequest, X509svidRequest};

const ID: &str = "spiffe://example.org/zone/web";
const TRUST_DOMAIN: &str = "example.org";

/// A zone's agent on the host: its API for the host and its Workload API, and the host's
/// identity authority.
struct Zone {
    _dir: tempfile::TempDir,
    identity: Identity,
    agent_socket: PathBuf,
    workload_socket: PathBuf,
    authority: Arc<IdentityAuthority>,
}

impl Zone {
    /// A zone whose Workload API requests wait `pending_timeout` for the first decision.
    fn start(pending_timeout: Duration) -> Zone {
        let dir = tempfile::tempdir().expect("zone test setup");
        let identity = Identity::new();
        let agent_socket = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&agent_socket).expect("zone test setup");
        let containers = Arc::new(Containers::new(Arc::new(Reaper::per_child())));
        let (shutdown, _) = watch::channel(None);
        tokio::spawn(server::serve_with_identity(
            containers,
            Arc::new(Network::zone()),
            identity.clone(),
            UnixListenerStream::new(listener),
            shutdown,
        ));
        let workload_dir = dir.path().join("run/zone/spiffe");
        let api = identity
            .workload_api()
            .with_pending_timeout(pending_timeout);
        socket::start(api, &workload_dir).expect("serving the Workload API");
        let trust_domain = TrustDomain::parse(TRUST_DOMAIN).expect("trust domain");
        Zone {
            _dir: dir,
            identity,
            agent_socket,
            workload_socket: workload_dir.join(socket::SOCKET_NAME),
            authority: Arc::new(IdentityAuthority::ephemeral(&trust_domain)),
        }
    }

    /// The endpoint a workload gets in SPIFFE_ENDPOINT_SOCKET.
    fn endpoint(&self) -> String {
        format!("unix://{}", self.workload_socket.display())
    }

    async fn workload(&self) -> WorkloadApiClient {
        WorkloadApiClient::connect_to(self.endpoint())
            .await
            .expect("connecting the spiffe client")
    }

    async fn host(&self) -> AgentClient<Channel> {
        AgentClient::new(channel(&self.agent_socket).await)
    }

    /// The host's rotation: a new key from the zone, certified, installed. Returns the leaf.
    async fn issue(&self) -> Vec<u8> {
        let mut host = self.host().await;
        let public_key = host
            .new_identity_key(NewIdentityKeyRequest {})
            .await
            .expect("NewIdentityKey")
            .into_inner()
            .public_key;
        let leaf = self.leaf_for(&public_key);
        host.set_identity(self.issued(leaf.clone()))
            .await
            .expect("SetIdentity");
        leaf
    }

    fn leaf_for(&self, public_key: &[u8]) -> Vec<u8> {
        let id = SpiffeId::parse(ID).expect("id");
        self.authority
            .issue_x509_svid(&id, public_key, Duration::from_secs(3600))
            .expect("issuing")
            .cert_der
    }

    fn issued(&self, leaf: Vec<u8>) -> SetIdentityRequest {
        SetIdentityRequest {
            decision: Some(set_identity_request::Decision::Issued(IssuedIdentity {
                spiffe_id: ID.into(),
                x509_svid_chain: vec![leaf],
                x509_bundle: self.authority.x509_bundle(),
                jwt_bundle: self.authority.jwt_bundle().into_bytes(),
                trust_domain: TRUST_DOMAIN.into(),
            })),
        }
    }

    /// Plays the host's JWT signer: opens JwtSigner and mints each ask with the authority.
    async fn serve_jwt_signer(&self) {
        let mut host = self.host().await;
        let (answers, outgoing) = mpsc::channel(16);
        let mut asks = host
            .jwt_signer(ReceiverStream::new(outgoing))
            .await
            .expect("JwtSigner")
            .into_inner();
        let authority = Arc::clone(&self.authority);
        tokio::spawn(async move {
            let id = SpiffeId::parse(ID).expect("id");
            while let Some(Ok(ask)) = asks.next().await {
                let result =
                    match authority.mint_jwt_svid(&id, &ask.audience, Duration::from_secs(300)) {
                        Ok(token) => jwt_signer_answer::Result::Token(token),
                        Err(e) => jwt_signer_answer::Result::Error(e.to_string()),
                    };
                let answer = JwtSignerAnswer {
                    id: ask.id,
                    result: Some(result),
                };
                if answers.send(answer).await.is_err() {
                    break;
                }
            }
        });
        for _ in 0..500 {
            if self.identity.signer.is_connected() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the JWT signer stream never reached the agent");
    }

    /// A raw client of the Workload API (this crate's generated one, which adds no header).
    async fn raw(&self) -> SpiffeWorkloadApiClient<Channel> {
        SpiffeWorkloadApiClient::new(channel(&self.workload_socket).await)
    }
}

async fn channel(socket: &Path) -> Channel {
    let socket = socket.to_path_buf();
    Endpoint::from_static("http://zone")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move { UnixStream::connect(socket).await.map(TokioIo::new) }
        }))
        .await
        .expect("zone test setup")
}

fn with_header<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("workload.spiffe.io", "true".parse().expect("ascii"));
    request
}

fn spki_of_pkcs8(pkcs8: &[u8]) -> Vec<u8> {
    SvidKey::from_pkcs8_der(pkcs8)
        .expect("the SVID key is PKCS#8 P-256")
        .public_key_der()
}

#[tokio::test]
async fn test_x509_svid_and_bundle_fetched_by_spiffe_client_key_matches_leaf() {
    let zone = Zone::start(Duration::from_secs(5));
    let leaf = zone.issue().await;
    let workload = zone.workload().await;

    let svid = workload.fetch_x509_svid().await.expect("FetchX509SVID");
    let bundles = workload
        .fetch_x509_bundles()
        .await
        .expect("FetchX509Bundles");

    assert_eq!(svid.spiffe_id().to_string(), ID);
    assert_eq!(svid.leaf().as_bytes(), leaf.as_slice());
    assert_eq!(
        spki_of_pkcs8(svid.private_key().as_bytes()),
        leaf_public_key(svid.leaf().as_bytes()).expect("leaf")
    );
    let trust_domain = spiffe::TrustDomain::new(TRUST_DOMAIN).expect("trust domain");
    let bundle = bundles.get(&trust_domain).expect("the zone's bundle");
    let authorities: Vec<&[u8]> = bundle.authorities().iter().map(|c| c.as_bytes()).collect();
    let expected = zone.authority.x509_bundle();
    assert_eq!(
        authorities,
        expected.iter().map(Vec::as_slice).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn test_x509_stream_waits_for_decision_then_delivers_rotation() {
    let zone = Zone::start(Duration::from_secs(5));
    let workload = zone.workload().await;
    let mut svids = workload.stream_x509_svids().await.expect("FetchX509SVID");

    let first_leaf = zone.issue().await;
    let first = tokio::time::timeout(Duration::from_secs(5), svids.next())
        .await
        .expect("the first SVID once issued")
        .expect("a message")
        .expect("an SVID");
    let rotated_leaf = zone.issue().await;
    let rotated = tokio::time::timeout(Duration::from_secs(5), svids.next())
        .await
        .expect("the rotated SVID")
        .expect("a message")
        .expect("an SVID");

    assert_eq!(first.leaf().as_bytes(), first_leaf.as_slice());
    assert_eq!(rotated.leaf().as_bytes(), rotated_leaf.as_slice());
    assert_ne!(first_leaf, rotated_leaf);
    assert_eq!(rotated.spiffe_id().to_string(), ID);
    assert_eq!(
        spki_of_pkcs8(rotated.private_key().as_bytes()),
        leaf_public_key(&rotated_leaf).expect("leaf")
    );
    assert_ne!(
        first.private_key().as_bytes(),
        rotated.private_key().as_bytes()
    );
}

#[tokio::test]
async fn test_bad_rotation_refused_over_rpc_and_old_svid_still_served() {
    let zone = Zone::start(Duration::from_secs(5));
    let mut host = zone.host().await;
    let without_key = host
        .set_identity(zone.issued(zone.leaf_for(&SvidKey::generate().public_key_der())))
        .await
        .unwrap_err();
    let leaf = zone.issue().await;
    host.new_identity_key(NewIdentityKeyRequest {})
        .await
        .expect("NewIdentityKey");

    let other_key = zone.leaf_for(&SvidKey::generate().public_key_der());
    let wrong_key = host.set_identity(zone.issued(other_key)).await.unwrap_err();
    let svid = zone
        .workload()
        .await
        .fetch_x509_svid()
        .await
        .expect("FetchX509SVID");

    assert_eq!(without_key.code(), Code::FailedPrecondition);
    assert_eq!(wrong_key.code(), Code::InvalidArgument);
    assert_eq!(
        wrong_key.message(),
        "the certificate is not for the pending key"
    );
    assert_eq!(svid.leaf().as_bytes(), leaf.as_slice());
}

#[tokio::test]
async fn test_jwt_svid_signed_by_host_validates_with_crate_and_agent() {
    let zone = Zone::start(Duration::from_secs(5));
    zone.issue().await;
    let workload = zone.workload().await;
    let unsigned = workload.fetch_jwt_svid(["aud-1"], None).await.unwrap_err();
    zone.serve_jwt_signer().await;

    let svid = workload
        .fetch_jwt_svid(["aud-1", "aud-2"], None)
        .await
        .expect("FetchJWTSVID");
    let bundles = workload.fetch_jwt_bundles().await.expect("FetchJWTBundles");
    let verified = JwtSvid::parse_and_validate(svid.token(), &bundles, &["aud-2"])
        .expect("the crate verifies");
    let validated = workload
        .validate_jwt_token("aud-1", svid.token())
        .await
        .expect("ValidateJWTSVID");
    let wrong_audience = workload
        .validate_jwt_token("someone-else", svid.token())
        .await
        .unwrap_err();
    let claims = zone
        .raw()
        .await
        .validate_jwtsvid(with_header(ValidateJwtsvidRequest {
            audience: "aud-1".into(),
            svid: svid.token().into(),
        }))
        .await
        .expect("ValidateJWTSVID")
        .into_inner();

    assert!(unsigned.to_string().contains("not connected"), "{unsigned}");
    assert_eq!(svid.spiffe_id().to_string(), ID);
    assert_eq!(verified.spiffe_id().to_string(), ID);
    assert_eq!(verified.audience(), ["aud-1", "aud-2"]);
    assert_eq!(validated.spiffe_id().to_string(), ID);
    assert!(wrong_audience.is_invalid_argument(), "{wrong_audience}");
    assert_eq!(claims.spiffe_id, ID);
    let fields = claims.claims.expect("claims").fields;
    assert_eq!(
        fields["sub"].kind,
        Some(prost_types::value::Kind::StringValue(ID.into()))
    );
    assert!(fields.contains_key("exp"), "{fields:?}");
}

#[tokio::test]
async fn test_jwt_svid_for_another_spiffe_id_permission_denied() {
    let zone = Zone::start(Duration::from_secs(5));
    zone.issue().await;
    zone.serve_jwt_signer().await;
    let workload = zone.workload().await;
    let other = spiffe::SpiffeId::new("spiffe://example.org/zone/db").expect("id");

    let err = workload
        .fetch_jwt_svid(["aud-1"], Some(&other))
        .await
        .unwrap_err();

    assert!(
        matches!(&err, spiffe::WorkloadApiError::PermissionDenied(m) if m.contains("zone/web")),
        "{err}"
    );
}

#[tokio::test]
async fn test_refused_zone_spiffe_client_told_the_reason() {
    let zone = Zone::start(Duration::from_secs(5));
    let workload = zone.workload().await;
    let reason = "PCR 9 (initrd) does not match the policy";
    zone.host()
        .await
        .set_identity(SetIdentityRequest {
            decision: Some(set_identity_request::Decision::Refused(reason.into())),
        })
        .await
        .expect("SetIdentity");

    let x509 = workload.fetch_x509_svid().await.unwrap_err();
    let jwt = workload.fetch_jwt_svid(["aud-1"], None).await.unwrap_err();

    for err in [x509, jwt] {
        assert!(
            matches!(&err, spiffe::WorkloadApiError::PermissionDenied(_)),
            "{err}"
        );
        assert!(err.to_string().contains(reason), "{err}");
    }
}

#[tokio::test]
async fn test_security_header_required_raw_client() {
    let zone = Zone::start(Duration::from_secs(5));
    zone.issue().await;
    let mut raw = zone.raw().await;

    let without = raw.fetch_x509svid(X509svidRequest {}).await.unwrap_err();
    let jwt_without = raw
        .fetch_jwtsvid(JwtsvidRequest {
            audience: vec!["a".into()],
            spiffe_id: String::new(),
        })
        .await
        .unwrap_err();
    let mut with = raw
        .fetch_x509svid(with_header(X509svidRequest {}))
        .await
        .expect("FetchX509SVID with the header")
        .into_inner();
    let first = with.message().await.expect("a message").expect("an SVID");

    for status in [without, jwt_without] {
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "security header missing from request");
    }
    assert_eq!(first.svids[0].spiffe_id, ID);
}

#[tokio::test]
async fn test_pending_zone_unavailable_after_timeout() {
    let zone = Zone::start(Duration::from_millis(200));
    let mut raw = zone.raw().await;

    let mut stream = raw
        .fetch_x509svid(with_header(X509svidRequest {}))
        .await
        .expect("the stream opens")
        .into_inner();
    let status = stream.message().await.unwrap_err();

    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status
            .message()
            .starts_with("the zone's identity is not decided yet"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn test_streams_end_with_their_clients() {
    let zone = Zone::start(Duration::from_secs(5));
    zone.issue().await;
    let mut raw = zone.raw().await;
    let mut stream = raw
        .fetch_x509svid(with_header(X509svidRequest {}))
        .await
        .expect("FetchX509SVID")
        .into_inner();
    stream.message().await.expect("a message").expect("an SVID");
    let workload = zone.workload().await;
    let mut bundles = workload
        .stream_jwt_bundles()
        .await
        .expect("FetchJWTBundles");
    bundles.next().await.expect("a message").expect("bundles");
    assert_eq!(zone.identity.state.watchers(), 2);

    drop((stream, raw, bundles, workload));

    for _ in 0..500 {
        if zone.identity.state.watchers() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "{} streams still watch the identity after their clients left",
        zone.identity.state.watchers()
    );
}
