//! Certificates of the zone PKI and their checks: what the zone CA puts into the certificates it
//! issues ([`crate::zone_ca`]) and what a verifier requires of them.
//!
//! Profile (documented in the evidence format notes too):
//! - zone CA: self-signed, ECDSA P-256 / SHA-256, `basicConstraints cA=TRUE` (critical),
//!   `keyUsage keyCertSign|cRLSign`, SAN URI `urn:zones:host:<host-id>`.
//! - EK certificate: issued by the zone CA to a zone vTPM's endorsement key; EKU
//!   `tcg-kp-EKCertificate` (2.23.133.8.1); SAN URIs `urn:zones:zone:<zone-id>` and
//!   `urn:zones:host:<host-id>`; `cA=FALSE`.
//! - AK certificate: issued only after credential activation against that EK succeeded; EKU
//!   `tcg-kp-AIKCertificate` (2.23.133.8.3, the TCG Privacy-CA certificate); SAN URIs zone, host
//!   and `urn:zones:ek-sha256:<hex SHA-256 of the EK certificate's SubjectPublicKeyInfo DER>`,
//!   naming the EK the activation was done against, and `urn:zones:ak-name:<hex TPM name>`,
//!   the AK's name (nameAlg ‖ SHA-256 of its TPMT_PUBLIC) the credential was bound to, so the
//!   certificate fixes the AK's attributes too, not only its key.
//!
//! Ids are `[A-Za-z0-9._-]{1,128}` so that the URNs parse without ambiguity.

use std::time::{Duration, SystemTime};

use der::asn1::ObjectIdentifier;
use der::{Decode, Encode};
use sha2::{Digest, Sha256};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, SubjectAltName};
use x509_cert::Certificate;

/// `ecdsa-with-SHA256`.
pub const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
/// `tcg-kp-EKCertificate`.
pub const TCG_KP_EK_CERTIFICATE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.133.8.1");
/// `tcg-kp-AIKCertificate`: the key was certified by a Privacy CA after credential activation.
pub const TCG_KP_AIK_CERTIFICATE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.133.8.3");

pub const URN_ZONE: &str = "urn:zones:zone:";
pub const URN_HOST: &str = "urn:zones:host:";
pub const URN_EK: &str = "urn:zones:ek-sha256:";
pub const URN_AK_NAME: &str = "urn:zones:ak-name:";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChainError {
    #[error("not a DER X.509 certificate: {0}")]
    Parse(String),
    #[error("the CA certificate is not a P-256 self-signed CA: {0}")]
    NotCa(&'static str),
    #[error("issuer name differs from the CA's subject")]
    IssuerName,
    #[error("signature algorithm is not ecdsa-with-SHA256")]
    SignatureAlgorithm,
    #[error("signature does not verify with the CA's key")]
    BadSignature,
    #[error("not valid now (validity {not_before}..{not_after} s since epoch)")]
    Validity { not_before: u64, not_after: u64 },
    #[error("a leaf certificate claims to be a CA")]
    LeafIsCa,
    #[error("extended key usage {0} missing")]
    MissingEku(&'static str),
    #[error("subject alternative name: {0}")]
    San(String),
}

/// Which TCG role a leaf certificate certifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Ek,
    Ak,
}

/// What a verified leaf certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertifiedKey {
    pub role: Role,
    pub zone_id: String,
    pub host_id: String,
    /// SubjectPublicKeyInfo DER of the certified key.
    pub spki_der: Vec<u8>,
    /// AK certificates: SHA-256 of the EK SPKI the activation used (hex).
    pub ek_spki_sha256: Option<String>,
    /// AK certificates: the AK's TPM name the activation was bound to (hex).
    pub ak_name: Option<String>,
}

/// Whether `id` is a valid zone or host id.
pub fn valid_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// SHA-256 of a SubjectPublicKeyInfo DER, hex.
pub fn spki_sha256(spki_der: &[u8]) -> String {
    hex::encode(Sha256::digest(spki_der))
}

