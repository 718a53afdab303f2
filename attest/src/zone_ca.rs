//! The per-host zone CA: issues each zone vTPM's EK certificate and, acting as the TCG "Privacy
//! CA", certifies a zone's AK only after credential activation proved that the AK lives in the
//! TPM that holds the certified EK (TPM 2.0 Part 1 §24; the flow Keylime's registrar and SPIRE's
//! `tpm_devid` use). Certificate profiles are in [`crate::chain`].
//!
//! The CA key is behind [`CaSigner`]. [`FileCaSigner`] keeps a P-256 key in a PKCS#8 PEM file
//! created with mode 0600 on first use. That is the explicit fallback: anyone who can read the
//! file (root on the host, a backup, a disk image) can mint EK and AK certificates for any zone,
//! and nothing proves to a remote verifier which host the CA key lives on. The stronger signer,
//! [`crate::tpm_ca_signer::TpmCaSigner`], keeps the key in the host's TPM, where it cannot be
//! copied off the host; [`ZoneCa::open_or_create_with`] opens the CA with any signer and keeps
//! only the certificate in the CA directory. (Certifying that key with the host's AK, so a
//! verifier can chain host attestation → zone CA → zone EK → zone AK, is still to come.)

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::time::{Duration, SystemTime};

use der::asn1::{BitString, OctetString};
use der::oid::AssociatedOid;
use der::{Decode, DecodePem as _, Encode, EncodePem as _};
use rand_core::{CryptoRng, OsRng, RngCore};
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::certificate::{TbsCertificate, Version};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Validity;
use x509_cert::Certificate;

use crate::activation::{make_credential, ActivationError, CredentialChallenge};
use crate::cert_parts;
use crate::chain::{self, Role, URN_AK_NAME, URN_EK, URN_HOST, URN_ZONE};
use crate::quote::{check_ak_attributes, ct_eq};
use crate::tpm_types::{PublicKey, TpmPublic};

/// Lifetime of the CA certificate.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Lifetime of EK and AK certificates (a zone lives far shorter; revocation is not modelled).
const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// notBefore is set this far in the past: certificates are used right after issuance, by
/// verifiers whose clocks may lag the host's (and UTCTime has whole seconds).
const BACKDATE: Duration = Duration::from_secs(300);
pub const KEY_FILE: &str = "zone-ca-key.pem";

/// A certificate file as DER, whether it holds PEM (as the zone CA writes) or DER.
pub fn read_certificate(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| ZoneCaError::Io(path.to_path_buf(), e))?;
    let cert = if bytes.starts_with(b"-----BEGIN") {
        Certificate::from_pem(&bytes)
    } else {
        Certificate::from_der(&bytes)
    }
    .map_err(|_| ZoneCaError::CertFormat(path.to_path_buf()))?;
    enc(&cert)
}
pub const CERT_FILE: &str = "zone-ca-cert.pem";

