//! A throwaway trust domain for the tests: a P-256 CA, X.509-SVIDs it signs, and JWT-SVIDs
//! (ES256) with the JWK Set that verifies them, as the zone's identity authority would make.

use std::str::FromStr as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use der::asn1::Ia5String;
use der::Encode as _;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{DerSignature, Signature, SigningKey};
use p256::pkcs8::EncodePrivateKey as _;
use rand_core::OsRng;
use x509_cert::builder::{Builder as _, CertificateBuilder, Profile};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::{Time, Validity};

pub const TRUST_DOMAIN: &str = "example.org";
pub const WORKLOAD_ID: &str = "spiffe://example.org/zone/web";

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

fn time(unix: u64) -> Time {
    Time::try_from(UNIX_EPOCH + Duration::from_secs(unix)).expect("a representable time")
}

/// An X.509-SVID: its chain (leaf only), its key, and the leaf's facts.
#[derive(Debug, Clone)]
pub struct Svid {
    pub leaf: Vec<u8>,
    /// PKCS#8 DER.
    pub key: Vec<u8>,
    pub not_after: u64,
}

/// The trust domain's authority: one X.509 CA key and one JWT signing key.
pub struct Authority {
    ca_key: SigningKey,
    ca_name: Name,
    /// The CA certificate, DER: the X.509 bundle.
    pub ca: Vec<u8>,
    jwt_key: SigningKey,
    pub jwt_kid: String,
}

impl Authority {
    pub fn new() -> Self {
        let ca_key = SigningKey::random(&mut OsRng);
        let ca_name = Name::from_str("CN=zones test authority,O=example.org").expect("a name");
        let now = unix_now();
        let spki = SubjectPublicKeyInfoOwned::from_key(*ca_key.verifying_key()).expect("spki");
        let ca = CertificateBuilder::new(
            Profile::Root,
            SerialNumber::from(1u32),
            Validity {
                not_before: time(now - 60),
                not_after: time(now + 86_400),
            },
            ca_name.clone(),
            spki,
            &ca_key,
        )
        .expect("a CA builder")
        .build::<DerSignature>()
        .expect("a CA certificate")
        .to_der()
        .expect("DER");
        Self {
            ca_key,
            ca_name,
            ca,
            jwt_key: SigningKey::random(&mut OsRng),
            jwt_kid: "jwt-authority-1".to_owned(),
        }
    }

    /// An X.509-SVID for `spiffe_id` with a fresh key, valid until `not_after` (unix seconds).
    pub fn issue(&self, spiffe_id: &str, serial: u64, not_after: u64) -> Svid {
        let key = SigningKey::random(&mut OsRng);
        let leaf = self.sign_leaf(spiffe_id, serial, not_after, &key);
        Svid {
            leaf,
            key: pkcs8(&key),
            not_after,
        }
    }

    /// An X.509-SVID whose key is not the one its leaf certifies.
    pub fn issue_with_wrong_key(&self, spiffe_id: &str, serial: u64, not_after: u64) -> Svid {
        let certified = SigningKey::random(&mut OsRng);
        let leaf = self.sign_leaf(spiffe_id, serial, not_after, &certified);
        Svid {
            leaf,
            key: pkcs8(&SigningKey::random(&mut OsRng)),
            not_after,
        }
    }

    fn sign_leaf(&self, spiffe_id: &str, serial: u64, not_after: u64, key: &SigningKey) -> Vec<u8> {
        let spki = SubjectPublicKeyInfoOwned::from_key(*key.verifying_key()).expect("spki");
        let mut builder = CertificateBuilder::new(
            Profile::Leaf {
                issuer: self.ca_name.clone(),
                enable_key_agreement: false,
                enable_key_encipherment: false,
            },
            SerialNumber::from(serial),
            Validity {
                not_before: time(unix_now() - 60),
                not_after: time(not_after),
            },
            Name::from_str("O=SPIRE test").expect("a name"),
            spki,
            &self.ca_key,
        )
        .expect("a leaf builder");
        let uri = Ia5String::new(spiffe_id).expect("an ASCII SPIFFE ID");
        builder
            .add_extension(&SubjectAltName(vec![
                GeneralName::UniformResourceIdentifier(uri),
            ]))
            .expect("the SPIFFE ID SAN");
        builder
            .build::<DerSignature>()
            .expect("a leaf certificate")
            .to_der()
            .expect("DER")
    }

    /// A JWT-SVID (ES256) for `spiffe_id` and `audience`, expiring at `exp`.
    pub fn jwt(&self, spiffe_id: &str, audience: &[&str], exp: u64) -> String {
        sign_jwt(&self.jwt_key, &self.jwt_kid, spiffe_id, audience, exp)
    }

    /// A JWT-SVID signed by a key no bundle holds, under the bundle's key id.
    pub fn forged_jwt(&self, spiffe_id: &str, audience: &[&str], exp: u64) -> String {
        let key = SigningKey::random(&mut OsRng);
        sign_jwt(&key, &self.jwt_kid, spiffe_id, audience, exp)
    }

    /// The JWT bundle: a JWK Set with the JWT signing key.
    pub fn jwks(&self) -> Vec<u8> {
        let point = self.jwt_key.verifying_key().to_encoded_point(false);
        let jwks = serde_json::json!({"keys": [{
            "kty": "EC",
            "crv": "P-256",
            "kid": self.jwt_kid,
            "use": "jwt-svid",
            "x": URL_SAFE_NO_PAD.encode(point.x().expect("an uncompressed point")),
            "y": URL_SAFE_NO_PAD.encode(point.y().expect("an uncompressed point")),
        }]});
        serde_json::to_vec(&jwks).expect("JSON")
    }
}

fn pkcs8(key: &SigningKey) -> Vec<u8> {
    key.to_pkcs8_der().expect("PKCS#8").as_bytes().to_vec()
}

fn sign_jwt(key: &SigningKey, kid: &str, spiffe_id: &str, audience: &[&str], exp: u64) -> String {
    let header = serde_json::json!({"alg": "ES256", "kid": kid, "typ": "JWT"});
    let claims =
        serde_json::json!({"sub": spiffe_id, "aud": audience, "exp": exp, "iat": unix_now()});
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature: Signature = key.sign(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    )
}