fn parse(der: &[u8]) -> Result<Certificate, ChainError> {
    Certificate::from_der(der).map_err(|e| ChainError::Parse(e.to_string()))
}

fn extension(cert: &Certificate, oid: ObjectIdentifier) -> Option<&[u8]> {
    cert.tbs_certificate
        .extensions
        .as_ref()?
        .iter()
        .find(|e| e.extn_id == oid)
        .map(|e| e.extn_value.as_bytes())
}

pub(crate) fn ca_key(ca: &Certificate) -> Result<p256::ecdsa::VerifyingKey, ChainError> {
    let spki = ca
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| ChainError::Parse(e.to_string()))?;
    use p256::pkcs8::DecodePublicKey as _;
    p256::ecdsa::VerifyingKey::from_public_key_der(&spki).map_err(|_| ChainError::NotCa("key"))
}

pub(crate) fn check_signature(
    cert: &Certificate,
    key: &p256::ecdsa::VerifyingKey,
) -> Result<(), ChainError> {
    use signature::Verifier as _;
    if cert.signature_algorithm.oid != ECDSA_WITH_SHA256
        || cert.tbs_certificate.signature.oid != ECDSA_WITH_SHA256
    {
        return Err(ChainError::SignatureAlgorithm);
    }
    let tbs = cert
        .tbs_certificate
        .to_der()
        .map_err(|e| ChainError::Parse(e.to_string()))?;
    let sig_bytes = cert.signature.as_bytes().ok_or(ChainError::BadSignature)?;
    let sig =
        p256::ecdsa::DerSignature::from_bytes(sig_bytes).map_err(|_| ChainError::BadSignature)?;
    key.verify(&tbs, &sig).map_err(|_| ChainError::BadSignature)
}

fn check_validity(cert: &Certificate, now: SystemTime) -> Result<(), ChainError> {
    let v = &cert.tbs_certificate.validity;
    let nb = v.not_before.to_unix_duration();
    let na = v.not_after.to_unix_duration();
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    if now < nb || now > na {
        return Err(ChainError::Validity {
            not_before: nb.as_secs(),
            not_after: na.as_secs(),
        });
    }
    Ok(())
}

fn is_ca(cert: &Certificate) -> Result<bool, ChainError> {
    match extension(cert, ObjectIdentifier::new_unwrap("2.5.29.19")) {
        None => Ok(false),
        Some(v) => Ok(BasicConstraints::from_der(v)
            .map_err(|e| ChainError::Parse(e.to_string()))?
            .ca),
    }
}

fn uris(cert: &Certificate) -> Result<Vec<String>, ChainError> {
    let Some(v) = extension(cert, ObjectIdentifier::new_unwrap("2.5.29.17")) else {
        return Err(ChainError::San("missing".into()));
    };
    let san = SubjectAltName::from_der(v).map_err(|e| ChainError::San(e.to_string()))?;
    Ok(san
        .0
        .iter()
        .filter_map(|n| match n {
            GeneralName::UniformResourceIdentifier(u) => Some(u.to_string()),
            _ => None,
        })
        .collect())
}

/// The single URI with `prefix`, its suffix validated.
fn one_uri(uris: &[String], prefix: &str) -> Result<String, ChainError> {
    let mut found = uris.iter().filter_map(|u| u.strip_prefix(prefix));
    match (found.next(), found.next()) {
        (Some(v), None) if valid_id(v) => Ok(v.to_string()),
        (Some(_), None) => Err(ChainError::San(format!("{prefix}: invalid id"))),
        (None, _) => Err(ChainError::San(format!("no {prefix} URI"))),
        (Some(_), Some(_)) => Err(ChainError::San(format!("more than one {prefix} URI"))),
    }
}

