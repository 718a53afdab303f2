//! The SPIFFE Workload API (SPIFFE_Workload_API.md) for the zone's workloads: the zone's
//! X.509-SVID and bundles as streams that follow rotation, JWT-SVIDs signed by the host
//! through [`JwtSigner`], and JWT-SVID validation against the zone's JWT bundle.
//!
//! - Every request must carry the metadata `workload.spiffe.io: true`, else INVALID_ARGUMENT
//!   (SPIFFE_Workload_Endpoint.md §5); [`require_security_header`] checks it before any
//!   method runs.
//! - Until the host's first SetIdentity, requests wait for the decision (at most the pending
//!   timeout, then UNAVAILABLE: the client retries). A zone the authority refused gets
//!   PERMISSION_DENIED with the authority's reason (SPIFFE_Workload_API.md §4: no
//!   entitlement), and its streams end.
//! - Each stream message carries the whole current state; a new one follows each change.
//!   Streams hold no task of their own: they end with the client.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::stream;
use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};
use zone_attest::identity::jwt::validate_jwt_svid;
use zone_proto::spiffe_workload::spiffe_workload_api_server::{
    SpiffeWorkloadApi, SpiffeWorkloadApiServer,
};
use zone_proto::spiffe_workload::{
    JwtBundlesRequest, JwtBundlesResponse, Jwtsvid, JwtsvidRequest, JwtsvidResponse,
    ValidateJwtsvidRequest, ValidateJwtsvidResponse, X509BundlesRequest, X509BundlesResponse,
    X509svid, X509svidRequest, X509svidResponse,
};

use super::claims;
use super::jwt_signer::JwtSigner;
use super::state::{Decision, IdentityState, Svid};
use crate::request_error::report;

/// The metadata every Workload API request carries (SPIFFE_Workload_Endpoint.md §5).
pub const SECURITY_HEADER: &str = "workload.spiffe.io";
/// How long a request waits for the host's first decision.
pub const PENDING_TIMEOUT: Duration = Duration::from_secs(60);

/// Refuses a request without `workload.spiffe.io: true`.
// tonic fixes the interceptor's signature; its Status is large by design.
#[allow(clippy::result_large_err)]
pub fn require_security_header(request: Request<()>) -> Result<Request<()>, Status> {
    match request.metadata().get(SECURITY_HEADER) {
        Some(value) if value == "true" => Ok(request),
        _ => Err(Status::invalid_argument(
            "security header missing from request",
        )),
    }
}

type HeaderCheck = fn(Request<()>) -> Result<Request<()>, Status>;
/// The Workload API as tonic serves it: the service behind the header check.
pub type WorkloadApiService = InterceptedService<SpiffeWorkloadApiServer<WorkloadApi>, HeaderCheck>;
type Updates<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The service: reads the zone's identity decision, asks the host's signer for JWT-SVIDs.
#[derive(Debug, Clone)]
pub struct WorkloadApi {
    state: Arc<IdentityState>,
    signer: JwtSigner,
    pending_timeout: Duration,
}

impl WorkloadApi {
    pub fn new(state: Arc<IdentityState>, signer: JwtSigner) -> Self {
        Self {
            state,
            signer,
            pending_timeout: PENDING_TIMEOUT,
        }
    }

    /// Requests wait `timeout` for the host's first decision.
    pub fn with_pending_timeout(mut self, timeout: Duration) -> Self {
        self.pending_timeout = timeout;
        self
    }

    /// The service with its header check, for a tonic server.
    pub fn into_service(self) -> WorkloadApiService {
        SpiffeWorkloadApiServer::with_interceptor(self, require_security_header as HeaderCheck)
    }

    /// The SVID in force, once decided.
    async fn issued(&self) -> Result<Arc<Svid>, Status> {
        let mut decisions = self.state.subscribe();
        first_decision(&mut decisions, self.pending_timeout).await
    }

