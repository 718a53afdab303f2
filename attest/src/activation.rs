//! Credential activation, the verifier's half: `TPM2_MakeCredential` done in software
//! (TPM 2.0 Library Part 1 §24 "Credential Protection", §11.4.10 KDFa/KDFe, Annex B.10.3 RSA
//! secret sharing, Annex C.6.4 ECC secret sharing), and the TPM's half for the software attester.
//!
//! The issuer picks a secret, binds it to the AK *name* and seals it to the EK public key. Only the
//! TPM that holds that EK and has the AK loaded with that name can `TPM2_ActivateCredential` it
//! back, so getting the secret back proves the AK lives in the same TPM as the EK.
//!
//! Steps, for an EK with nameAlg SHA-256 and AES-CFB symmetric parameters:
//! 1. `seed`: RSA EK: 32 random bytes, RSA-OAEP(SHA-256, label `"IDENTITY\0"`) to the EK;
//!    ECC EK: ephemeral ECDH, `seed = KDFe(SHA-256, Z, "IDENTITY", eph.x, ek.x, 256)` and the
//!    encrypted secret is the ephemeral public point.
//! 2. `symKey = KDFa(SHA-256, seed, "STORAGE", name, "", keyBits)`;
//!    `encIdentity = AES-CFB(symKey, IV = 0, TPM2B_DIGEST(credential))`.
//! 3. `hmacKey = KDFa(SHA-256, seed, "INTEGRITY", "", "", 256)`;
//!    `outerHMAC = HMAC-SHA256(hmacKey, encIdentity || name)`.
//! 4. `credentialBlob = TPM2B_DIGEST(outerHMAC) || encIdentity`.

use aes::cipher::{AsyncStreamCipher, KeyIvInit};
use hmac::{Hmac, Mac};
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};

use crate::tpm_types::{put_tpm2b, PublicKey, Reader, SymDef, TpmPublic};

type HmacSha256 = Hmac<Sha256>;

/// Largest credential (a `TPM2B_DIGEST` of the EK's name algorithm).
pub const MAX_CREDENTIAL: usize = 32;
/// tpm2-tools' credential file header (`tpm2_makecredential -o`, `tpm2_activatecredential -i`).
const TOOLS_MAGIC: u32 = 0xBADC_C0DE;
const TOOLS_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ActivationError {
    #[error("the EK has no AES-CFB symmetric parameters (not a storage/EK key)")]
    EkSymmetric,
    #[error("credential must be 1..={MAX_CREDENTIAL} bytes, got {0}")]
    CredentialSize(usize),
    #[error("EK public key is unusable: {0}")]
    EkKey(String),
    #[error("RSA-OAEP encryption of the seed failed")]
    Oaep,
    #[error("credential blob: {0}")]
    Blob(#[from] crate::tpm_types::TpmError),
    #[error("credential file is not a tpm2-tools credential (magic/version)")]
    ToolsHeader,
    #[error("integrity HMAC does not match (wrong EK, wrong AK name or tampered blob)")]
    Integrity,
    #[error("the software attester's EK is not an ECC P-256 key")]
    SoftEk,
}

/// `TPM2_MakeCredential`'s output: what the attester hands to `TPM2_ActivateCredential`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialChallenge {
    /// `TPM2B_ID_OBJECT` payload (without its size field).
    pub credential_blob: Vec<u8>,
    /// `TPM2B_ENCRYPTED_SECRET` payload (without its size field).
    pub encrypted_secret: Vec<u8>,
}