/// Checks that `ca_der` is a self-signed P-256 CA certificate valid at `now`; returns its host id.
pub fn verify_ca(ca_der: &[u8], now: SystemTime) -> Result<String, ChainError> {
    let ca = parse(ca_der)?;
    if !is_ca(&ca)? {
        return Err(ChainError::NotCa("basicConstraints cA is not TRUE"));
    }
    if ca.tbs_certificate.issuer != ca.tbs_certificate.subject {
        return Err(ChainError::NotCa("not self-issued"));
    }
    let key = ca_key(&ca)?;
    check_signature(&ca, &key).map_err(|_| ChainError::NotCa("self-signature"))?;
    check_validity(&ca, now)?;
    one_uri(&uris(&ca)?, URN_HOST)
}

/// Checks that `leaf_der` was issued by `ca_der`, is valid at `now`, and has `role`'s profile.
pub fn verify_leaf(
    leaf_der: &[u8],
    ca_der: &[u8],
    role: Role,
    now: SystemTime,
) -> Result<CertifiedKey, ChainError> {
    let ca = parse(ca_der)?;
    let leaf = parse(leaf_der)?;
    if leaf.tbs_certificate.issuer != ca.tbs_certificate.subject {
        return Err(ChainError::IssuerName);
    }
    check_signature(&leaf, &ca_key(&ca)?)?;
    check_validity(&leaf, now)?;
    if is_ca(&leaf)? {
        return Err(ChainError::LeafIsCa);
    }
    let (eku, eku_name) = match role {
        Role::Ek => (TCG_KP_EK_CERTIFICATE, "tcg-kp-EKCertificate"),
        Role::Ak => (TCG_KP_AIK_CERTIFICATE, "tcg-kp-AIKCertificate"),
    };
    let ekus = match extension(&leaf, ObjectIdentifier::new_unwrap("2.5.29.37")) {
        Some(v) => ExtendedKeyUsage::from_der(v).map_err(|e| ChainError::Parse(e.to_string()))?,
        None => return Err(ChainError::MissingEku(eku_name)),
    };
    if !ekus.0.contains(&eku) {
        return Err(ChainError::MissingEku(eku_name));
    }
    let uris = uris(&leaf)?;
    let (ek_spki_sha256, ak_name) = match role {
        Role::Ek => (None, None),
        Role::Ak => (
            Some(one_hex_uri(&uris, URN_EK, 64)?),
            Some(one_hex_uri(&uris, URN_AK_NAME, 68)?),
        ),
    };
    Ok(CertifiedKey {
        role,
        zone_id: one_uri(&uris, URN_ZONE)?,
        host_id: one_uri(&uris, URN_HOST)?,
        spki_der: leaf
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| ChainError::Parse(e.to_string()))?,
        ek_spki_sha256,
        ak_name,
    })
}

/// The single URI with `prefix` whose suffix is `len` hex digits, lowercased.
fn one_hex_uri(uris: &[String], prefix: &str, len: usize) -> Result<String, ChainError> {
    let mut found = uris.iter().filter_map(|u| u.strip_prefix(prefix));
    match (found.next(), found.next()) {
        (Some(h), None) if h.len() == len && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(h.to_ascii_lowercase())
        }
        _ => Err(ChainError::San(format!("need exactly one {prefix} URI"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_valid_id_refuses_separators_and_empty() {
        assert!(valid_id("zone-1.a_b"));
        assert!(!valid_id(""));
        assert!(!valid_id("a:b"));
        assert!(!valid_id("a/b"));
        assert!(!valid_id(&"a".repeat(129)));
    }

    #[test]
    fn test_one_uri_refuses_duplicates() {
        let u = vec![format!("{URN_ZONE}a"), format!("{URN_ZONE}b")];
        assert!(one_uri(&u, URN_ZONE).is_err());
        assert_eq!(one_uri(&u[..1], URN_ZONE), Ok("a".into()));
    }

    #[test]
    fn test_garbage_is_a_parse_error() {
        assert!(matches!(
            verify_ca(b"\x30\x03\x02\x01", SystemTime::now()),
            Err(ChainError::Parse(_))
        ));
    }
}