    /// The first decision, then one message per change of what `project` makes of it.
    fn updates<T>(&self, project: fn(&Svid) -> T) -> Updates<T>
    where
        T: PartialEq + Clone + Send + Sync + 'static,
    {
        enum Step<T> {
            First,
            Sent(T),
            Done,
        }
        let decisions = self.state.subscribe();
        let timeout = self.pending_timeout;
        let updates = stream::unfold(
            (decisions, Step::First),
            move |(mut decisions, step)| async move {
                let last = match step {
                    Step::Done => return None,
                    Step::First => {
                        return Some(match first_decision(&mut decisions, timeout).await {
                            Ok(svid) => {
                                let message = project(&svid);
                                (Ok(message.clone()), (decisions, Step::Sent(message)))
                            }
                            Err(status) => (Err(status), (decisions, Step::Done)),
                        })
                    }
                    Step::Sent(last) => last,
                };
                loop {
                    // The state is gone only when the agent is: the stream ends.
                    decisions.changed().await.ok()?;
                    let decision = decisions.borrow_and_update().clone();
                    match decision {
                        Decision::Pending => {}
                        Decision::Refused(reason) => {
                            return Some((Err(refused(&reason)), (decisions, Step::Done)))
                        }
                        Decision::Issued(svid) => {
                            let message = project(&svid);
                            if message != last {
                                return Some((
                                    Ok(message.clone()),
                                    (decisions, Step::Sent(message)),
                                ));
                            }
                        }
                    }
                }
            },
        );
        Box::pin(updates)
    }
}

/// Waits (at most `timeout`) for the host's decision: the SVID, or the refusal as a status.
async fn first_decision(
    decisions: &mut watch::Receiver<Decision>,
    timeout: Duration,
) -> Result<Arc<Svid>, Status> {
    let decided = tokio::time::timeout(
        timeout,
        decisions.wait_for(|decision| !matches!(decision, Decision::Pending)),
    )
    .await;
    let decision = match decided {
        Ok(Ok(decision)) => decision.clone(),
        Ok(Err(_closed)) => return Err(Status::unavailable("the zone's identity state is gone")),
        Err(_elapsed) => {
            return Err(Status::unavailable(format!(
                "the zone's identity is not decided yet (waited {timeout:?})"
            )))
        }
    };
    match decision {
        Decision::Issued(svid) => Ok(svid),
        Decision::Refused(reason) => Err(refused(&reason)),
        Decision::Pending => Err(Status::unavailable(
            "the zone's identity is not decided yet",
        )),
    }
}

fn refused(reason: &str) -> Status {
    Status::permission_denied(format!("this zone has no SPIFFE identity: {reason}"))
}

fn x509_svid(svid: &Svid) -> X509svidResponse {
    X509svidResponse {
        svids: vec![X509svid {
            spiffe_id: svid.spiffe_id.to_string(),
            x509_svid: svid.chain.concat(),
            x509_svid_key: svid.key_pkcs8_der(),
            bundle: svid.x509_bundle.concat(),
            hint: String::new(),
        }],
        ..Default::default()
    }
}

fn x509_bundles(svid: &Svid) -> X509BundlesResponse {
    X509BundlesResponse {
        crl: Vec::new(),
        bundles: [(
            svid.trust_domain.as_str().to_string(),
            svid.x509_bundle.concat(),
        )]
        .into(),
    }
}

fn jwt_bundles(svid: &Svid) -> JwtBundlesResponse {
    JwtBundlesResponse {
        bundles: [(
            svid.trust_domain.as_str().to_string(),
            svid.jwt_bundle.clone(),
        )]
        .into(),
    }
}

#[tonic::async_trait]
impl SpiffeWorkloadApi for WorkloadApi {
    type FetchX509SVIDStream = Updates<X509svidResponse>;

    async fn fetch_x509svid(
        &self,
        _request: Request<X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        Ok(Response::new(self.updates(x509_svid)))
    }

    type FetchX509BundlesStream = Updates<X509BundlesResponse>;

    async fn fetch_x509_bundles(
        &self,
        _request: Request<X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        Ok(Response::new(self.updates(x509_bundles)))
    }

