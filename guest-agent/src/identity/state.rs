//! The zone's identity decision, as the host's identity authority last made it, and the key
//! pending certification.
//!
//! The authority calls NewIdentityKey (a fresh [`SvidKey`] becomes the pending key), attests
//! the zone, then SetIdentity: an X.509-SVID for the pending key, or a refusal. It does this
//! again, with a new key, before the SVID expires (rotation). SetIdentity is checked as input
//! from a party that may be wrong: nothing changes until every check passes, so the previous
//! SVID stays in force through a bad rotation. Private keys are neither sent nor logged
//! ([`SvidKey`]'s and [`Svid`]'s Debug show only the public key's fingerprint).

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::watch;
use tonic::Status;
use zone_attest::identity::jwt::MAX_BUNDLE_LEN;
use zone_attest::identity::spiffe_id::{SpiffeId, SpiffeIdError, TrustDomain};
use zone_attest::identity::svid_key::SvidKey;
use zone_attest::identity::x509::{self, X509Error};
use zone_proto::agent::v1::set_identity_request;
use zone_proto::agent::v1::IssuedIdentity;

use crate::containers::lock;
use crate::request_error::report;

/// Longest refusal reason the host may give (it ends up in workloads' error messages).
pub const MAX_REASON_LEN: usize = 4096;

/// Why a SetIdentity request was refused; the zone's decision did not change.
#[derive(Debug, thiserror::Error)]
pub enum SetIdentityError {
    #[error("SetIdentity carries no decision: it needs issued or refused")]
    NoDecision,
    #[error("the refusal has no reason: workloads are told why they get no identity")]
    EmptyReason,
    #[error("the refusal reason is {0} bytes; at most {MAX_REASON_LEN}")]
    ReasonTooLong(usize),
    #[error("the X.509-SVID chain is empty")]
    EmptyChain,
    #[error("the X.509 bundle is empty")]
    EmptyBundle,
    #[error("spiffe_id {0:?}")]
    SpiffeId(String, #[source] SpiffeIdError),
    #[error("trust_domain {0:?}")]
    TrustDomain(String, #[source] SpiffeIdError),
    #[error("{id} is not in trust domain {trust_domain}")]
    OutsideTrustDomain { id: String, trust_domain: String },
    #[error("certificate {index} of the {what}")]
    Certificate {
        what: &'static str,
        index: usize,
        #[source]
        source: X509Error,
    },
    #[error("the leaf's URI SANs {sans:?} are not exactly spiffe_id {id}")]
    LeafSans { sans: Vec<String>, id: String },
    #[error("the certificate is not for the pending key")]
    NotPendingKey,
    #[error("no key is pending: NewIdentityKey comes first")]
    NoPendingKey,
    #[error("the JWT bundle is {0} bytes; at most {MAX_BUNDLE_LEN}")]
    JwtBundleTooLarge(usize),
    #[error("the JWT bundle is not a JSON object (a JWK Set)")]
    JwtBundle,
}

impl From<SetIdentityError> for Status {
    fn from(error: SetIdentityError) -> Self {
        let message = report(&error);
        match error {
            SetIdentityError::NoPendingKey => Status::failed_precondition(message),
            _ => Status::invalid_argument(message),
        }
    }
}

/// An X.509-SVID in force: what the Workload API hands to the zone's workloads.
pub struct Svid {
    pub spiffe_id: SpiffeId,
    pub trust_domain: TrustDomain,
    /// DER certificates, leaf first.
    pub chain: Vec<Vec<u8>>,
    key: SvidKey,
    /// The trust domain's X.509 authorities, DER certificates.
    pub x509_bundle: Vec<Vec<u8>>,
    /// The trust domain's JWK Set, JSON.
    pub jwt_bundle: Vec<u8>,
    pub serial_hex: String,
    pub not_after: SystemTime,
}

impl Svid {
    /// The leaf's private key, PKCS#8 DER: only for the workloads, through the Workload API.
    pub fn key_pkcs8_der(&self) -> Vec<u8> {
        self.key.pkcs8_der()
    }
}

impl std::fmt::Debug for Svid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Svid")
            .field("spiffe_id", &self.spiffe_id.to_string())
            .field("serial_hex", &self.serial_hex)
            .field("not_after", &self.not_after)
            .field("key", &self.key)
            .field("chain_len", &self.chain.len())
            .field("x509_bundle_len", &self.x509_bundle.len())
            .finish_non_exhaustive()
    }
}

/// What the authority decided for the zone.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Nothing yet: no SetIdentity has been accepted.
    Pending,
    Issued(Arc<Svid>),
    /// The zone gets no identity, and this is why.
    Refused(String),
}

/// The zone's decision (watched by the Workload API's streams) and its pending key.
#[derive(Debug)]
pub struct IdentityState {
    decision: watch::Sender<Decision>,
    pending_key: Mutex<Option<SvidKey>>,
}

impl Default for IdentityState {
    fn default() -> Self {
        Self::new()
    }
}

impl IdentityState {
    pub fn new() -> Self {
        Self {
            decision: watch::Sender::new(Decision::Pending),
            pending_key: Mutex::new(None),
        }
    }

    /// Makes a fresh key the pending one (an older pending key is dropped) and returns its
    /// SubjectPublicKeyInfo, DER.
    pub fn new_key(&self) -> Vec<u8> {
        let key = SvidKey::generate();
        let public_key = key.public_key_der();
        tracing::info!(?key, "new identity key pending");
        *lock(&self.pending_key) = Some(key);
        public_key
    }

    /// The decision in force now.
    pub fn current(&self) -> Decision {
        self.decision.borrow().clone()
    }

