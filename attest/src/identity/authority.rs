//! The host's identity authority for one trust domain: the X.509 CA that signs X.509-SVIDs and
//! the key that signs JWT-SVIDs. zonectl asks it for a zone's SVIDs only after attestation and
//! the registration policy ([`super::policy`]) admitted the zone.
//!
//! Kept as files in `dir/<trust domain>/` (0700): `x509-ca-key.pem` and `jwt-key.pem` (PKCS#8,
//! 0600), `x509-ca-cert.pem`, and for operators the bundles `bundle.pem` (the CA certificate)
//! and `jwt-bundle.json` (the JWK Set). Like the zone CA's key file, anyone who can read the key
//! files can mint identities for this trust domain.
//!
//! Creation is race-safe without locks: a new authority is written completely into a fresh
//! temporary directory next to `dir/<trust domain>` and renamed onto it. rename(2) does not
//! replace a non-empty directory, so of several zonectls starting at once exactly one wins, and
//! the others load the winner's files; nobody ever sees a half-written authority. Existing files
//! are checked, never replaced: a file that is corrupt or does not fit the others is an error
//! naming it.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use der::{Decode as _, DecodePem as _, EncodePem as _};
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, LineEnding};
use sha2::{Digest as _, Sha256};
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::ext::pkix::BasicConstraints;
use x509_cert::time::Validity;
use x509_cert::Certificate;

use super::jwt::{self, JwtSvidClaims};
use super::spiffe_id::{SpiffeId, TrustDomain};
use super::x509::build::{self, LeafRequest};
use super::x509::{self as svid_x509, X509Error};

pub const CA_KEY_FILE: &str = "x509-ca-key.pem";
pub const CA_CERT_FILE: &str = "x509-ca-cert.pem";
pub const JWT_KEY_FILE: &str = "jwt-key.pem";
pub const X509_BUNDLE_FILE: &str = "bundle.pem";
pub const JWT_BUNDLE_FILE: &str = "jwt-bundle.json";

