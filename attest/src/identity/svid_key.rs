//! The zone's SVID key pair. The agent generates it inside the zone and sends only the public
//! key to the host, which certifies it ([`super::authority`]): the private key never leaves the
//! zone, and the Workload API hands it to the zone's workloads as `x509_svid_key`.

use std::fmt;

use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, EncodePublicKey as _};
use rand_core::OsRng;
use sha2::{Digest as _, Sha256};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SvidKeyError {
    #[error("not an unencrypted PKCS#8 DER P-256 private key")]
    Format,
}

/// A P-256 ECDSA key pair for X.509-SVIDs.
pub struct SvidKey {
    key: p256::ecdsa::SigningKey,
}

/// Only the public key's fingerprint: Debug output ends up in logs.
impl fmt::Debug for SvidKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SvidKey")
            .field(
                "public_key_sha256",
                &hex::encode(Sha256::digest(self.public_key_der())),
            )
            .finish_non_exhaustive()
    }
}

impl SvidKey {
    /// A fresh key from the operating system's random number generator.
    pub fn generate() -> Self {
        Self {
            key: p256::ecdsa::SigningKey::random(&mut OsRng),
        }
    }

    /// The key `pkcs8_der` returned (a zone agent restarting keeps its SVID).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, SvidKeyError> {
        let key = p256::ecdsa::SigningKey::from_pkcs8_der(der).map_err(|_| SvidKeyError::Format)?;
        Ok(Self { key })
    }

    /// SubjectPublicKeyInfo DER of the public key: what the host certifies.
    pub fn public_key_der(&self) -> Vec<u8> {
        // Encoding a valid P-256 point into a fixed-shape SPKI cannot fail.
        self.key
            .verifying_key()
            .to_public_key_der()
            .map(|d| d.into_vec())
            .unwrap_or_default()
    }

    /// PKCS#8 DER, unencrypted (the Workload API's `x509_svid_key`). Holds the private key:
    /// hand it only to the zone's own workloads.
    pub fn pkcs8_der(&self) -> Vec<u8> {
        // Encoding a valid P-256 scalar into a fixed-shape PKCS#8 document cannot fail.
        self.key
            .to_pkcs8_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default()
    }

    pub fn signing_key(&self) -> &p256::ecdsa::SigningKey {
        &self.key
    }

    pub fn verifying_key(&self) -> &p256::ecdsa::VerifyingKey {
        self.key.verifying_key()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::pkcs8::DecodePublicKey as _;

    #[test]
    fn test_svid_key_der_round_trips_and_debug_hides_the_key() {
        let key = SvidKey::generate();
        let spki = key.public_key_der();
        // SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (65-byte point) }
        assert_eq!(spki.len(), 91);
        let public = p256::ecdsa::VerifyingKey::from_public_key_der(&spki).expect("spki");
        assert_eq!(&public, key.verifying_key());
        let pkcs8 = key.pkcs8_der();
        let back = SvidKey::from_pkcs8_der(&pkcs8).expect("pkcs8");
        assert_eq!(back.public_key_der(), spki);
        assert_eq!(back.signing_key().to_bytes(), key.signing_key().to_bytes());
        assert_ne!(
            SvidKey::generate().public_key_der(),
            spki,
            "each key is fresh"
        );
        let debug = format!("{key:?}");
        let secret_hex = hex::encode(key.signing_key().to_bytes());
        assert!(!debug.contains(&secret_hex), "{debug}");
        assert!(
            debug.contains(&hex::encode(Sha256::digest(&spki))),
            "{debug}"
        );
        assert_eq!(
            SvidKey::from_pkcs8_der(b"not a key").map(|_| ()),
            Err(SvidKeyError::Format)
        );
    }
}