impl CredentialChallenge {
    /// The file format of `tpm2_makecredential -o` / `tpm2_activatecredential -i` (tpm2-tools 5):
    /// u32 `0xBADCC0DE`, u32 version 1, `TPM2B_ID_OBJECT`, `TPM2B_ENCRYPTED_SECRET`.
    pub fn to_tpm2_tools(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&TOOLS_MAGIC.to_be_bytes());
        out.extend_from_slice(&TOOLS_VERSION.to_be_bytes());
        put_tpm2b(&mut out, &self.credential_blob);
        put_tpm2b(&mut out, &self.encrypted_secret);
        out
    }

    pub fn from_tpm2_tools(bytes: &[u8]) -> Result<Self, ActivationError> {
        let mut r = Reader::new(bytes);
        if r.u32("magic")? != TOOLS_MAGIC || r.u32("version")? != TOOLS_VERSION {
            return Err(ActivationError::ToolsHeader);
        }
        let credential_blob = r
            .tpm2b(2 + 32 + 2 + MAX_CREDENTIAL, "TPM2B_ID_OBJECT")?
            .to_vec();
        let encrypted_secret = r.tpm2b(512, "TPM2B_ENCRYPTED_SECRET")?.to_vec();
        r.finish("credential file")?;
        Ok(Self {
            credential_blob,
            encrypted_secret,
        })
    }
}

/// KDFa (Part 1 §11.4.10.2) with SHA-256: counter-mode HMAC, `label` given without its NUL.
pub fn kdfa(key: &[u8], label: &str, context_u: &[u8], context_v: &[u8], bits: u32) -> Vec<u8> {
    let bytes = bits.div_ceil(8) as usize;
    let mut out = Vec::with_capacity(bytes + 32);
    let mut counter: u32 = 1;
    while out.len() < bytes {
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
        mac.update(&counter.to_be_bytes());
        mac.update(label.as_bytes());
        mac.update(&[0]);
        mac.update(context_u);
        mac.update(context_v);
        mac.update(&bits.to_be_bytes());
        out.extend_from_slice(&mac.finalize().into_bytes());
        counter += 1;
    }
    out.truncate(bytes);
    out
}

/// KDFe (Part 1 §11.4.10.3) with SHA-256: the ECDH key derivation, `label` without its NUL.
pub fn kdfe(z: &[u8], label: &str, party_u: &[u8], party_v: &[u8], bits: u32) -> Vec<u8> {
    let bytes = bits.div_ceil(8) as usize;
    let mut out = Vec::with_capacity(bytes + 32);
    let mut counter: u32 = 1;
    while out.len() < bytes {
        let mut h = Sha256::new();
        h.update(counter.to_be_bytes());
        h.update(z);
        h.update(label.as_bytes());
        h.update([0]);
        h.update(party_u);
        h.update(party_v);
        out.extend_from_slice(&h.finalize());
        counter += 1;
    }
    out.truncate(bytes);
    out
}

fn ek_sym(ek: &TpmPublic) -> Result<SymDef, ActivationError> {
    ek.symmetric.ok_or(ActivationError::EkSymmetric)
}

fn aes_cfb(key: &[u8], buf: &mut [u8], encrypt: bool) {
    let iv = [0u8; 16];
    match key.len() {
        16 => {
            let k = aes::cipher::generic_array::GenericArray::from_slice(key);
            if encrypt {
                cfb_mode::Encryptor::<aes::Aes128>::new(k, &iv.into()).encrypt(buf)
            } else {
                cfb_mode::Decryptor::<aes::Aes128>::new(k, &iv.into()).decrypt(buf)
            }
        }
        _ => {
            let k = aes::cipher::generic_array::GenericArray::from_slice(key);
            if encrypt {
                cfb_mode::Encryptor::<aes::Aes256>::new(k, &iv.into()).encrypt(buf)
            } else {
                cfb_mode::Decryptor::<aes::Aes256>::new(k, &iv.into()).decrypt(buf)
            }
        }
    }
}

