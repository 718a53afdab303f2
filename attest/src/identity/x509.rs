//! X.509-SVIDs: inspection (what a certificate holds, read with x509-cert; the agent uses
//! [`leaf_public_key`] to check that the leaf the host issued certifies the key it generated)
//! and, in [`build`], the certificate profiles the host's identity authority issues.

use std::time::SystemTime;

use der::{Decode as _, Encode as _};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::Certificate;

pub(crate) mod build;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum X509Error {
    #[error("not a DER X.509 certificate: {0}")]
    Parse(String),
    #[error("the subjectAltName extension is malformed: {0}")]
    SubjectAltName(String),
    #[error("the certificate holds two subjectAltName extensions")]
    DuplicateSubjectAltName,
    #[error("encoding: {0}")]
    Encode(String),
    #[error("certificate {0} of the chain is not signed by {1}")]
    NotSignedBy(usize, &'static str),
    #[error("the leaf expired at {0} (Unix seconds)")]
    Expired(u64),
    #[error("the leaf is not valid before {0} (Unix seconds)")]
    NotYetValid(u64),
}

/// Clock difference between host and zone that [`check_chain`] tolerates at notBefore.
pub const CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(300);

/// Checks an X.509-SVID chain (DER, leaf first) against a bundle: each certificate is signed
/// by the next (ECDSA P-256 with SHA-256, as the authority signs), the last by one of the
/// bundle's, and the leaf is valid at `now` (allowing [`CLOCK_SKEW`] before notBefore).
pub fn check_chain(
    chain: &[Vec<u8>],
    bundle: &[Vec<u8>],
    now: SystemTime,
) -> Result<(), X509Error> {
    let chain: Vec<Certificate> = chain.iter().map(|c| parse(c)).collect::<Result<_, _>>()?;
    let bundle: Vec<Certificate> = bundle.iter().map(|c| parse(c)).collect::<Result<_, _>>()?;
    let signed_by = |cert: &Certificate, issuer: &Certificate| {
        crate::chain::ca_key(issuer)
            .and_then(|key| crate::chain::check_signature(cert, &key))
            .is_ok()
    };
    for (index, cert) in chain.iter().enumerate() {
        let ok = match chain.get(index + 1) {
            Some(issuer) => signed_by(cert, issuer),
            None => bundle.iter().any(|authority| signed_by(cert, authority)),
        };
        if !ok {
            let by = if index + 1 < chain.len() {
                "the next certificate"
            } else {
                "the bundle"
            };
            return Err(X509Error::NotSignedBy(index, by));
        }
    }
    let Some(leaf) = chain.first() else {
        return Err(X509Error::Parse("the chain is empty".to_string()));
    };
    let validity = &leaf.tbs_certificate.validity;
    let since_epoch = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let not_after = validity.not_after.to_unix_duration();
    let not_before = validity.not_before.to_unix_duration();
    if since_epoch > not_after {
        return Err(X509Error::Expired(not_after.as_secs()));
    }
    if since_epoch + CLOCK_SKEW < not_before {
        return Err(X509Error::NotYetValid(not_before.as_secs()));
    }
    Ok(())
}

fn parse(cert_der: &[u8]) -> Result<Certificate, X509Error> {
    Certificate::from_der(cert_der).map_err(|e| X509Error::Parse(e.to_string()))
}

/// The SubjectPublicKeyInfo DER of a DER certificate (the agent checks the issued leaf holds its key).
pub fn leaf_public_key(cert_der: &[u8]) -> Result<Vec<u8>, X509Error> {
    parse(cert_der)?
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| X509Error::Encode(e.to_string()))
}

/// What a certificate says, for display and checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// The serial number's DER content bytes, lowercase hex.
    pub serial_hex: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// The URI subjectAltNames, in order (an X.509-SVID has exactly one).
    pub uri_sans: Vec<String>,
}

pub fn summarize(cert_der: &[u8]) -> Result<CertSummary, X509Error> {
    let cert = parse(cert_der)?;
    let tbs = &cert.tbs_certificate;
    Ok(CertSummary {
        serial_hex: hex::encode(tbs.serial_number.as_bytes()),
        not_before: tbs.validity.not_before.to_system_time(),
        not_after: tbs.validity.not_after.to_system_time(),
        uri_sans: uri_sans(&cert)?,
    })
}