#[derive(Debug, thiserror::Error)]
pub enum ZoneCaError {
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
    #[error("{0} is readable or writable by group/others (mode {1:o}); it must be 0600")]
    KeyPermissions(PathBuf, u32),
    #[error("{0}: not a PKCS#8 P-256 key")]
    KeyFormat(PathBuf),
    #[error("{0}: the CA certificate is not for this key or this host")]
    CertMismatch(PathBuf),
    #[error(
        "{0} certifies another CA key than this CA's signer ({1}): a CA made with another key \
         file or host TPM (or a TPM whose owner hierarchy was cleared). Use the signer that made \
         it, or move the file away to make a new CA (zones certified by the old one will no \
         longer verify against the new certificate)"
    )]
    CertKey(PathBuf, String),
    #[error("{0} is the zone CA certificate of host {1:?}, not of this host {2:?}")]
    CertHost(PathBuf, String, String),
    #[error("the host TPM: {0}")]
    HostTpm(#[from] crate::tpm_ca_signer::TpmCaSignerError),
    #[error("{0}: not an X.509 certificate (PEM or DER)")]
    CertFormat(PathBuf),
    #[error("invalid {0} id {1:?} (allowed: [A-Za-z0-9._-], 1..=128)")]
    Id(&'static str, String),
    #[error("encoding the certificate: {0}")]
    Encode(String),
    #[error("the signer failed: {0}")]
    Sign(String),
    #[error("EK certificate: {0}")]
    EkCert(#[from] chain::ChainError),
    #[error("the EK public key is not the one in the EK certificate")]
    EkMismatch,
    #[error("the AK is not an attestation key: {0}")]
    AkAttributes(#[from] crate::quote::QuoteError),
    #[error("the AK key cannot be certified: {0}")]
    AkKey(#[from] crate::tpm_types::TpmError),
    #[error("credential activation: {0}")]
    Activation(#[from] ActivationError),
    #[error("credential activation failed: the returned secret is wrong")]
    ActivationSecret,
}

type Result<T> = std::result::Result<T, ZoneCaError>;

/// The CA's signing key. Implementations: [`FileCaSigner`] (a key file) and
/// [`crate::tpm_ca_signer::TpmCaSigner`] (the host's TPM).
pub trait CaSigner: std::fmt::Debug + Send + Sync {
    fn verifying_key(&self) -> p256::ecdsa::VerifyingKey;
    /// ECDSA P-256 over SHA-256 of `message`, DER-encoded.
    fn sign(&self, message: &[u8]) -> Result<p256::ecdsa::DerSignature>;
    /// What holds the key, for messages: "the key file /var/lib/zones/ca/zone-ca-key.pem".
    fn describe(&self) -> String {
        "the CA's signer".to_string()
    }
}

/// A signer chosen at run time (zonectl picks a host TPM or a key file).
impl<S: CaSigner + ?Sized> CaSigner for Box<S> {
    fn verifying_key(&self) -> p256::ecdsa::VerifyingKey {
        (**self).verifying_key()
    }

    fn sign(&self, message: &[u8]) -> Result<p256::ecdsa::DerSignature> {
        (**self).sign(message)
    }

    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// A P-256 CA key in a PKCS#8 PEM file (mode 0600). See the module docs for what is weaker.
#[derive(Debug)]
pub struct FileCaSigner {
    key: p256::ecdsa::SigningKey,
    /// The file it came from (`None`: [`FileCaSigner::ephemeral`]).
    path: Option<PathBuf>,
}

impl FileCaSigner {
    /// The key, for signing something other than certificates with it (a verifier's EAR).
    pub fn signing_key(&self) -> &p256::ecdsa::SigningKey {
        &self.key
    }

    /// Loads the key at `path`, or creates it (mode 0600, never overwriting) if it is absent.
    /// Refuses a key file that group or others may read or write.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, LineEnding};
        let io = |e| ZoneCaError::Io(path.to_path_buf(), e);
        match std::fs::metadata(path) {
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(ZoneCaError::KeyPermissions(path.to_path_buf(), mode));
                }
                let pem = std::fs::read_to_string(path).map_err(io)?;
                let key = p256::ecdsa::SigningKey::from_pkcs8_pem(&pem)
                    .map_err(|_| ZoneCaError::KeyFormat(path.to_path_buf()))?;
                Ok(Self {
                    key,
                    path: Some(path.to_path_buf()),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = p256::ecdsa::SigningKey::random(&mut OsRng);
                let pem = key
                    .to_pkcs8_pem(LineEnding::LF)
                    .map_err(|e| ZoneCaError::Encode(e.to_string()))?;
                if !publish_new(path, pem.as_bytes(), 0o600).map_err(io)? {
                    // Another process made the key first: use theirs.
                    return Self::load_or_create(path);
                }
                Ok(Self {
                    key,
                    path: Some(path.to_path_buf()),
                })
            }
            Err(e) => Err(io(e)),
        }
    }

    /// A key that lives only in memory (tests, one-shot tools).
    pub fn ephemeral() -> Self {
        Self {
            key: p256::ecdsa::SigningKey::random(&mut OsRng),
            path: None,
        }
    }
}

impl CaSigner for FileCaSigner {
    fn verifying_key(&self) -> p256::ecdsa::VerifyingKey {
        *self.key.verifying_key()
    }

    fn sign(&self, message: &[u8]) -> Result<p256::ecdsa::DerSignature> {
        use signature::Signer as _;
        let sig: p256::ecdsa::Signature = self
            .key
            .try_sign(message)
            .map_err(|e| ZoneCaError::Sign(e.to_string()))?;
        Ok(sig.to_der())
    }

    fn describe(&self) -> String {
        match &self.path {
            Some(p) => format!("the key file {}", p.display()),
            None => "an in-memory key".to_string(),
        }
    }
}

/// What the CA remembers between sending the activation challenge and receiving the secret.
#[derive(Debug)]
pub struct PendingActivation {
    zone_id: String,
    ak: TpmPublic,
    ek_spki_sha256: String,
    secret: [u8; 32],
}

/// The zone CA of one host.
#[derive(Debug)]
pub struct ZoneCa<S: CaSigner = FileCaSigner> {
    signer: S,
    cert: Certificate,
    cert_der: Vec<u8>,
    host_id: String,
}

fn check_id(kind: &'static str, id: &str) -> Result<()> {
    if chain::valid_id(id) {
        Ok(())
    } else {
        Err(ZoneCaError::Id(kind, id.to_string()))
    }
}

fn enc<T: Encode>(v: &T) -> Result<Vec<u8>> {
    v.to_der().map_err(|e| ZoneCaError::Encode(e.to_string()))
}

fn ext<T: Encode + AssociatedOid>(v: &T, critical: bool) -> Result<Extension> {
    cert_parts::extension(v, critical).map_err(ZoneCaError::Encode)
}

fn uri(s: String) -> Result<GeneralName> {
    cert_parts::uri(&s).map_err(ZoneCaError::Encode)
}

fn name(s: &str) -> Result<Name> {
    Name::from_str(s).map_err(|e| ZoneCaError::Encode(e.to_string()))
}

fn key_id(spki: &SubjectPublicKeyInfoOwned) -> Result<OctetString> {
    cert_parts::key_identifier(spki).map_err(ZoneCaError::Encode)
}

fn serial() -> Result<SerialNumber> {
    cert_parts::random_serial().map_err(ZoneCaError::Encode)
}

fn spki_of_signer(signer: &dyn CaSigner) -> Result<SubjectPublicKeyInfoOwned> {
    cert_parts::spki_of(&signer.verifying_key()).map_err(ZoneCaError::Encode)
}

/// Signs `tbs` with `signer` and assembles the certificate.
fn sign_cert(signer: &dyn CaSigner, tbs: TbsCertificate) -> Result<(Certificate, Vec<u8>)> {
    let sig = signer.sign(&enc(&tbs)?)?;
    let cert = Certificate {
        tbs_certificate: tbs,
        signature_algorithm: cert_parts::ecdsa_with_sha256(),
        signature: BitString::from_bytes(sig.as_bytes())
            .map_err(|e| ZoneCaError::Encode(e.to_string()))?,
    };
    let der = enc(&cert)?;
    Ok((cert, der))
}

fn validity(lifetime: Duration) -> Result<Validity> {
    let now = SystemTime::now();
    let time = |t: SystemTime| cert_parts::time(t).map_err(ZoneCaError::Encode);
    Ok(Validity {
        not_before: time(now - BACKDATE)?,
        not_after: time(now + lifetime)?,
    })
}

impl ZoneCa<FileCaSigner> {
    /// Opens the host's zone CA in `dir` (key `zone-ca-key.pem`, certificate `zone-ca-cert.pem`),
    /// creating the directory (0700), the key and the self-signed certificate on first use.
    pub fn open_or_create(dir: &Path, host_id: &str) -> Result<Self> {
        check_id("host", host_id)?;
        create_ca_dir(dir)?;
        let signer = FileCaSigner::load_or_create(&dir.join(KEY_FILE))?;
        Self::open_or_create_with(dir, host_id, signer)
    }
}

/// Writes `bytes` to `path` whole or not at all, unless `path` exists: through a temporary
/// file in the same directory, hard-linked into place (a link never replaces a file). Returns
/// false when `path` was there first, so nobody ever reads a half-written file.
fn publish_new(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<bool> {
    let mut suffix = [0u8; 8];
    OsRng.fill_bytes(&mut suffix);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temp = path.with_file_name(format!(".{name}.{}", hex::encode(suffix)));
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::hard_link(&temp, path)
    })();
    let _ = std::fs::remove_file(&temp);
    match written {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

fn create_ca_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| ZoneCaError::Io(dir.to_path_buf(), e))
}

impl<S: CaSigner> ZoneCa<S> {
    /// Opens the host's zone CA in `dir` with `signer`'s key: the certificate
    /// `dir/zone-ca-cert.pem` (PEM) if it exists, which must be a valid CA certificate for
    /// `signer`'s key and `host_id`; else a new self-signed certificate, written there (the
    /// directory is created 0700 if absent). Nothing else is written: a host-TPM signer keeps
    /// its key in the TPM.
    pub fn open_or_create_with(dir: &Path, host_id: &str, signer: S) -> Result<Self> {
        check_id("host", host_id)?;
        create_ca_dir(dir)?;
        let cert_path = dir.join(CERT_FILE);
        match std::fs::read(&cert_path) {
            Ok(pem) => {
                let cert = Certificate::from_pem(&pem)
                    .map_err(|_| ZoneCaError::CertFormat(cert_path.clone()))?;
                if cert.tbs_certificate.subject_public_key_info != spki_of_signer(&signer)? {
                    return Err(ZoneCaError::CertKey(cert_path, signer.describe()));
                }
                let ca = Self::from_parts(signer, &enc(&cert)?)?;
                if ca.host_id != host_id {
                    return Err(ZoneCaError::CertHost(
                        cert_path,
                        ca.host_id,
                        host_id.to_string(),
                    ));
                }
                Ok(ca)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let ca = Self::new_self_signed(signer, host_id)?;
                let pem = ca
                    .cert
                    .to_pem(der::pem::LineEnding::LF)
                    .map_err(|e| ZoneCaError::Encode(e.to_string()))?;
                // Two zonectls making the CA at once must not replace each other's: the
                // loser opens the winner's certificate.
                if !publish_new(&cert_path, pem.as_bytes(), 0o644)
                    .map_err(|e| ZoneCaError::Io(cert_path.clone(), e))?
                {
                    return Self::open_or_create_with(dir, host_id, ca.signer);
                }
                Ok(ca)
            }
            Err(e) => Err(ZoneCaError::Io(cert_path, e)),
        }
    }

    /// A new CA with a self-signed certificate for `host_id`.
    pub fn new_self_signed(signer: S, host_id: &str) -> Result<Self> {
        check_id("host", host_id)?;
        let subject = name(&format!("CN=Zones zone CA {host_id},O=Zones"))?;
        let spki = spki_of_signer(&signer)?;
        let extensions = vec![
            ext(
                &BasicConstraints {
                    ca: true,
                    path_len_constraint: Some(0),
                },
                true,
            )?,
            ext(&KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign), true)?,
            ext(&SubjectKeyIdentifier(key_id(&spki)?), false)?,
            ext(
                &SubjectAltName(vec![uri(format!("{URN_HOST}{host_id}"))?]),
                false,
            )?,
        ];
        let tbs = TbsCertificate {
            version: Version::V3,
            serial_number: serial()?,
            signature: cert_parts::ecdsa_with_sha256(),
            issuer: subject.clone(),
            validity: validity(CA_VALIDITY)?,
            subject,
            subject_public_key_info: spki,
            issuer_unique_id: None,
            subject_unique_id: None,
            extensions: Some(extensions),
        };
        let (cert, cert_der) = sign_cert(&signer, tbs)?;
        Ok(Self {
            signer,
            cert,
            cert_der,
            host_id: host_id.to_string(),
        })
    }

    /// A CA from its signer and existing certificate (which must be for the signer's key).
    pub fn from_parts(signer: S, cert_der: &[u8]) -> Result<Self> {
        let host_id = chain::verify_ca(cert_der, SystemTime::now())?;
        let cert =
            Certificate::from_der(cert_der).map_err(|e| ZoneCaError::Encode(e.to_string()))?;
        if cert.tbs_certificate.subject_public_key_info != spki_of_signer(&signer)? {
            return Err(ZoneCaError::CertMismatch(PathBuf::from("<certificate>")));
        }
        Ok(Self {
            signer,
            cert,
            cert_der: cert_der.to_vec(),
            host_id,
        })
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    pub fn host_id(&self) -> &str {
        &self.host_id
    }

    fn issue_leaf(
        &self,
        subject_cn: &str,
        spki_der: &[u8],
        key_usage: KeyUsages,
        eku: der::asn1::ObjectIdentifier,
        sans: Vec<GeneralName>,
    ) -> Result<Vec<u8>> {
        let spki = SubjectPublicKeyInfoOwned::from_der(spki_der)
            .map_err(|e| ZoneCaError::Encode(e.to_string()))?;
        let issuer_spki = &self.cert.tbs_certificate.subject_public_key_info;
        let extensions = vec![
            ext(
                &BasicConstraints {
                    ca: false,
                    path_len_constraint: None,
                },
                true,
            )?,
            ext(&KeyUsage(key_usage.into()), true)?,
            ext(&ExtendedKeyUsage(vec![eku]), false)?,
            ext(&SubjectKeyIdentifier(key_id(&spki)?), false)?,
            ext(
                &AuthorityKeyIdentifier {
                    key_identifier: Some(key_id(issuer_spki)?),
                    authority_cert_issuer: None,
                    authority_cert_serial_number: None,
                },
                false,
            )?,
            ext(&SubjectAltName(sans), false)?,
        ];
        let tbs = TbsCertificate {
            version: Version::V3,
            serial_number: serial()?,
            signature: cert_parts::ecdsa_with_sha256(),
            issuer: self.cert.tbs_certificate.subject.clone(),
            validity: validity(LEAF_VALIDITY)?,
            subject: name(subject_cn)?,
            subject_public_key_info: spki,
            issuer_unique_id: None,
            subject_unique_id: None,
            extensions: Some(extensions),
        };
        Ok(sign_cert(&self.signer, tbs)?.1)
    }

    /// The EK certificate of zone `zone_id`'s vTPM (DER).
    pub fn issue_ek_cert(&self, zone_id: &str, ek: &TpmPublic) -> Result<Vec<u8>> {
        check_id("zone", zone_id)?;
        let usage = match ek.key {
            PublicKey::Rsa { .. } => KeyUsages::KeyEncipherment,
            PublicKey::EccP256 { .. } => KeyUsages::KeyAgreement,
        };
        self.issue_leaf(
            &format!("CN=zone {zone_id} EK,O=Zones"),
            &ek.to_spki_der()?,
            usage,
            chain::TCG_KP_EK_CERTIFICATE,
            vec![
                uri(format!("{URN_ZONE}{zone_id}"))?,
                uri(format!("{URN_HOST}{}", self.host_id))?,
            ],
        )
    }

    /// Starts certifying `ak`: checks that `ek_cert` is ours and is `ek`'s, that `ak` is a
    /// restricted signing key, and seals a fresh secret to the EK for the AK's name. The attester
    /// runs `TPM2_ActivateCredential` on the challenge and returns the secret to
    /// [`ZoneCa::finish_ak_activation`].
    pub fn start_ak_activation(
        &self,
        ek_cert: &[u8],
        ek: &TpmPublic,
        ak: &TpmPublic,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<(CredentialChallenge, PendingActivation)> {
        let certified = chain::verify_leaf(ek_cert, &self.cert_der, Role::Ek, SystemTime::now())?;
        if certified.spki_der != ek.to_spki_der()? {
            return Err(ZoneCaError::EkMismatch);
        }
        check_ak_attributes(ak)?;
        ak.to_spki_der()?;
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        let challenge = make_credential(ek, &ak.name(), &secret, rng)?;
        Ok((
            challenge,
            PendingActivation {
                zone_id: certified.zone_id,
                ak: ak.clone(),
                ek_spki_sha256: chain::spki_sha256(&certified.spki_der),
                secret,
            },
        ))
    }

    /// Issues the AK certificate if `secret` is the one sealed in the challenge.
    pub fn finish_ak_activation(
        &self,
        pending: PendingActivation,
        secret: &[u8],
    ) -> Result<Vec<u8>> {
        if !ct_eq(&pending.secret, secret) {
            return Err(ZoneCaError::ActivationSecret);
        }
        self.issue_leaf(
            &format!("CN=zone {} AK,O=Zones", pending.zone_id),
            &pending.ak.to_spki_der()?,
            KeyUsages::DigitalSignature,
            chain::TCG_KP_AIK_CERTIFICATE,
            vec![
                uri(format!("{URN_ZONE}{}", pending.zone_id))?,
                uri(format!("{URN_HOST}{}", self.host_id))?,
                uri(format!("{URN_EK}{}", pending.ek_spki_sha256))?,
                uri(format!("{URN_AK_NAME}{}", hex::encode(pending.ak.name())))?,
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soft_tpm::SoftTpm;

    #[test]
    fn test_zone_ca_created_at_once_by_many_is_one_ca() {
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("tempdir");
            let ca_dir = dir.path().join("ca");
            let barrier = std::sync::Barrier::new(8);
            let certs: Vec<Vec<u8>> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..8)
                    .map(|_| {
                        scope.spawn(|| {
                            barrier.wait();
                            ZoneCa::open_or_create(&ca_dir, "host-a")
                                .expect("every opener gets the CA")
                                .cert_der()
                                .to_vec()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("thread"))
                    .collect()
            });
            assert!(certs.windows(2).all(|w| w[0] == w[1]), "one CA for all");
            let names: Vec<_> = std::fs::read_dir(&ca_dir)
                .expect("ls")
                .map(|e| e.expect("entry").file_name())
                .collect();
            assert_eq!(names.len(), 2, "key and certificate only: {names:?}");
        }
    }

    #[test]
    fn test_zone_ca_file_key_created_0600_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_dir = dir.path().join("ca");
        let a = ZoneCa::open_or_create(&ca_dir, "host-a").expect("create");
        let mode = std::fs::metadata(ca_dir.join(KEY_FILE))
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = ZoneCa::open_or_create(&ca_dir, "host-a").expect("reopen");
        assert_eq!(a.cert_der(), b.cert_der());
        assert!(matches!(
            ZoneCa::open_or_create(&ca_dir, "host-b"),
            Err(ZoneCaError::CertHost(_, ref was, ref now)) if was == "host-a" && now == "host-b"
        ));
        // Another key (a host TPM now, or a replaced key file) is refused by name.
        let e = ZoneCa::open_or_create_with(&ca_dir, "host-a", FileCaSigner::ephemeral())
            .expect_err("other key");
        assert!(matches!(e, ZoneCaError::CertKey(..)), "{e}");
        assert!(e.to_string().contains(CERT_FILE), "{e}");
        // The boxed signer zonectl uses opens the same CA.
        let boxed: Box<dyn CaSigner> =
            Box::new(FileCaSigner::load_or_create(&ca_dir.join(KEY_FILE)).expect("key"));
        let c = ZoneCa::open_or_create_with(&ca_dir, "host-a", boxed).expect("boxed");
        assert_eq!(c.cert_der(), a.cert_der());
        std::fs::set_permissions(
            ca_dir.join(KEY_FILE),
            std::fs::Permissions::from_mode(0o644),
        )
        .expect("chmod");
        assert!(matches!(
            ZoneCa::open_or_create(&ca_dir, "host-a"),
            Err(ZoneCaError::KeyPermissions(..))
        ));
    }

    #[test]
    fn test_zone_ca_certifies_ak_only_with_the_right_secret() {
        let ca = ZoneCa::new_self_signed(FileCaSigner::ephemeral(), "host-a").expect("ca");
        let tpm = SoftTpm::new();
        let ek_cert = ca
            .issue_ek_cert("zone-1", tpm.ek_public())
            .expect("ek cert");
        let now = SystemTime::now();
        let ek = chain::verify_leaf(&ek_cert, ca.cert_der(), Role::Ek, now).expect("ek chain");
        assert_eq!(
            (ek.zone_id.as_str(), ek.host_id.as_str()),
            ("zone-1", "host-a")
        );

        let ak = tpm.ak_public().clone();
        let ek_pub = tpm.ek_public().clone();
        let (ch, pending) = ca
            .start_ak_activation(&ek_cert, &ek_pub, &ak, &mut OsRng)
            .expect("start");
        let secret = tpm.activate_credential(&ch).expect("activate");
        let ak_cert = ca.finish_ak_activation(pending, &secret).expect("ak cert");
        let akc = chain::verify_leaf(&ak_cert, ca.cert_der(), Role::Ak, now).expect("ak chain");
        assert_eq!(akc.spki_der, ak.to_spki_der().expect("spki"));
        assert_eq!(akc.ek_spki_sha256, Some(chain::spki_sha256(&ek.spki_der)));
        assert_eq!(akc.ak_name, Some(hex::encode(ak.name())));
        // A verifier whose clock lags by a minute accepts it; one two years ahead does not.
        chain::verify_leaf(
            &ak_cert,
            ca.cert_der(),
            Role::Ak,
            now - Duration::from_secs(60),
        )
        .expect("backdated notBefore");
        assert!(matches!(
            chain::verify_leaf(&ak_cert, ca.cert_der(), Role::Ak, now + LEAF_VALIDITY * 2),
            Err(chain::ChainError::Validity { .. })
        ));
        // An AK certificate is not an EK certificate and vice versa.
        assert!(chain::verify_leaf(&ak_cert, ca.cert_der(), Role::Ek, now).is_err());
        assert!(chain::verify_leaf(&ek_cert, ca.cert_der(), Role::Ak, now).is_err());

        let (_, pending) = ca
            .start_ak_activation(&ek_cert, &ek_pub, &ak, &mut OsRng)
            .expect("start");
        assert!(matches!(
            ca.finish_ak_activation(pending, &[0; 32]),
            Err(ZoneCaError::ActivationSecret)
        ));
    }

    #[test]
    fn test_zone_ca_refuses_foreign_ek_cert_and_unrestricted_ak() {
        let ca = ZoneCa::new_self_signed(FileCaSigner::ephemeral(), "host-a").expect("ca");
        let other = ZoneCa::new_self_signed(FileCaSigner::ephemeral(), "host-a").expect("ca");
        let tpm = SoftTpm::new();
        let foreign = other
            .issue_ek_cert("zone-1", tpm.ek_public())
            .expect("ek cert");
        assert!(matches!(
            ca.start_ak_activation(&foreign, tpm.ek_public(), tpm.ak_public(), &mut OsRng),
            Err(ZoneCaError::EkCert(chain::ChainError::BadSignature))
        ));
        let ek_cert = ca
            .issue_ek_cert("zone-1", tpm.ek_public())
            .expect("ek cert");
        // The EK itself (a decrypt key) is no AK.
        assert!(matches!(
            ca.start_ak_activation(&ek_cert, tpm.ek_public(), tpm.ek_public(), &mut OsRng),
            Err(ZoneCaError::AkAttributes(_))
        ));
        let other_tpm = SoftTpm::new();
        assert!(matches!(
            ca.start_ak_activation(&ek_cert, other_tpm.ek_public(), tpm.ak_public(), &mut OsRng),
            Err(ZoneCaError::EkMismatch)
        ));
    }
}
