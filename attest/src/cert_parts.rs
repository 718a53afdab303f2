//! The parts every certificate Zones issues is built from, for the zone CA (`zone_ca`) and
//! the identity authority (`identity::x509::build`) alike: extensions, key identifiers,
//! serials, validity times and the one signature algorithm (ECDSA P-256 with SHA-256).
//! Errors are the encoder's text; each caller wraps them in its own error.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use der::asn1::{GeneralizedTime, Ia5String, OctetString, UtcTime};
use der::oid::AssociatedOid;
use der::{DateTime, Decode as _, Encode};
use rand_core::{OsRng, RngCore as _};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::Extension;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Time;

use crate::chain::ECDSA_WITH_SHA256;

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// `value` as an extension.
pub(crate) fn extension<T: Encode + AssociatedOid>(
    value: &T,
    critical: bool,
) -> Result<Extension, String> {
    Ok(Extension {
        extn_id: T::OID,
        critical,
        extn_value: OctetString::new(value.to_der().map_err(text)?).map_err(text)?,
    })
}

/// A URI general name (for subjectAltName).
pub(crate) fn uri(uri: &str) -> Result<GeneralName, String> {
    Ok(GeneralName::UniformResourceIdentifier(
        Ia5String::new(uri).map_err(text)?,
    ))
}

/// RFC 7093 method 1: the leftmost 160 bits of SHA-256 of the subjectPublicKey bits.
pub(crate) fn key_identifier(spki: &SubjectPublicKeyInfoOwned) -> Result<OctetString, String> {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(spki.subject_public_key.raw_bytes());
    OctetString::new(&digest[..20]).map_err(text)
}

/// 16 random bytes, positive and without a leading zero byte (so DER keeps all 16).
pub(crate) fn random_serial() -> Result<SerialNumber, String> {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::new(&bytes).map_err(text)
}

/// `t` in whole seconds, UTCTime through 2049 and GeneralizedTime after (RFC 5280 §4.1.2.5).
pub(crate) fn time(t: SystemTime) -> Result<Time, String> {
    let secs = t.duration_since(UNIX_EPOCH).map_err(text)?.as_secs();
    let date = DateTime::from_unix_duration(Duration::from_secs(secs)).map_err(text)?;
    if date.year() <= UtcTime::MAX_YEAR {
        Ok(Time::UtcTime(UtcTime::from_date_time(date).map_err(text)?))
    } else {
        Ok(Time::GeneralTime(GeneralizedTime::from_date_time(date)))
    }
}

/// ECDSA with SHA-256, the algorithm of every certificate Zones signs.
pub(crate) fn ecdsa_with_sha256() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: ECDSA_WITH_SHA256,
        parameters: None,
    }
}

/// The SubjectPublicKeyInfo of a P-256 key.
pub(crate) fn spki_of(
    key: &p256::ecdsa::VerifyingKey,
) -> Result<SubjectPublicKeyInfoOwned, String> {
    use p256::pkcs8::EncodePublicKey as _;
    let der = key.to_public_key_der().map_err(text)?;
    SubjectPublicKeyInfoOwned::from_der(der.as_bytes()).map_err(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_time_is_utc_through_2049_then_generalized() {
        let at = |secs: u64| time(UNIX_EPOCH + Duration::from_secs(secs)).expect("time");
        assert!(matches!(at(1_795_405_061), Time::UtcTime(_)));
        assert!(matches!(at(2_524_608_000), Time::GeneralTime(_))); // 2050-01-01
        assert!(time(UNIX_EPOCH - Duration::from_secs(1)).is_err());
    }

    #[test]
    fn test_random_serial_is_positive_sixteen_bytes() {
        for _ in 0..64 {
            let serial = random_serial().expect("serial");
            assert_eq!(serial.as_bytes().len(), 16);
            assert_eq!(serial.as_bytes()[0] & 0xc0, 0x40);
        }
    }
}
