//! The certificate profiles of the identity authority, per the X509-SVID standard:
//!
//! - CA (signing) certificate: self-signed, subject "CN=Zones identity authority <td>, O=Zones",
//!   URI SAN `spiffe://<td>` (no path, as signing certificates must have), `basicConstraints`
//!   cA=TRUE pathLen 0 (critical), `keyUsage` keyCertSign|cRLSign (critical), SKI.
//! - X.509-SVID leaf: an EMPTY subject, so the single URI SAN (the SPIFFE ID) is critical, as the
//!   standard requires then. Nothing but the SPIFFE ID names the workload, so nothing a relying
//!   party might match on (a CN) can disagree with it. `basicConstraints` cA=FALSE (critical),
//!   `keyUsage` digitalSignature only (critical), `extKeyUsage` serverAuth+clientAuth, SKI, AKI.
//!
//! Both ECDSA P-256 with SHA-256; validity times are UTCTime through 2049 (RFC 5280 §4.1.2.5).

use std::str::FromStr as _;
use std::time::SystemTime;

use der::asn1::{BitString, ObjectIdentifier, OctetString};
use der::oid::AssociatedOid;
use der::Encode;
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::certificate::{TbsCertificate, Version};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::ext::Extension;
use x509_cert::name::{Name, RdnSequence};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};
use x509_cert::Certificate;

use super::X509Error;
use crate::cert_parts;
use crate::identity::spiffe_id::{SpiffeId, TrustDomain};

/// `id-kp-serverAuth` (RFC 5280).
pub const ID_KP_SERVER_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");
/// `id-kp-clientAuth` (RFC 5280).
pub const ID_KP_CLIENT_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2");

fn encode_err(e: impl std::fmt::Display) -> X509Error {
    X509Error::Encode(e.to_string())
}

fn ext<T: Encode + AssociatedOid>(value: &T, critical: bool) -> Result<Extension, X509Error> {
    cert_parts::extension(value, critical).map_err(X509Error::Encode)
}

fn uri_san(uri: &str) -> Result<SubjectAltName, X509Error> {
    Ok(SubjectAltName(vec![
        cert_parts::uri(uri).map_err(X509Error::Encode)?
    ]))
}

fn key_identifier(spki: &SubjectPublicKeyInfoOwned) -> Result<OctetString, X509Error> {
    cert_parts::key_identifier(spki).map_err(X509Error::Encode)
}

pub(crate) fn x509_time(t: SystemTime) -> Result<Time, X509Error> {
    cert_parts::time(t).map_err(X509Error::Encode)
}

pub(crate) fn random_serial() -> Result<SerialNumber, X509Error> {
    cert_parts::random_serial().map_err(X509Error::Encode)
}

pub(crate) fn spki_of(
    key: &p256::ecdsa::VerifyingKey,
) -> Result<SubjectPublicKeyInfoOwned, X509Error> {
    cert_parts::spki_of(key).map_err(X509Error::Encode)
}

/// Signs `tbs` with `key` and returns the certificate DER.
fn sign(tbs: TbsCertificate, key: &p256::ecdsa::SigningKey) -> Result<Vec<u8>, X509Error> {
    use signature::Signer as _;
    let tbs_der = tbs.to_der().map_err(encode_err)?;
    let sig: p256::ecdsa::Signature = key.try_sign(&tbs_der).map_err(encode_err)?;
    Certificate {
        tbs_certificate: tbs,
        signature_algorithm: cert_parts::ecdsa_with_sha256(),
        signature: BitString::from_bytes(sig.to_der().as_bytes()).map_err(encode_err)?,
    }
    .to_der()
    .map_err(encode_err)
}

/// The trust domain's self-signed CA certificate, valid `not_before..not_after`.
pub(crate) fn ca_certificate(
    trust_domain: &TrustDomain,
    key: &p256::ecdsa::SigningKey,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<Vec<u8>, X509Error> {
    let subject = Name::from_str(&format!(
        "CN=Zones identity authority {trust_domain},O=Zones"
    ))
    .map_err(encode_err)?;
    let spki = spki_of(key.verifying_key())?;
    let extensions = vec![
        ext(
            &BasicConstraints {
                ca: true,
                path_len_constraint: Some(0),
            },
            true,
        )?,
        ext(&KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign), true)?,
        ext(&SubjectKeyIdentifier(key_identifier(&spki)?), false)?,
        ext(&uri_san(&trust_domain.id_uri())?, false)?,
    ];
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: random_serial()?,
        signature: cert_parts::ecdsa_with_sha256(),
        issuer: subject.clone(),
        validity: Validity {
            not_before: x509_time(not_before)?,
            not_after: x509_time(not_after)?,
        },
        subject,
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    sign(tbs, key)
}

/// What goes into an X.509-SVID leaf besides the profile.
pub(crate) struct LeafRequest<'a> {
    pub id: &'a SpiffeId,
    pub spki: SubjectPublicKeyInfoOwned,
    pub serial: SerialNumber,
    pub validity: Validity,
}

/// An X.509-SVID leaf signed by the CA (`ca` is its certificate, `ca_key` its key).
pub(crate) fn svid_certificate(
    request: LeafRequest<'_>,
    ca: &Certificate,
    ca_key: &p256::ecdsa::SigningKey,
) -> Result<Vec<u8>, X509Error> {
    let extensions = vec![
        ext(
            &BasicConstraints {
                ca: false,
                path_len_constraint: None,
            },
            true,
        )?,
        ext(&KeyUsage(KeyUsages::DigitalSignature.into()), true)?,
        ext(
            &ExtendedKeyUsage(vec![ID_KP_SERVER_AUTH, ID_KP_CLIENT_AUTH]),
            false,
        )?,
        ext(&SubjectKeyIdentifier(key_identifier(&request.spki)?), false)?,
        ext(
            &AuthorityKeyIdentifier {
                key_identifier: Some(key_identifier(&ca.tbs_certificate.subject_public_key_info)?),
                authority_cert_issuer: None,
                authority_cert_serial_number: None,
            },
            false,
        )?,
        // Critical: the subject is empty, so the SAN is the certificate's only name.
        ext(&uri_san(&request.id.to_string())?, true)?,
    ];
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: request.serial,
        signature: cert_parts::ecdsa_with_sha256(),
        issuer: ca.tbs_certificate.subject.clone(),
        validity: request.validity,
        subject: RdnSequence(Vec::new()),
        subject_public_key_info: request.spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    sign(tbs, ca_key)
}
