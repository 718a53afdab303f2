//! Workload identity in the zone (SPIFFE). The host's identity authority decides; the agent
//! keeps the SVID's private key and serves the SPIFFE Workload API to the zone's containers.
//!
//! - [`state`]: the authority's decision (pending, issued, refused) and the key pending
//!   certification: NewIdentityKey and SetIdentity.
//! - [`jwt_signer`]: the bridge to the host, which signs JWT-SVIDs: JwtSigner.
//! - [`workload_api`]: the SPIFFE Workload API service; [`socket`] serves it on
//!   `/run/zone/spiffe/workload.sock`.
//! - [`endpoint`]: `SPIFFE_ENDPOINT_SOCKET` for the processes the agent runs.
//! - [`claims`]: JWT claims as a protobuf Struct.
//!
//! Containers see the socket's directory read-only at `/run/spiffe`
//! (`crate::container::volumes::WORKLOAD_API_DESTINATION`).

pub mod claims;
pub mod connection_limit;
pub mod endpoint;
pub mod jwt_signer;
pub mod socket;
pub mod state;
pub mod workload_api;

use std::sync::Arc;

use tokio_stream::Stream;
use tonic::Status;
use zone_proto::agent::v1::{
    JwtSignerAnswer, NewIdentityKeyResponse, SetIdentityRequest, SetIdentityResponse,
};

pub use jwt_signer::{Asks, JwtSigner, SignerError};
pub use state::{Decision, IdentityState, SetIdentityError, Svid};
pub use workload_api::WorkloadApi;

/// The zone's identity: what the Agent service's identity RPCs change and the Workload API
/// reads. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub state: Arc<IdentityState>,
    pub signer: JwtSigner,
}

impl Identity {
    pub fn new() -> Self {
        Self::default()
    }

    /// NewIdentityKey: a fresh pending key, its public half for the authority.
    pub fn new_key(&self) -> NewIdentityKeyResponse {
        NewIdentityKeyResponse {
            public_key: self.state.new_key(),
        }
    }

    /// SetIdentity: the authority's decision, checked before it takes effect.
    pub fn set(
        &self,
        request: SetIdentityRequest,
    ) -> Result<SetIdentityResponse, SetIdentityError> {
        self.state.set(request.decision)?;
        Ok(SetIdentityResponse {})
    }

    /// JwtSigner: `answers` becomes the host's signer stream; the asks go back to it.
    pub fn connect_signer<S>(&self, answers: S) -> Asks
    where
        S: Stream<Item = Result<JwtSignerAnswer, Status>> + Send + Unpin + 'static,
    {
        self.signer.connect(answers)
    }

    /// The Workload API over this identity.
    pub fn workload_api(&self) -> WorkloadApi {
        WorkloadApi::new(Arc::clone(&self.state), self.signer.clone())
    }
}
