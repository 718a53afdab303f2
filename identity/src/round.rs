//! One attestation round: a fresh key from the zone, evidence bound to it, the verdict, the
//! policy's decision, and the SVID (or the refusal) handed to the agent and recorded.

use std::path::Path;
use std::sync::PoisonError;
use std::time::{Instant, SystemTime};

use anyhow::Context as _;
use tokio::runtime::Runtime;
use zone_attest::identity::policy::Facts;
use zone_attest::protocol;
use zone_proto::agent::v1::set_identity_request::Decision as AgentDecision;
use zone_proto::agent::v1::{IssuedIdentity, NewIdentityKeyRequest, SetIdentityRequest};

use crate::driver::ZoneFacts;
use crate::jwt_signer::CurrentId;
use crate::record::{unix, unix_now, Decision, IdentityRecord, SvidRecord};
use crate::remote_attester::RemoteAttester;
use crate::setup::{chain, Enrolled};
use crate::{describe, Client};

/// Longest public key the zone may hand over (a P-256 SPKI is 91 bytes).
const MAX_PUBLIC_KEY: usize = 1024;

/// How a round ended.
#[derive(Debug)]
pub enum RoundEnd {
    /// The zone holds a new SVID; the next round is due at `renew_at`.
    Issued { renew_at: Instant },
    /// The zone was refused (and told why): no more rounds.
    Refused,
    /// The exchange with the zone failed; the round may be tried again.
    Failed(anyhow::Error),
}

/// The state rounds share.
pub struct Round<'a> {
    pub runtime: &'a Runtime,
    pub client: Client,
    pub record: &'a mut IdentityRecord,
    pub record_path: &'a Path,
    pub current: CurrentId,
}

impl Round<'_> {
    pub fn issue(
        &mut self,
        setup: &mut Enrolled,
        attester: &mut RemoteAttester<'_>,
        zone: &ZoneFacts,
    ) -> RoundEnd {
        let key = match self.new_key() {
            Ok(key) => key,
            Err(e) => return RoundEnd::Failed(e),
        };
        let verdict = match protocol::attest_key(
            attester,
            &setup.enrollment,
            &setup.manifest,
            &mut setup.verifier,
            &key,
        ) {
            Ok((_evidence, verdict)) => verdict,
            Err(e) => return RoundEnd::Failed(anyhow::anyhow!("quoting: {}", chain(&e))),
        };
        let verified = match verdict {
            Ok(verified) => verified,
            Err(failures) => {
                let reasons = failures
                    .iter()
                    .map(|f| format!("the zone's evidence did not verify: {f}"))
                    .collect();
                return self.refuse_round(reasons, None);
            }
        };
        let mut facts = Facts::from_verified(&verified, zone.zone_name.as_deref());
        facts.pod_namespace = zone.pod_namespace.clone();
        facts.service_account = zone.service_account.clone();
        let id = match setup.policy.admit(&facts) {
            Ok(id) => id,
            Err(reasons) => return self.refuse_round(reasons, Some(facts)),
        };
        let ttl = setup.policy.x509_svid_ttl();
        let svid = match setup.authority.issue_x509_svid(&id, &key, ttl) {
            Ok(svid) => svid,
            Err(e) => {
                let reason = format!("the identity authority cannot certify the zone's key: {e}");
                return self.refuse_round(vec![reason], Some(facts));
            }
        };
        let issued = IssuedIdentity {
            spiffe_id: id.to_string(),
            x509_svid_chain: vec![svid.cert_der.clone()],
            x509_bundle: setup.authority.x509_bundle(),
            jwt_bundle: setup.authority.jwt_bundle().into_bytes(),
            trust_domain: id.trust_domain().as_str().to_string(),
        };
        if let Err(e) = self.tell_agent(AgentDecision::Issued(issued)) {
            return RoundEnd::Failed(e);
        }
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(id.clone());
        let record = &mut *self.record;
        record.decision = Decision::Issued;
        record.decided_at = unix_now();
        record.spiffe_id = Some(id.to_string());
        record.svid = Some(SvidRecord {
            serial: svid.serial_hex.clone(),
            not_before: unix(svid.not_before),
            not_after: unix(svid.not_after),
        });
        record.svids_issued += 1;
        record.facts = Some(facts);
        record.reasons = vec![
            "the zone's evidence verified: its vTPM's EK and AK chain to this host's zone CA, \
             the AK quoted a fresh challenge bound to the SVID's key, the event log replays to \
             the quoted PCRs, and the measurements equal the VMM's own log of the boot"
                .to_string(),
            "the policy trusts the zone's kernel and initrd and its path template names only \
             verified facts"
                .to_string(),
        ];
        if let Err(e) = record.save(self.record_path) {
            tracing::warn!("{e:#}");
        }
        // Renew halfway through what is left, so a slow round still ends before expiry.
        let left = svid
            .not_after
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        RoundEnd::Issued {
            renew_at: Instant::now() + left / 2,
        }
    }

    /// Refuses the zone for good: tells the agent (so workloads learn why) and records it.
    pub fn refuse(&mut self, reasons: Vec<String>) -> anyhow::Result<()> {
        match self.refuse_round(reasons, None) {
            RoundEnd::Failed(e) => Err(e),
            _ => Ok(()),
        }
    }

    fn refuse_round(&mut self, reasons: Vec<String>, facts: Option<Facts>) -> RoundEnd {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = None;
        let record = &mut *self.record;
        record.decision = Decision::Refused;
        record.decided_at = unix_now();
        record.spiffe_id = None;
        record.svid = None;
        record.facts = facts;
        record.reasons = reasons.clone();
        if let Err(e) = record.save(self.record_path) {
            tracing::warn!("{e:#}");
        }
        match self.tell_agent(AgentDecision::Refused(reasons.join("; "))) {
            Ok(()) => RoundEnd::Refused,
            Err(e) => RoundEnd::Failed(e),
        }
    }

    fn new_key(&mut self) -> anyhow::Result<Vec<u8>> {
        let key = self
            .runtime
            .block_on(self.client.new_identity_key(NewIdentityKeyRequest {}))
            .map_err(|status| anyhow::anyhow!("NewIdentityKey: {}", describe(&status)))?
            .into_inner()
            .public_key;
        if key.is_empty() || key.len() > MAX_PUBLIC_KEY {
            anyhow::bail!(
                "the zone sent a {}-byte public key (1 to {MAX_PUBLIC_KEY} expected)",
                key.len()
            );
        }
        Ok(key)
    }

    fn tell_agent(&mut self, decision: AgentDecision) -> anyhow::Result<()> {
        self.runtime
            .block_on(self.client.set_identity(SetIdentityRequest {
                decision: Some(decision),
            }))
            .map_err(|status| anyhow::anyhow!(describe(&status)))
            .context("SetIdentity")?;
        Ok(())
    }
}