    async fn fetch_jwtsvid(
        &self,
        request: Request<JwtsvidRequest>,
    ) -> Result<Response<JwtsvidResponse>, Status> {
        let request = request.into_inner();
        if request.audience.is_empty() {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        if let Some(index) = request.audience.iter().position(String::is_empty) {
            return Err(Status::invalid_argument(format!(
                "audience {index} is empty"
            )));
        }
        let svid = self.issued().await?;
        let spiffe_id = svid.spiffe_id.to_string();
        if !request.spiffe_id.is_empty() && request.spiffe_id != spiffe_id {
            return Err(Status::permission_denied(format!(
                "this zone's SPIFFE ID is {spiffe_id}, not {:?}",
                request.spiffe_id
            )));
        }
        let token = self.signer.sign(request.audience).await?;
        Ok(Response::new(JwtsvidResponse {
            svids: vec![Jwtsvid {
                spiffe_id,
                svid: token,
                hint: String::new(),
            }],
        }))
    }

    type FetchJWTBundlesStream = Updates<JwtBundlesResponse>;

    async fn fetch_jwt_bundles(
        &self,
        _request: Request<JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        Ok(Response::new(self.updates(jwt_bundles)))
    }

    async fn validate_jwtsvid(
        &self,
        request: Request<ValidateJwtsvidRequest>,
    ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
        let request = request.into_inner();
        if request.audience.is_empty() {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        if request.svid.is_empty() {
            return Err(Status::invalid_argument("svid must be specified"));
        }
        let svid = self.issued().await?;
        let (id, claims) = validate_jwt_svid(
            &request.svid,
            &svid.jwt_bundle,
            &request.audience,
            SystemTime::now(),
        )
        .map_err(|e| {
            Status::invalid_argument(format!("the JWT-SVID is not valid: {}", report(&e)))
        })?;
        // The bundle is the zone's trust domain's: a subject elsewhere is not vouched for.
        if !id.is_member_of(&svid.trust_domain) {
            return Err(Status::invalid_argument(format!(
                "the JWT-SVID's subject {id} is not in trust domain {}",
                svid.trust_domain.as_str()
            )));
        }
        Ok(Response::new(ValidateJwtsvidResponse {
            spiffe_id: id.to_string(),
            claims: Some(claims::to_struct(claims)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_header(value: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(value) = value {
            request
                .metadata_mut()
                .insert(SECURITY_HEADER, value.parse().unwrap());
        }
        request
    }

    #[test]
    fn test_require_security_header_only_true_passes() {
        assert!(require_security_header(with_header(Some("true"))).is_ok());
        for value in [None, Some("false"), Some(""), Some("TRUE ")] {
            let status = require_security_header(with_header(value)).unwrap_err();
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{value:?}");
            assert_eq!(status.message(), "security header missing from request");
        }
    }

    #[tokio::test]
    async fn test_pending_zone_waits_then_unavailable() {
        let api = WorkloadApi::new(Arc::new(IdentityState::new()), JwtSigner::new())
            .with_pending_timeout(Duration::from_millis(20));

        let status = api.issued().await.unwrap_err();

        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(
            status
                .message()
                .starts_with("the zone's identity is not decided yet"),
            "{}",
            status.message()
        );
    }

    #[tokio::test]
    async fn test_refused_zone_permission_denied_with_reason() {
        let state = Arc::new(IdentityState::new());
        let api = WorkloadApi::new(Arc::clone(&state), JwtSigner::new());
        let waiting = tokio::spawn(async move { api.issued().await });

        state.refuse("PCR 4 does not match".into()).unwrap();

        let status = waiting.await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert_eq!(
            status.message(),
            "this zone has no SPIFFE identity: PCR 4 does not match"
        );
    }

    #[tokio::test]
    async fn test_fetch_jwtsvid_empty_audience_invalid_before_waiting() {
        let api = WorkloadApi::new(Arc::new(IdentityState::new()), JwtSigner::new());
        for audience in [vec![], vec!["a".to_string(), String::new()]] {
            let request = Request::new(JwtsvidRequest {
                audience,
                spiffe_id: String::new(),
            });

            let status = api.fetch_jwtsvid(request).await.unwrap_err();

            assert_eq!(status.code(), tonic::Code::InvalidArgument);
        }
    }
}