    /// The decision now and each change from here on.
    pub fn subscribe(&self) -> watch::Receiver<Decision> {
        self.decision.subscribe()
    }

    /// Applies a SetIdentity decision once it passes every check.
    pub fn set(
        &self,
        decision: Option<set_identity_request::Decision>,
    ) -> Result<(), SetIdentityError> {
        match decision {
            None => Err(SetIdentityError::NoDecision),
            Some(set_identity_request::Decision::Issued(issued)) => self.issue(issued).map(|_| ()),
            Some(set_identity_request::Decision::Refused(reason)) => self.refuse(reason),
        }
    }

    /// Installs an X.509-SVID for the pending key, which it consumes.
    pub fn issue(&self, issued: IssuedIdentity) -> Result<Arc<Svid>, SetIdentityError> {
        let offer = Offer::check(issued)?;
        let mut pending = lock(&self.pending_key);
        let Some(key) = pending.as_ref() else {
            return Err(SetIdentityError::NoPendingKey);
        };
        if offer.leaf_public_key != key.public_key_der() {
            return Err(SetIdentityError::NotPendingKey);
        }
        let key = pending.take().ok_or(SetIdentityError::NoPendingKey)?;
        let svid = Arc::new(Svid {
            spiffe_id: offer.spiffe_id,
            trust_domain: offer.trust_domain,
            chain: offer.chain,
            key,
            x509_bundle: offer.x509_bundle,
            jwt_bundle: offer.jwt_bundle,
            serial_hex: offer.serial_hex,
            not_after: offer.not_after,
        });
        tracing::info!(?svid, "identity issued");
        self.decision
            .send_replace(Decision::Issued(Arc::clone(&svid)));
        Ok(svid)
    }

    /// The zone gets no identity from now on; workloads are told `reason`.
    pub fn refuse(&self, reason: String) -> Result<(), SetIdentityError> {
        if reason.trim().is_empty() {
            return Err(SetIdentityError::EmptyReason);
        }
        if reason.len() > MAX_REASON_LEN {
            return Err(SetIdentityError::ReasonTooLong(reason.len()));
        }
        tracing::warn!(%reason, "identity refused");
        self.decision.send_replace(Decision::Refused(reason));
        Ok(())
    }
}

/// An IssuedIdentity whose fields all passed their checks; the key match comes next.
struct Offer {
    spiffe_id: SpiffeId,
    trust_domain: TrustDomain,
    chain: Vec<Vec<u8>>,
    x509_bundle: Vec<Vec<u8>>,
    jwt_bundle: Vec<u8>,
    leaf_public_key: Vec<u8>,
    serial_hex: String,
    not_after: SystemTime,
}

impl Offer {
    fn check(issued: IssuedIdentity) -> Result<Offer, SetIdentityError> {
        let spiffe_id = SpiffeId::parse(&issued.spiffe_id)
            .map_err(|e| SetIdentityError::SpiffeId(issued.spiffe_id.clone(), e))?;
        let trust_domain = TrustDomain::parse(&issued.trust_domain)
            .map_err(|e| SetIdentityError::TrustDomain(issued.trust_domain.clone(), e))?;
        if !spiffe_id.is_member_of(&trust_domain) {
            return Err(SetIdentityError::OutsideTrustDomain {
                id: spiffe_id.to_string(),
                trust_domain: trust_domain.as_str().to_string(),
            });
        }
        let Some(leaf) = issued.x509_svid_chain.first() else {
            return Err(SetIdentityError::EmptyChain);
        };
        if issued.x509_bundle.is_empty() {
            return Err(SetIdentityError::EmptyBundle);
        }
        let summaries = parse_all("X.509-SVID chain", &issued.x509_svid_chain)?;
        parse_all("X.509 bundle", &issued.x509_bundle)?;
        let leaf_summary = summaries
            .into_iter()
            .next()
            .ok_or(SetIdentityError::EmptyChain)?;
        let id_text = spiffe_id.to_string();
        if leaf_summary.uri_sans != [id_text.as_str()] {
            return Err(SetIdentityError::LeafSans {
                sans: leaf_summary.uri_sans,
                id: id_text,
            });
        }
        let leaf_public_key =
            x509::leaf_public_key(leaf).map_err(|source| SetIdentityError::Certificate {
                what: "X.509-SVID chain",
                index: 0,
                source,
            })?;
        check_jwt_bundle(&issued.jwt_bundle)?;
        Ok(Offer {
            spiffe_id,
            trust_domain,
            chain: issued.x509_svid_chain,
            x509_bundle: issued.x509_bundle,
            jwt_bundle: issued.jwt_bundle,
            leaf_public_key,
            serial_hex: leaf_summary.serial_hex,
            not_after: leaf_summary.not_after,
        })
    }
}

/// Every certificate of `certs` parsed.
fn parse_all(
    what: &'static str,
    certs: &[Vec<u8>],
) -> Result<Vec<x509::CertSummary>, SetIdentityError> {
    certs
        .iter()
        .enumerate()
        .map(|(index, der)| {
            x509::summarize(der).map_err(|source| SetIdentityError::Certificate {
                what,
                index,
                source,
            })
        })
        .collect()
}

/// A JWK Set is a JSON object; its keys are read when a token is validated.
fn check_jwt_bundle(bundle: &[u8]) -> Result<(), SetIdentityError> {
    if bundle.len() > MAX_BUNDLE_LEN {
        return Err(SetIdentityError::JwtBundleTooLarge(bundle.len()));
    }
    match serde_json::from_slice::<serde_json::Value>(bundle) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        _ => Err(SetIdentityError::JwtBundle),
    }
}