/// The URI subjectAltNames of `cert`; more than one SAN extension is an error, not a merge.
pub(crate) fn uri_sans(cert: &Certificate) -> Result<Vec<String>, X509Error> {
    let mut found: Option<SubjectAltName> = None;
    for ext in cert.tbs_certificate.extensions.iter().flatten() {
        if ext.extn_id == <SubjectAltName as der::oid::AssociatedOid>::OID {
            if found.is_some() {
                return Err(X509Error::DuplicateSubjectAltName);
            }
            found = Some(
                SubjectAltName::from_der(ext.extn_value.as_bytes())
                    .map_err(|e| X509Error::SubjectAltName(e.to_string()))?,
            );
        }
    }
    Ok(found
        .into_iter()
        .flat_map(|san| san.0)
        .filter_map(|name| match name {
            GeneralName::UniformResourceIdentifier(uri) => Some(uri.to_string()),
            _ => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::svid_key::SvidKey;
    use crate::zone_ca::{FileCaSigner, ZoneCa};
    use std::time::Duration;

    #[test]
    fn test_x509_reads_key_validity_and_uri_sans_of_a_real_certificate() {
        // A zone CA certificate: self-signed, SAN URI urn:zones:host:<id>, 10 years.
        let ca = ZoneCa::new_self_signed(FileCaSigner::ephemeral(), "host-a").expect("ca");
        let summary = summarize(ca.cert_der()).expect("summary");
        assert_eq!(summary.uri_sans, vec!["urn:zones:host:host-a".to_string()]);
        let now = SystemTime::now();
        assert!(summary.not_before < now && now < summary.not_after);
        let life = summary
            .not_after
            .duration_since(summary.not_before)
            .expect("ordered");
        assert!(life > Duration::from_secs(9 * 365 * 86400), "{life:?}");
        assert_eq!(summary.serial_hex.len(), 32, "{}", summary.serial_hex);

        let key = SvidKey::generate();
        let ek = crate::soft_tpm::SoftTpm::new();
        let ek_cert = ca.issue_ek_cert("zone-1", ek.ek_public()).expect("ek cert");
        assert_eq!(
            leaf_public_key(&ek_cert).expect("spki"),
            ek.ek_public().to_spki_der().expect("ek spki")
        );
        assert_ne!(
            leaf_public_key(&ek_cert).expect("spki"),
            key.public_key_der()
        );
    }

    #[test]
    fn test_x509_garbage_is_an_error() {
        assert!(matches!(leaf_public_key(b""), Err(X509Error::Parse(_))));
        assert!(matches!(
            summarize(&[0x30, 0x03, 1, 2, 3]),
            Err(X509Error::Parse(_))
        ));
        let ca = ZoneCa::new_self_signed(FileCaSigner::ephemeral(), "host-a").expect("ca");
        let der = ca.cert_der();
        assert!(leaf_public_key(&der[..der.len() - 1]).is_err());
    }

    #[test]
    fn test_check_chain_of_an_issued_svid_and_of_bad_ones() {
        use crate::identity::authority::IdentityAuthority;
        use crate::identity::spiffe_id::{SpiffeId, TrustDomain};
        let td = TrustDomain::parse("zones.test").expect("td");
        let authority = IdentityAuthority::ephemeral(&td);
        let other = IdentityAuthority::ephemeral(&td);
        let id = SpiffeId::parse("spiffe://zones.test/zone/web").expect("id");
        let key = SvidKey::generate();
        let svid = authority
            .issue_x509_svid(&id, &key.public_key_der(), Duration::from_secs(600))
            .expect("svid");
        let chain = vec![svid.cert_der.clone()];
        let now = SystemTime::now();
        check_chain(&chain, &authority.x509_bundle(), now).expect("chains to its bundle");
        // Another authority's bundle (even of the same trust domain) is not its issuer.
        assert!(matches!(
            check_chain(&chain, &other.x509_bundle(), now),
            Err(X509Error::NotSignedBy(0, "the bundle"))
        ));
        // Expired; not yet valid beyond the allowed clock skew.
        let later = now + Duration::from_secs(3600);
        assert!(matches!(
            check_chain(&chain, &authority.x509_bundle(), later),
            Err(X509Error::Expired(_))
        ));
        let earlier = now - Duration::from_secs(3600);
        assert!(matches!(
            check_chain(&chain, &authority.x509_bundle(), earlier),
            Err(X509Error::NotYetValid(_))
        ));
        // A flipped signature byte.
        let mut forged = svid.cert_der.clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert!(check_chain(&[forged], &authority.x509_bundle(), now).is_err());
        assert!(check_chain(&[], &authority.x509_bundle(), now).is_err());
    }
}