/// Seals `credential` to `ek` for the object named `ak_name` (the verifier/CA side).
pub fn make_credential(
    ek: &TpmPublic,
    ak_name: &[u8],
    credential: &[u8],
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<CredentialChallenge, ActivationError> {
    if credential.is_empty() || credential.len() > MAX_CREDENTIAL {
        return Err(ActivationError::CredentialSize(credential.len()));
    }
    let sym = ek_sym(ek)?;
    let (seed, encrypted_secret) = match &ek.key {
        PublicKey::Rsa { .. } => {
            let key = ek
                .rsa_public_key()
                .map_err(|e| ActivationError::EkKey(e.to_string()))?;
            let mut seed = vec![0u8; 32];
            rng.fill_bytes(&mut seed);
            let padding = rsa::Oaep::new_with_label::<Sha256, _>("IDENTITY\0");
            let enc = key
                .encrypt(rng, padding, &seed)
                .map_err(|_| ActivationError::Oaep)?;
            (seed, enc)
        }
        PublicKey::EccP256 { x: ek_x, .. } => {
            use p256::elliptic_curve::sec1::ToEncodedPoint as _;
            let ek_key = ek
                .p256_public_key()
                .map_err(|e| ActivationError::EkKey(e.to_string()))?;
            let eph = p256::ecdh::EphemeralSecret::random(rng);
            let eph_point = eph.public_key().to_encoded_point(false);
            let (eph_x, eph_y) = match (eph_point.x(), eph_point.y()) {
                (Some(x), Some(y)) => (x.to_vec(), y.to_vec()),
                _ => unreachable!("an uncompressed point has both coordinates"),
            };
            let shared = eph.diffie_hellman(&ek_key);
            let seed = kdfe(shared.raw_secret_bytes(), "IDENTITY", &eph_x, ek_x, 256);
            let mut point = Vec::new();
            put_tpm2b(&mut point, &eph_x);
            put_tpm2b(&mut point, &eph_y);
            (seed, point)
        }
    };
    Ok(CredentialChallenge {
        credential_blob: seal(&seed, sym, ak_name, credential),
        encrypted_secret,
    })
}

/// Steps 2–4: the credential blob from a seed.
fn seal(seed: &[u8], sym: SymDef, name: &[u8], credential: &[u8]) -> Vec<u8> {
    let sym_key = kdfa(seed, "STORAGE", name, &[], sym.key_bits.into());
    let mut enc_identity = Vec::new();
    put_tpm2b(&mut enc_identity, credential);
    aes_cfb(&sym_key, &mut enc_identity, true);
    let hmac_key = kdfa(seed, "INTEGRITY", &[], &[], 256);
    let mut mac = HmacSha256::new_from_slice(&hmac_key).expect("HMAC takes keys of any length");
    mac.update(&enc_identity);
    mac.update(name);
    let mut blob = Vec::new();
    put_tpm2b(&mut blob, &mac.finalize().into_bytes());
    blob.extend_from_slice(&enc_identity);
    blob
}

/// Steps 2–4 reversed, as `TPM2_ActivateCredential` does them once it has the seed.
fn unseal(seed: &[u8], sym: SymDef, name: &[u8], blob: &[u8]) -> Result<Vec<u8>, ActivationError> {
    let mut r = Reader::new(blob);
    let integrity = r.tpm2b(32, "integrityHMAC")?;
    let enc_identity = r.bytes(blob.len() - 2 - integrity.len(), "encIdentity")?;
    let hmac_key = kdfa(seed, "INTEGRITY", &[], &[], 256);
    let mut mac = HmacSha256::new_from_slice(&hmac_key).expect("HMAC takes keys of any length");
    mac.update(enc_identity);
    mac.update(name);
    mac.verify_slice(integrity)
        .map_err(|_| ActivationError::Integrity)?;
    let sym_key = kdfa(seed, "STORAGE", name, &[], sym.key_bits.into());
    let mut plain = enc_identity.to_vec();
    aes_cfb(&sym_key, &mut plain, false);
    let mut r = Reader::new(&plain);
    let cred = r.tpm2b(MAX_CREDENTIAL, "credential")?.to_vec();
    r.finish("credential")?;
    Ok(cred)
}

/// `TPM2_ActivateCredential` for a software ECC P-256 EK (the software attester; a real zone
/// does this inside its vTPM).
pub fn activate_credential_p256(
    ek_secret: &p256::SecretKey,
    ek: &TpmPublic,
    ak_name: &[u8],
    challenge: &CredentialChallenge,
) -> Result<Vec<u8>, ActivationError> {
    let PublicKey::EccP256 { x: ek_x, .. } = &ek.key else {
        return Err(ActivationError::SoftEk);
    };
    let mut r = Reader::new(&challenge.encrypted_secret);
    let eph_x = r.tpm2b(32, "inSecret.x")?;
    let eph_y = r.tpm2b(32, "inSecret.y")?;
    r.finish("inSecret")?;
    let eph = TpmPublic::build(
        0,
        &[],
        None,
        None,
        &PublicKey::EccP256 {
            x: pad(eph_x),
            y: pad(eph_y),
        },
    )?
    .p256_public_key()
    .map_err(|e| ActivationError::EkKey(e.to_string()))?;
    let shared = p256::ecdh::diffie_hellman(ek_secret.to_nonzero_scalar(), eph.as_affine());
    let seed = kdfe(shared.raw_secret_bytes(), "IDENTITY", eph_x, ek_x, 256);
    unseal(&seed, ek_sym(ek)?, ak_name, &challenge.credential_blob)
}

fn pad(v: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[32 - v.len()..].copy_from_slice(v);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpm_types::{TPM_ALG_AES, TPM_ALG_CFB};

    fn soft_ek() -> (p256::SecretKey, TpmPublic) {
        use p256::elliptic_curve::sec1::ToEncodedPoint as _;
        let sk = p256::SecretKey::random(&mut rand_core::OsRng);
        let pt = sk.public_key().to_encoded_point(false);
        let key = PublicKey::EccP256 {
            x: pad(pt.x().expect("x")),
            y: pad(pt.y().expect("y")),
        };
        let sym = SymDef {
            alg: TPM_ALG_AES,
            key_bits: 128,
            mode: TPM_ALG_CFB,
        };
        let ek = TpmPublic::build(0x000300b2, &[], Some(sym), None, &key).expect("ek");
        (sk, ek)
    }

    #[test]
    fn test_kdfa_matches_reference_vector() {
        // Independent computation: HMAC-SHA256(key, 00000001 || "STORAGE" 00 || "ctx" || 00000080).
        let mut mac = HmacSha256::new_from_slice(b"seed").expect("hmac");
        mac.update(&[0, 0, 0, 1]);
        mac.update(b"STORAGE\0ctx");
        mac.update(&[0, 0, 0, 0x80]);
        let want = mac.finalize().into_bytes();
        assert_eq!(
            kdfa(b"seed", "STORAGE", b"ctx", b"", 128),
            want[..16].to_vec()
        );
        assert_eq!(kdfa(b"seed", "X", b"", b"", 520).len(), 65);
    }

    #[test]
    fn test_make_credential_soft_round_trip() {
        let (sk, ek) = soft_ek();
        let name = [0x00, 0x0b, 1, 2, 3];
        let ch = make_credential(&ek, &name, b"secret-1234", &mut rand_core::OsRng).expect("make");
        let back = activate_credential_p256(&sk, &ek, &name, &ch).expect("activate");
        assert_eq!(back, b"secret-1234");
        let file = ch.to_tpm2_tools();
        assert_eq!(
            CredentialChallenge::from_tpm2_tools(&file).expect("file"),
            ch
        );
    }

    #[test]
    fn test_make_credential_other_name_fails_integrity() {
        let (sk, ek) = soft_ek();
        let ch =
            make_credential(&ek, b"\x00\x0bname-a", b"s", &mut rand_core::OsRng).expect("make");
        assert_eq!(
            activate_credential_p256(&sk, &ek, b"\x00\x0bname-b", &ch),
            Err(ActivationError::Integrity)
        );
        let (other_sk, _) = soft_ek();
        assert_eq!(
            activate_credential_p256(&other_sk, &ek, b"\x00\x0bname-a", &ch),
            Err(ActivationError::Integrity)
        );
    }

    #[test]
    fn test_make_credential_rejects_oversized_secret() {
        let (_, ek) = soft_ek();
        assert_eq!(
            make_credential(&ek, b"n", &[0; 33], &mut rand_core::OsRng),
            Err(ActivationError::CredentialSize(33))
        );
    }
}
