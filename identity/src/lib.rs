//! zone-identity: this host's identity authority for a running zone, shared by `zonectl` and
//! the containerd shim (each runs it for the zones it starts; no daemon).
//!
//! [`start`] runs on a thread of its own for the zone's lifetime:
//! 1. loads the registration policy and opens the authority's keys and the zone CA; anything
//!    missing is a refusal that names it ([`setup`]);
//! 2. enrolls the zone's vTPM with the zone CA (the EK as the VMM read it before the zone ran);
//! 3. asks the agent for a fresh key, attests the zone with a quote bound to that key over a
//!    challenge it chose, and only if the evidence verifies against the event log the VMM
//!    wrote and the policy admits the verified facts, issues an X.509-SVID for the key
//!    ([`round`]);
//! 4. does step 3 again halfway through the SVID's life (rotation), until the zone ends;
//! 5. meanwhile signs the JWT-SVIDs the zone's workloads ask for ([`jwt_signer`]).
//!
//! Each decision is written to the zone's `identity.json` ([`record`]), which `zonectl
//! identity` shows. [`remote_attester`] is the zone's TPM as the host reaches it through the
//! agent; [`host_tpm`] says where the zone CA's key lives.

pub mod config;
mod driver;
pub mod host_id;
pub mod host_tpm;
pub mod jwt_signer;
pub mod record;
pub mod remote_attester;
mod round;
mod setup;

pub use config::AuthorityConfig;
pub use driver::{
    start, Connect, ZoneFacts, ZoneFiles, ZoneIdentity, EK_PUBLIC_FILE, EVENT_LOG_FILE, RECORD_FILE,
};

use zone_proto::agent::v1::agent_client::AgentClient;

/// The zone agent's gRPC client, as zonectl and the shim make it (over the VMM's vsock).
pub type Client = AgentClient<tonic::transport::Channel>;

/// A gRPC status as an operator reads it: the agent's message, and the code when that says
/// more than the message.
pub fn describe(status: &tonic::Status) -> String {
    match status.code() {
        tonic::Code::Unknown => status.message().to_string(),
        code => format!("{} ({code:?})", status.message()),
    }
}
