//! What can go wrong, and the one line the probe prints for it on stderr.
//!
//! The e2e tests check that a zone refused an identity tells its workloads why: the zone agent
//! answers PERMISSION_DENIED with the authority's reason as the gRPC status message. The
//! `spiffe` crate keeps that text (`WorkloadApiError::PermissionDenied`, or a
//! `GrpcStatusError` with code and message for the other codes); [`render`] walks the error
//! chain and prints such a status as `CODE: message`, the code in the gRPC spelling
//! (`PERMISSION_DENIED`) and the message verbatim.

use std::error::Error;
use std::time::Duration;

use spiffe::transport::{EndpointError, GrpcStatusCode, GrpcStatusError, TransportError};
use spiffe::{JwtSvidError, WorkloadApiError};

/// Everything `spiffe-probe` reports as `error: ...` with exit status 1.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "SPIFFE_ENDPOINT_SOCKET is not set: it names the Workload API's socket, \
         such as unix:///run/spiffe/workload.sock"
    )]
    EndpointUnset,
    #[error("SPIFFE_ENDPOINT_SOCKET={value:?} is not a Workload API address (unix:///PATH or tcp://IP:PORT)")]
    EndpointInvalid {
        value: String,
        #[source]
        source: EndpointError,
    },
    /// One Workload API call (or the connection before it) failed.
    #[error("{rpc} failed")]
    Api {
        rpc: &'static str,
        #[source]
        source: WorkloadApiError,
    },
    /// The API stayed unavailable (no socket, refused, UNAVAILABLE) for all of `--wait`.
    #[error("the Workload API at {endpoint} is still unavailable after waiting {}s (--wait)", .waited.as_secs())]
    Unavailable {
        endpoint: String,
        waited: Duration,
        #[source]
        source: Box<ProbeError>,
    },
    #[error("the Workload API at {endpoint} did not answer within {}s", .after.as_secs())]
    NoAnswer { endpoint: String, after: Duration },
    #[error("the Workload API sent no X.509-SVID")]
    NoSvid,
    #[error("the Workload API sent no X.509 bundle for the SVID's trust domain {trust_domain}")]
    NoBundle { trust_domain: String },
    #[error("cannot parse the SVID's leaf certificate")]
    Leaf(#[source] der::Error),
    #[error("the SVID's private key is not a PKCS#8 P-256 key (the zone agent makes P-256 keys)")]
    UnsupportedKey(#[source] p256::pkcs8::Error),
    #[error("the JWT-SVID does not validate against the JWT bundles (FetchJWTBundles)")]
    JwtInvalid(#[source] JwtSvidError),
    #[error("the X.509-SVID stream ended after {seen} of {wanted} rotations")]
    StreamEnded { seen: u32, wanted: u32 },
    #[error("{seen} of {wanted} rotations within {}s (--timeout)", .timeout.as_secs())]
    WatchTimeout {
        seen: u32,
        wanted: u32,
        timeout: Duration,
    },
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    #[error("cannot write to stdout")]
    Output(#[from] std::io::Error),
}

impl ProbeError {
    /// Whether waiting may help: no socket yet, nobody listening, or UNAVAILABLE. Everything
    /// else (PERMISSION_DENIED, INVALID_ARGUMENT, a malformed answer) will not change.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Api { source, .. } => match source {
                WorkloadApiError::Transport(TransportError::Connect(_)) => true,
                WorkloadApiError::Transport(TransportError::Status(status)) => {
                    status.code() == GrpcStatusCode::Unavailable
                }
                _ => false,
            },
            _ => false,
        }
    }
}

