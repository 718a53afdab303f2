//! Workload identity (SPIFFE): each zone gets a SPIFFE ID, an X.509-SVID and JWT-SVIDs from the
//! host's identity authority once attestation has verified what it runs.
//!
//! - [`spiffe_id`]: SPIFFE IDs and trust domains, checked strictly (no normalization).
//! - [`svid_key`]: the SVID key pair, generated in the zone; only its public key leaves it.
//! - [`x509`]: X.509-SVID inspection.
//! - [`jwt`]: JWT-SVIDs (ES256 JWS compact) and JWT bundles (JWK Sets).
//! - [`policy`]: the registration policy: which attested zones get which SPIFFE ID.
//! - [`authority`]: the host's identity authority, which issues the SVIDs.

pub mod authority;
pub mod jwt;
pub mod policy;
pub mod spiffe_id;
pub mod svid_key;
pub mod x509;