/// Lifetime of the CA certificate.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// notBefore is set this far in the past: SVIDs are used right away, by peers whose clocks may
/// lag the host's.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
    #[error("{0} is readable or writable by group/others (mode {1:o}); it must be 0600")]
    KeyPermissions(PathBuf, u32),
    #[error("{0}: not a PKCS#8 PEM P-256 private key")]
    KeyFormat(PathBuf),
    #[error("{0}: not a PEM X.509 certificate")]
    CertFormat(PathBuf),
    #[error("{path} is the CA certificate of {found:?}, not of trust domain {expected:?}")]
    CertTrustDomain {
        path: PathBuf,
        found: Vec<String>,
        expected: String,
    },
    #[error("{0}: {1}")]
    CertProfile(PathBuf, &'static str),
    #[error("{cert} does not certify the key in {key}")]
    CertKey { cert: PathBuf, key: PathBuf },
    #[error("{0}: the CA certificate expired at {1} s since the epoch; move the directory away to make a new authority")]
    CaExpired(PathBuf, u64),
    #[error("{0} does not match the authority's {1}")]
    BundleMismatch(PathBuf, &'static str),
    #[error("{id} is not in trust domain {trust_domain}")]
    ForeignId { id: String, trust_domain: String },
    #[error("the public key to certify is not an EC P-256 SubjectPublicKeyInfo (DER): {0}")]
    PublicKey(String),
    #[error("the audience: {0}")]
    Audience(&'static str),
    #[error("the lifetime {0:?} is too short or too long")]
    Ttl(Duration),
    #[error("the CA certificate expired; no SVID can be issued")]
    Expired,
    #[error("building a certificate: {0}")]
    X509(#[from] X509Error),
    #[error("encoding: {0}")]
    Encode(String),
}

type Result<T> = std::result::Result<T, AuthorityError>;

fn encode_err(e: impl std::fmt::Display) -> AuthorityError {
    AuthorityError::Encode(e.to_string())
}

/// An X.509-SVID the authority issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedSvid {
    pub cert_der: Vec<u8>,
    /// Lowercase hex of the serial number's 16 bytes.
    pub serial_hex: String,
    /// As encoded: whole seconds.
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// The host's identity authority for one trust domain (see the module docs).
pub struct IdentityAuthority {
    trust_domain: TrustDomain,
    ca_key: p256::ecdsa::SigningKey,
    ca_cert: Certificate,
    ca_cert_der: Vec<u8>,
    jwt_key: p256::ecdsa::SigningKey,
    jwt_kid: String,
    /// `dir/<trust domain>` (`None`: [`IdentityAuthority::ephemeral`]).
    home: Option<PathBuf>,
}

/// No key material: Debug output ends up in logs.
impl std::fmt::Debug for IdentityAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityAuthority")
            .field("trust_domain", &self.trust_domain.as_str())
            .field(
                "ca_cert_sha256",
                &hex::encode(Sha256::digest(&self.ca_cert_der)),
            )
            .field("jwt_kid", &self.jwt_kid)
            .field("home", &self.home)
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> AuthorityError + '_ {
    move |e| AuthorityError::Io(path.to_path_buf(), e)
}

/// Writes a new file (never an existing one) and flushes it to disk.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(bytes).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

fn read_key(path: &Path) -> Result<p256::ecdsa::SigningKey> {
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(AuthorityError::KeyPermissions(path.to_path_buf(), mode));
    }
    let pem = std::fs::read_to_string(path).map_err(io_err(path))?;
    p256::ecdsa::SigningKey::from_pkcs8_pem(&pem)
        .map_err(|_| AuthorityError::KeyFormat(path.to_path_buf()))
}

/// Whether `cert` says cA=TRUE in a basicConstraints extension.
fn is_ca(cert: &Certificate) -> bool {
    cert.tbs_certificate
        .extensions
        .iter()
        .flatten()
        .filter(|e| e.extn_id == <BasicConstraints as der::oid::AssociatedOid>::OID)
        .any(|e| BasicConstraints::from_der(e.extn_value.as_bytes()).is_ok_and(|bc| bc.ca))
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl IdentityAuthority {
    /// Opens the authority of `trust_domain` in `dir/<trust domain>/`, creating it (and `dir`,
    /// 0700) on first use; see the module docs for the files and the race.
    pub fn open_or_create(dir: &Path, trust_domain: &TrustDomain) -> Result<Self> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(dir))?;
        let home = dir.join(trust_domain.as_str());
        match std::fs::symlink_metadata(&home) {
            Ok(_) => Self::load(&home, trust_domain),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Self::create(dir, &home, trust_domain)
            }
            Err(e) => Err(AuthorityError::Io(home, e)),
        }
    }

    /// Keys in memory only, for tests.
    ///
    /// # Panics
    /// Only if certificate encoding fails, which it cannot for a valid trust domain.
    pub fn ephemeral(trust_domain: &TrustDomain) -> Self {
        match Self::generate(trust_domain) {
            Ok(authority) => authority,
            Err(e) => panic!("an in-memory identity authority for {trust_domain}: {e}"),
        }
    }

    fn generate(trust_domain: &TrustDomain) -> Result<Self> {
        let ca_key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let now = SystemTime::now();
        let ca_cert_der =
            build::ca_certificate(trust_domain, &ca_key, now - CLOCK_SKEW, now + CA_VALIDITY)?;
        let ca_cert = Certificate::from_der(&ca_cert_der).map_err(encode_err)?;
        let jwt_key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        Ok(Self {
            trust_domain: trust_domain.clone(),
            ca_key,
            ca_cert,
            ca_cert_der,
            jwt_kid: jwt::key_id(jwt_key.verifying_key()),
            jwt_key,
            home: None,
        })
    }

    /// Writes a new authority into a temporary directory and renames it to `home`; after a
    /// lost race, loads the winner's.
    fn create(dir: &Path, home: &Path, trust_domain: &TrustDomain) -> Result<Self> {
        let mut authority = Self::generate(trust_domain)?;
        let mut nonce = [0u8; 8];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
        let tmp = dir.join(format!(
            ".{trust_domain}.new-{}-{}",
            std::process::id(),
            hex::encode(nonce)
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&tmp)
            .map_err(io_err(&tmp))?;
        let written = authority.write_files(&tmp);
        let renamed = written.and_then(|()| std::fs::rename(&tmp, home).map_err(io_err(home)));
        match renamed {
            Ok(()) => {
                // Make the rename durable; failing that is not worth failing the zone start.
                if let Ok(d) = std::fs::File::open(dir) {
                    let _ = d.sync_all();
                }
                authority.home = Some(home.to_path_buf());
                Ok(authority)
            }
            Err(e) => {
                // Best effort: the temporary directory holds keys nobody will use.
                let _ = std::fs::remove_dir_all(&tmp);
                if std::fs::symlink_metadata(home).is_ok() {
                    Self::load(home, trust_domain)
                } else {
                    Err(e)
                }
            }
        }
    }

    fn write_files(&self, dir: &Path) -> Result<()> {
        // Zeroized on drop.
        let ca_key = self
            .ca_key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(encode_err)?;
        let jwt_key = self
            .jwt_key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(encode_err)?;
        let cert_pem = self.x509_bundle_pem()?;
        write_new(&dir.join(CA_KEY_FILE), ca_key.as_bytes(), 0o600)?;
        write_new(&dir.join(JWT_KEY_FILE), jwt_key.as_bytes(), 0o600)?;
        write_new(&dir.join(CA_CERT_FILE), cert_pem.as_bytes(), 0o644)?;
        write_new(&dir.join(X509_BUNDLE_FILE), cert_pem.as_bytes(), 0o644)?;
        write_new(
            &dir.join(JWT_BUNDLE_FILE),
            self.jwt_bundle().as_bytes(),
            0o644,
        )?;
        let d = std::fs::File::open(dir).map_err(io_err(dir))?;
        d.sync_all().map_err(io_err(dir))
    }

    /// Loads and cross-checks the files in `home`.
    fn load(home: &Path, trust_domain: &TrustDomain) -> Result<Self> {
        let key_path = home.join(CA_KEY_FILE);
        let cert_path = home.join(CA_CERT_FILE);
        let ca_key = read_key(&key_path)?;
        let pem = std::fs::read(&cert_path).map_err(io_err(&cert_path))?;
        let ca_cert = Certificate::from_pem(&pem)
            .map_err(|_| AuthorityError::CertFormat(cert_path.clone()))?;
        let ca_cert_der = der::Encode::to_der(&ca_cert).map_err(encode_err)?;
        let sans = svid_x509::uri_sans(&ca_cert)
            .map_err(|_| AuthorityError::CertFormat(cert_path.clone()))?;
        if sans != [trust_domain.id_uri()] {
            return Err(AuthorityError::CertTrustDomain {
                path: cert_path,
                found: sans,
                expected: trust_domain.to_string(),
            });
        }
        if ca_cert.tbs_certificate.subject_public_key_info
            != build::spki_of(ca_key.verifying_key())?
        {
            return Err(AuthorityError::CertKey {
                cert: cert_path,
                key: key_path,
            });
        }
        if crate::chain::check_signature(&ca_cert, ca_key.verifying_key()).is_err() {
            return Err(AuthorityError::CertProfile(
                cert_path,
                "not self-signed with its key",
            ));
        }
        if !is_ca(&ca_cert) {
            return Err(AuthorityError::CertProfile(
                cert_path,
                "not a CA certificate (basicConstraints cA is not TRUE)",
            ));
        }
        let not_after = ca_cert.tbs_certificate.validity.not_after.to_system_time();
        if not_after <= SystemTime::now() {
            return Err(AuthorityError::CaExpired(cert_path, unix_secs(not_after)));
        }
        let jwt_key = read_key(&home.join(JWT_KEY_FILE))?;
        let authority = Self {
            trust_domain: trust_domain.clone(),
            ca_key,
            ca_cert,
            ca_cert_der,
            jwt_kid: jwt::key_id(jwt_key.verifying_key()),
            jwt_key,
            home: Some(home.to_path_buf()),
        };
        authority.check_bundles(home)?;
        Ok(authority)
    }

    /// The operators' bundle files must say what the keys and certificate say.
    fn check_bundles(&self, home: &Path) -> Result<()> {
        let path = home.join(X509_BUNDLE_FILE);
        let pem = std::fs::read(&path).map_err(io_err(&path))?;
        let same = Certificate::from_pem(&pem).is_ok_and(|c| c == self.ca_cert);
        if !same {
            return Err(AuthorityError::BundleMismatch(path, "CA certificate"));
        }
        let path = home.join(JWT_BUNDLE_FILE);
        let json = std::fs::read(&path).map_err(io_err(&path))?;
        let found: Option<serde_json::Value> = serde_json::from_slice(&json).ok();
        let expected: Option<serde_json::Value> = serde_json::from_str(&self.jwt_bundle()).ok();
        if found.is_none() || found != expected {
            return Err(AuthorityError::BundleMismatch(path, "JWT signing key"));
        }
        Ok(())
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// `dir/<trust domain>`, or `None` for an ephemeral authority.
    pub fn home(&self) -> Option<&Path> {
        self.home.as_deref()
    }

    /// DER certificates of the X.509 bundle (the CA cert).
    pub fn x509_bundle(&self) -> Vec<Vec<u8>> {
        vec![self.ca_cert_der.clone()]
    }

    /// The X.509 bundle as PEM (what `bundle.pem` holds).
    pub fn x509_bundle_pem(&self) -> Result<String> {
        self.ca_cert.to_pem(LineEnding::LF).map_err(encode_err)
    }

    /// The JWT bundle, a JWK Set JSON with the one signing key (kid: [`jwt::key_id`]).
    pub fn jwt_bundle(&self) -> String {
        jwt::jwk_set(&[(self.jwt_kid.clone(), *self.jwt_key.verifying_key())])
    }

    /// The kid of the JWT signing key.
    pub fn jwt_key_id(&self) -> &str {
        &self.jwt_kid
    }

    fn check_member(&self, id: &SpiffeId) -> Result<()> {
        if id.is_member_of(&self.trust_domain) {
            Ok(())
        } else {
            Err(AuthorityError::ForeignId {
                id: id.to_string(),
                trust_domain: self.trust_domain.to_string(),
            })
        }
    }

    /// An X.509-SVID leaf for `id` (in this trust domain) holding `public_key_der` (an EC P-256
    /// SubjectPublicKeyInfo), valid from now-60s to now+ttl but never beyond the CA
    /// certificate's notAfter, with a random positive 16-byte serial. The profile is in
    /// [`super::x509::build`]: an empty subject and a critical URI SAN.
    pub fn issue_x509_svid(
        &self,
        id: &SpiffeId,
        public_key_der: &[u8],
        ttl: Duration,
    ) -> Result<IssuedSvid> {
        use p256::pkcs8::DecodePublicKey as _;
        self.check_member(id)?;
        p256::PublicKey::from_public_key_der(public_key_der)
            .map_err(|e| AuthorityError::PublicKey(e.to_string()))?;
        let spki = SubjectPublicKeyInfoOwned::from_der(public_key_der)
            .map_err(|e| AuthorityError::PublicKey(e.to_string()))?;
        if ttl < Duration::from_secs(1) {
            return Err(AuthorityError::Ttl(ttl));
        }
        let now = SystemTime::now();
        let ca_not_after = self
            .ca_cert
            .tbs_certificate
            .validity
            .not_after
            .to_system_time();
        let wanted = now.checked_add(ttl).ok_or(AuthorityError::Ttl(ttl))?;
        let not_after = wanted.min(ca_not_after);
        if not_after <= now {
            return Err(AuthorityError::Expired);
        }
        let validity = Validity {
            not_before: build::x509_time(now - CLOCK_SKEW)?,
            not_after: build::x509_time(not_after)?,
        };
        let (not_before, not_after) = (
            validity.not_before.to_system_time(),
            validity.not_after.to_system_time(),
        );
        let serial = build::random_serial()?;
        let serial_hex = hex::encode(serial.as_bytes());
        let request = LeafRequest {
            id,
            spki,
            serial,
            validity,
        };
        let cert_der = build::svid_certificate(request, &self.ca_cert, &self.ca_key)?;
        Ok(IssuedSvid {
            cert_der,
            serial_hex,
            not_before,
            not_after,
        })
    }

    /// A JWT-SVID for `id` with these audiences (non-empty, each non-empty), iat=now,
    /// exp=now+ttl (whole seconds, at least one).
    pub fn mint_jwt_svid(
        &self,
        id: &SpiffeId,
        audience: &[String],
        ttl: Duration,
    ) -> Result<String> {
        self.check_member(id)?;
        if audience.is_empty() {
            return Err(AuthorityError::Audience(
                "no audience given; a JWT-SVID needs one",
            ));
        }
        if audience.iter().any(String::is_empty) {
            return Err(AuthorityError::Audience("an audience is the empty string"));
        }
        if ttl.as_secs() == 0 {
            return Err(AuthorityError::Ttl(ttl));
        }
        let iat = unix_secs(SystemTime::now());
        let exp = iat
            .checked_add(ttl.as_secs())
            .ok_or(AuthorityError::Ttl(ttl))?;
        let claims = JwtSvidClaims {
            sub: id.to_string(),
            aud: audience.to_vec(),
            exp,
            iat,
        };
        Ok(jwt::sign_es256(&claims, &self.jwt_kid, &self.jwt_key))
    }
}

#[cfg(test)]
mod tests;