/// The whole chain of `err` on one line, `outer: inner: ...`, with a gRPC status as
/// `CODE: message` (and nothing of the tonic status below it, which repeats the message
/// quoted). A source whose text its parent already shows is left out.
pub fn render(err: &(dyn Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(status) = status_text(e) {
            parts.push(status);
            break;
        }
        let text = e.to_string();
        if !parts.last().is_some_and(|last| last.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// `CODE: message` when `err` is a status the Workload API answered.
fn status_text(err: &(dyn Error + 'static)) -> Option<String> {
    if let Some(status) = err.downcast_ref::<GrpcStatusError>() {
        return Some(code_and_message(status.code(), status.message()));
    }
    match err.downcast_ref::<WorkloadApiError>()? {
        WorkloadApiError::PermissionDenied(message) => {
            Some(code_and_message(GrpcStatusCode::PermissionDenied, message))
        }
        // The crate keeps no more of SPIRE's "no identity issued" message than this.
        WorkloadApiError::NoIdentityIssued => Some(code_and_message(
            GrpcStatusCode::PermissionDenied,
            "no identity issued",
        )),
        WorkloadApiError::Transport(TransportError::Status(status)) => {
            Some(code_and_message(status.code(), status.message()))
        }
        _ => None,
    }
}

fn code_and_message(code: GrpcStatusCode, message: &str) -> String {
    let code = code.as_str().to_ascii_uppercase();
    if message.is_empty() {
        code
    } else {
        format!("{code}: {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFUSAL: &str = "this zone has no SPIFFE identity: kernel sha256:0f1e is not one \
                           of the policy's trusted_kernels";

    fn api(source: WorkloadApiError) -> ProbeError {
        ProbeError::Api {
            rpc: "FetchX509SVID",
            source,
        }
    }

    #[test]
    fn test_render_permission_denied_keeps_code_and_message_verbatim() {
        let err = api(WorkloadApiError::PermissionDenied(REFUSAL.to_owned()));
        assert_eq!(
            render(&err),
            format!("FetchX509SVID failed: PERMISSION_DENIED: {REFUSAL}")
        );
    }

    #[test]
    fn test_render_other_status_shows_code_and_message_once() {
        let err = api(WorkloadApiError::Transport(TransportError::status(
            GrpcStatusCode::InvalidArgument,
            "missing workload.spiffe.io metadata",
        )));
        assert_eq!(
            render(&err),
            "FetchX509SVID failed: INVALID_ARGUMENT: missing workload.spiffe.io metadata"
        );
    }

    #[test]
    fn test_render_status_with_source_does_not_descend_into_it() {
        let err = api(WorkloadApiError::Transport(
            TransportError::status_with_source(
                GrpcStatusCode::Unavailable,
                "identity not decided yet",
                std::io::Error::other("noise the user needs not see"),
            ),
        ));
        assert_eq!(
            render(&err),
            "FetchX509SVID failed: UNAVAILABLE: identity not decided yet"
        );
    }

    #[test]
    fn test_render_unavailable_names_endpoint_wait_and_cause() {
        let err = ProbeError::Unavailable {
            endpoint: "unix:///run/spiffe/workload.sock".to_owned(),
            waited: Duration::from_secs(3),
            source: Box::new(api(WorkloadApiError::Transport(TransportError::connect(
                std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory"),
            )))),
        };
        assert_eq!(
            render(&err),
            "the Workload API at unix:///run/spiffe/workload.sock is still unavailable after \
             waiting 3s (--wait): FetchX509SVID failed: gRPC transport connection failed: \
             No such file or directory"
        );
    }

    #[test]
    fn test_render_skips_a_source_its_parent_already_shows() {
        let err = api(WorkloadApiError::MissingRequiredField {
            field: "X509SVIDResponse.svids",
        });
        assert_eq!(
            render(&err),
            "FetchX509SVID failed: Workload API response is missing required field: \
             X509SVIDResponse.svids"
        );
    }

    #[test]
    fn test_render_no_identity_issued_is_permission_denied() {
        let err = api(WorkloadApiError::NoIdentityIssued);
        assert_eq!(
            render(&err),
            "FetchX509SVID failed: PERMISSION_DENIED: no identity issued"
        );
    }

    #[test]
    fn test_is_unavailable_only_for_connect_failures_and_unavailable() {
        let connect = api(WorkloadApiError::Transport(TransportError::connect(
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        )));
        let unavailable = api(WorkloadApiError::Transport(TransportError::status(
            GrpcStatusCode::Unavailable,
            "later",
        )));
        let invalid = api(WorkloadApiError::Transport(TransportError::status(
            GrpcStatusCode::InvalidArgument,
            "no",
        )));
        let denied = api(WorkloadApiError::PermissionDenied("no".to_owned()));
        assert!(connect.is_unavailable());
        assert!(unavailable.is_unavailable());
        assert!(!invalid.is_unavailable());
        assert!(!denied.is_unavailable());
        assert!(!ProbeError::EndpointUnset.is_unavailable());
    }
}
