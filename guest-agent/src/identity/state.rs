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
    #[error("the X.509-SVID does not check against the X.509 bundle")]
    Chain(#[source] X509Error),
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

    /// How many watch the decision (the Workload API's open requests and streams).
    pub fn watchers(&self) -> usize {
        self.decision.receiver_count()
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
        // The host is trusted, but a certificate the workloads would find broken is refused
        // here, where the host hears why, and the SVID in force stays.
        x509::check_chain(
            &issued.x509_svid_chain,
            &issued.x509_bundle,
            SystemTime::now(),
        )
        .map_err(SetIdentityError::Chain)?;
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tonic::Code;
    use zone_attest::identity::authority::IdentityAuthority;

    use super::*;

    const ID: &str = "spiffe://example.org/zone/web";

    struct Host {
        authority: IdentityAuthority,
        id: SpiffeId,
    }

    impl Host {
        fn new() -> Host {
            let trust_domain = TrustDomain::parse("example.org").unwrap();
            Host {
                authority: IdentityAuthority::ephemeral(&trust_domain),
                id: SpiffeId::parse(ID).unwrap(),
            }
        }

        /// What the authority sends for a key: the SVID (leaf only) and its bundles.
        fn issued_for(&self, public_key: &[u8]) -> IssuedIdentity {
            let leaf = self
                .authority
                .issue_x509_svid(&self.id, public_key, Duration::from_secs(3600))
                .unwrap();
            IssuedIdentity {
                spiffe_id: ID.into(),
                x509_svid_chain: vec![leaf.cert_der],
                x509_bundle: self.authority.x509_bundle(),
                jwt_bundle: self.authority.jwt_bundle().into_bytes(),
                trust_domain: "example.org".into(),
            }
        }
    }

    fn issued(state: &IdentityState) -> Arc<Svid> {
        match state.current() {
            Decision::Issued(svid) => svid,
            other => panic!("not issued: {other:?}"),
        }
    }

    #[test]
    fn test_state_pending_issued_rotated_refused() {
        let host = Host::new();
        let state = IdentityState::new();
        let watcher = state.subscribe();
        assert!(matches!(state.current(), Decision::Pending));

        let key = state.new_key();
        state.issue(host.issued_for(&key)).unwrap();
        let first = issued(&state);
        let rotated_key = state.new_key();
        state.issue(host.issued_for(&rotated_key)).unwrap();
        let second = issued(&state);
        state
            .refuse("the zone's image is not allowed".into())
            .unwrap();

        assert_eq!(first.spiffe_id.to_string(), ID);
        assert_eq!(first.trust_domain.as_str(), "example.org");
        assert_eq!(
            x509::leaf_public_key(&first.chain[0]).unwrap(),
            key,
            "the first leaf certifies the first key"
        );
        assert_ne!(first.serial_hex, second.serial_hex);
        assert_eq!(
            x509::leaf_public_key(&second.chain[0]).unwrap(),
            rotated_key
        );
        assert_ne!(first.key_pkcs8_der(), second.key_pkcs8_der());
        let pkcs8 = SvidKey::from_pkcs8_der(&second.key_pkcs8_der()).unwrap();
        assert_eq!(pkcs8.public_key_der(), rotated_key);
        assert!(
            matches!(state.current(), Decision::Refused(ref r) if r == "the zone's image is not allowed")
        );
        assert!(watcher.has_changed().unwrap());
    }

    #[test]
    fn test_issue_leaf_for_another_key_refused_old_svid_kept() {
        let host = Host::new();
        let state = IdentityState::new();
        let key = state.new_key();
        state.issue(host.issued_for(&key)).unwrap();
        let before = issued(&state);
        let pending = state.new_key();

        let other = SvidKey::generate().public_key_der();
        let err = state.issue(host.issued_for(&other)).unwrap_err();

        assert!(matches!(err, SetIdentityError::NotPendingKey), "{err}");
        let status = Status::from(err);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "the certificate is not for the pending key"
        );
        assert_eq!(issued(&state).serial_hex, before.serial_hex);
        // The pending key is still pending: the right certificate goes in.
        state.issue(host.issued_for(&pending)).unwrap();
        assert_ne!(issued(&state).serial_hex, before.serial_hex);
    }

    #[test]
    fn test_issue_without_pending_key_failed_precondition() {
        let host = Host::new();
        let state = IdentityState::new();
        let offer = host.issued_for(&SvidKey::generate().public_key_der());

        let err = state.issue(offer).unwrap_err();

        assert!(matches!(err, SetIdentityError::NoPendingKey), "{err}");
        assert_eq!(Status::from(err).code(), Code::FailedPrecondition);
        assert!(matches!(state.current(), Decision::Pending));
        // A key is certified once: the same SetIdentity again finds none pending.
        let key = state.new_key();
        let offer = host.issued_for(&key);
        state.issue(offer.clone()).unwrap();
        assert!(matches!(
            state.issue(offer),
            Err(SetIdentityError::NoPendingKey)
        ));
    }

    #[test]
    fn test_issue_bad_fields_refused_by_name_decision_unchanged() {
        let host = Host::new();
        let state = IdentityState::new();
        let key = state.new_key();
        let good = host.issued_for(&key);
        let with = |change: &dyn Fn(&mut IssuedIdentity)| {
            let mut offer = good.clone();
            change(&mut offer);
            offer
        };
        let cases: Vec<(IssuedIdentity, &str)> = vec![
            (
                with(&|o| o.spiffe_id = "spiffe://Example.org/zone/web".into()),
                "spiffe_id",
            ),
            (
                with(&|o| o.spiffe_id = "https://example.org/zone/web".into()),
                "spiffe_id",
            ),
            (
                with(&|o| o.spiffe_id = "spiffe://example.org".into()),
                "spiffe_id",
            ),
            (
                with(&|o| o.trust_domain = "other.org".into()),
                "not in trust domain other.org",
            ),
            (with(&|o| o.trust_domain = String::new()), "trust_domain"),
            (
                with(&|o| o.spiffe_id = "spiffe://example.org/zone/db".into()),
                "URI SANs",
            ),
            (with(&|o| o.x509_svid_chain.clear()), "chain is empty"),
            (with(&|o| o.x509_bundle.clear()), "bundle is empty"),
            (
                with(&|o| o.x509_svid_chain[0].truncate(40)),
                "certificate 0 of the X.509-SVID chain",
            ),
            (
                with(&|o| o.x509_bundle.push(b"junk".to_vec())),
                "certificate 1 of the X.509 bundle",
            ),
            (
                with(&|o| o.jwt_bundle = b"{not json".to_vec()),
                "JWT bundle",
            ),
            (with(&|o| o.jwt_bundle = b"[]".to_vec()), "JWT bundle"),
            (
                with(&|o| o.x509_bundle = Host::new().authority.x509_bundle()),
                "does not check against the X.509 bundle",
            ),
        ];

        for (offer, named) in cases {
            let err = state.issue(offer).unwrap_err();
            let status = Status::from(err);
            assert_eq!(status.code(), Code::InvalidArgument, "{named}");
            assert!(
                status.message().contains(named),
                "{named}: {}",
                status.message()
            );
        }

        assert!(matches!(state.current(), Decision::Pending));
        state.issue(good).unwrap();
    }

    #[test]
    fn test_set_refusal_and_empty_decisions_checked() {
        let state = IdentityState::new();

        let none = state.set(None).unwrap_err();
        let empty = state
            .set(Some(set_identity_request::Decision::Refused(" ".into())))
            .unwrap_err();
        let long = state
            .set(Some(set_identity_request::Decision::Refused(
                "x".repeat(MAX_REASON_LEN + 1),
            )))
            .unwrap_err();

        assert!(matches!(none, SetIdentityError::NoDecision));
        assert!(matches!(empty, SetIdentityError::EmptyReason));
        assert!(matches!(long, SetIdentityError::ReasonTooLong(_)));
        assert!(matches!(state.current(), Decision::Pending));
        state
            .set(Some(set_identity_request::Decision::Refused("no".into())))
            .unwrap();
        assert!(matches!(state.current(), Decision::Refused(_)));
    }

    #[test]
    fn test_svid_debug_shows_no_private_key() {
        let host = Host::new();
        let state = IdentityState::new();
        let key = state.new_key();
        let svid = state.issue(host.issued_for(&key)).unwrap();

        let shown = format!("{svid:?}");

        assert!(shown.contains("public_key_sha256"), "{shown}");
        let pkcs8 = svid.key_pkcs8_der();
        let hex: String = pkcs8.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!shown.contains(&hex), "{shown}");
        assert!(!shown.contains(&format!("{pkcs8:?}")), "{shown}");
        assert!(!shown.contains("pkcs8"), "{shown}");
    }
}
