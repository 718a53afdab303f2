//! Minimal TPM 2.0 marshalling for the structures a verifier receives: `TPM2B_PUBLIC` (RSA and ECC
//! NIST P-256 keys), `TPMS_ATTEST` of type quote and `TPMT_SIGNATURE` (ECDSA, RSASSA).
//!
//! Layouts follow TPM 2.0 Library Part 2 (Structures): §12.2.4 `TPMT_PUBLIC`, §12.2.3 parameters,
//! §10.12.12 `TPMS_ATTEST`, §10.12.4 `TPMS_QUOTE_INFO`, §11.3.4 `TPMT_SIGNATURE`. All integers are
//! big-endian. Everything parsed here is hostile input: every length is checked against the
//! remaining bytes and against the largest value the spec allows, trailing bytes are an error, and
//! unknown algorithms are refused rather than skipped.

use sha2::{Digest, Sha256};

pub const TPM_ALG_RSA: u16 = 0x0001;
pub const TPM_ALG_SHA1: u16 = 0x0004;
pub const TPM_ALG_AES: u16 = 0x0006;
pub const TPM_ALG_SHA256: u16 = 0x000B;
pub const TPM_ALG_NULL: u16 = 0x0010;
pub const TPM_ALG_RSASSA: u16 = 0x0014;
pub const TPM_ALG_RSAPSS: u16 = 0x0016;
pub const TPM_ALG_ECDSA: u16 = 0x0018;
pub const TPM_ALG_ECC: u16 = 0x0023;
pub const TPM_ALG_CFB: u16 = 0x0043;
pub const TPM_ECC_NIST_P256: u16 = 0x0003;
/// `TPM_GENERATED_VALUE`: the first four bytes of everything a TPM signs about itself.
pub const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
pub const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;

/// `TPMA_OBJECT` bits (Part 2 §8.3).
pub mod object_attributes {
    pub const FIXED_TPM: u32 = 1 << 1;
    pub const FIXED_PARENT: u32 = 1 << 4;
    pub const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    pub const USER_WITH_AUTH: u32 = 1 << 6;
    pub const ADMIN_WITH_POLICY: u32 = 1 << 7;
    pub const RESTRICTED: u32 = 1 << 16;
    pub const DECRYPT: u32 = 1 << 17;
    pub const SIGN: u32 = 1 << 18;
}

/// Largest RSA modulus accepted (bytes).
const MAX_RSA_BYTES: usize = 512;
/// Largest digest/nonce/name carried in a `TPM2B` we accept (`sizeof(TPMU_HA)` + 2 for names).
const MAX_DIGEST_BYTES: usize = 66;
/// `PCR_SELECT_MAX` for up to 32 PCRs; real TPMs send 3.
const MAX_PCR_SELECT: usize = 4;
/// More selections than hash algorithms there are is hostile.
const MAX_PCR_SELECTIONS: u32 = 8;
const MAX_AUTH_POLICY: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TpmError {
    #[error("{what}: truncated (needs {need} bytes, {have} left)")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("{what}: {n} trailing bytes")]
    TrailingBytes { what: &'static str, n: usize },
    #[error("{what}: size {size} is over the limit {max}")]
    TooLarge {
        what: &'static str,
        size: usize,
        max: usize,
    },
    #[error("{what}: unsupported value {value:#06x}")]
    Unsupported { what: &'static str, value: u32 },
    #[error("{what}: {why}")]
    Invalid {
        what: &'static str,
        why: &'static str,
    },
}

type Result<T> = std::result::Result<T, TpmError>;

/// A bounds-checked big-endian reader over hostile bytes.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        let have = self.buf.len() - self.pos;
        if n > have {
            return Err(TpmError::Truncated {
                what,
                need: n,
                have,
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N, what)?);
        Ok(out)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }
    pub fn u16(&mut self, what: &'static str) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }
    pub fn u32(&mut self, what: &'static str) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }
    pub fn u64(&mut self, what: &'static str) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// A `TPM2B_*`: u16 size then that many bytes, refused above `max`.
    pub fn tpm2b(&mut self, max: usize, what: &'static str) -> Result<&'a [u8]> {
        let size = usize::from(self.u16(what)?);
        if size > max {
            return Err(TpmError::TooLarge { what, size, max });
        }
        self.bytes(size, what)
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }

    pub fn finish(&self, what: &'static str) -> Result<()> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            n => Err(TpmError::TrailingBytes { what, n }),
        }
    }
}

/// Appends `TPM2B` framing (u16 size, bytes).
pub fn put_tpm2b(out: &mut Vec<u8>, data: &[u8]) {
    let size = u16::try_from(data.len()).expect("TPM2B payloads built here are far below 64 KiB");
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(data);
}

/// `TPMT_SYM_DEF_OBJECT` when not `TPM_ALG_NULL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymDef {
    pub alg: u16,
    pub key_bits: u16,
    pub mode: u16,
}

/// The key inside a `TPMT_PUBLIC`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    Rsa {
        /// Big-endian modulus, exactly `key_bits / 8` bytes.
        modulus: Vec<u8>,
        /// The exponent as sent (0 means 65537).
        exponent: u32,
    },
    EccP256 {
        x: [u8; 32],
        y: [u8; 32],
    },
}

/// A parsed `TPMT_PUBLIC`. `bytes` keeps the exact marshalled form: the object's name is its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmPublic {
    pub bytes: Vec<u8>,
    pub name_alg: u16,
    pub attributes: u32,
    pub auth_policy: Vec<u8>,
    pub symmetric: Option<SymDef>,
    /// Signing or decryption scheme and its hash, `None` for `TPM_ALG_NULL`.
    pub scheme: Option<(u16, u16)>,
    pub key: PublicKey,
}

fn read_sym_def(r: &mut Reader<'_>) -> Result<Option<SymDef>> {
    let alg = r.u16("symmetric.algorithm")?;
    if alg == TPM_ALG_NULL {
        return Ok(None);
    }
    if alg != TPM_ALG_AES {
        return Err(TpmError::Unsupported {
            what: "symmetric.algorithm",
            value: alg.into(),
        });
    }
    let key_bits = r.u16("symmetric.keyBits")?;
    let mode = r.u16("symmetric.mode")?;
    if !matches!(key_bits, 128 | 256) {
        return Err(TpmError::Unsupported {
            what: "symmetric.keyBits",
            value: key_bits.into(),
        });
    }
    if mode != TPM_ALG_CFB {
        return Err(TpmError::Unsupported {
            what: "symmetric.mode",
            value: mode.into(),
        });
    }
    Ok(Some(SymDef {
        alg,
        key_bits,
        mode,
    }))
}

fn read_scheme(r: &mut Reader<'_>, what: &'static str) -> Result<Option<(u16, u16)>> {
    let scheme = r.u16(what)?;
    if scheme == TPM_ALG_NULL {
        return Ok(None);
    }
    let hash = r.u16(what)?;
    Ok(Some((scheme, hash)))
}

fn pad32(v: &[u8], what: &'static str) -> Result<[u8; 32]> {
    if v.is_empty() || v.len() > 32 {
        return Err(TpmError::Invalid {
            what,
            why: "not a P-256 coordinate",
        });
    }
    let mut out = [0u8; 32];
    out[32 - v.len()..].copy_from_slice(v);
    Ok(out)
}

impl TpmPublic {
    /// Parses a `TPM2B_PUBLIC` (what `tpm2_createak -u` writes and `TPM2_ReadPublic` returns).
    pub fn from_tpm2b(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let inner = r.tpm2b(usize::from(u16::MAX), "TPM2B_PUBLIC")?;
        r.finish("TPM2B_PUBLIC")?;
        Self::from_tpmt(inner)
    }

    /// Parses a bare `TPMT_PUBLIC`.
    pub fn from_tpmt(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let typ = r.u16("type")?;
        let name_alg = r.u16("nameAlg")?;
        if name_alg != TPM_ALG_SHA256 {
            return Err(TpmError::Unsupported {
                what: "nameAlg",
                value: name_alg.into(),
            });
        }
        let attributes = r.u32("objectAttributes")?;
        let auth_policy = r.tpm2b(MAX_AUTH_POLICY, "authPolicy")?.to_vec();
        let symmetric = read_sym_def(&mut r)?;
        let (scheme, key) = match typ {
            TPM_ALG_RSA => {
                let scheme = read_scheme(&mut r, "rsa.scheme")?;
                let key_bits = r.u16("rsa.keyBits")?;
                let exponent = r.u32("rsa.exponent")?;
                let modulus = r.tpm2b(MAX_RSA_BYTES, "rsa.unique")?;
                if !matches!(key_bits, 2048 | 3072 | 4096) {
                    return Err(TpmError::Unsupported {
                        what: "rsa.keyBits",
                        value: key_bits.into(),
                    });
                }
                if modulus.len() != usize::from(key_bits / 8) {
                    return Err(TpmError::Invalid {
                        what: "rsa.unique",
                        why: "modulus length differs from keyBits",
                    });
                }
                let modulus = modulus.to_vec();
                (scheme, PublicKey::Rsa { modulus, exponent })
            }
            TPM_ALG_ECC => {
                let scheme = read_scheme(&mut r, "ecc.scheme")?;
                let curve = r.u16("ecc.curveID")?;
                if curve != TPM_ECC_NIST_P256 {
                    return Err(TpmError::Unsupported {
                        what: "ecc.curveID",
                        value: curve.into(),
                    });
                }
                if let Some((kdf, _)) = read_scheme(&mut r, "ecc.kdf")? {
                    return Err(TpmError::Unsupported {
                        what: "ecc.kdf",
                        value: kdf.into(),
                    });
                }
                let x = pad32(r.tpm2b(32, "ecc.unique.x")?, "ecc.unique.x")?;
                let y = pad32(r.tpm2b(32, "ecc.unique.y")?, "ecc.unique.y")?;
                (scheme, PublicKey::EccP256 { x, y })
            }
            other => {
                return Err(TpmError::Unsupported {
                    what: "type",
                    value: other.into(),
                })
            }
        };
        r.finish("TPMT_PUBLIC")?;
        Ok(Self {
            bytes: bytes.to_vec(),
            name_alg,
            attributes,
            auth_policy,
            symmetric,
            scheme,
            key,
        })
    }

    /// Marshals a `TPMT_PUBLIC` from its parts and parses it back (so `bytes` is canonical).
    pub fn build(
        attributes: u32,
        auth_policy: &[u8],
        symmetric: Option<SymDef>,
        scheme: Option<(u16, u16)>,
        key: &PublicKey,
    ) -> Result<Self> {
        let mut b = Vec::new();
        let typ = match key {
            PublicKey::Rsa { .. } => TPM_ALG_RSA,
            PublicKey::EccP256 { .. } => TPM_ALG_ECC,
        };
        b.extend_from_slice(&typ.to_be_bytes());
        b.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
        b.extend_from_slice(&attributes.to_be_bytes());
        put_tpm2b(&mut b, auth_policy);
        match symmetric {
            None => b.extend_from_slice(&TPM_ALG_NULL.to_be_bytes()),
            Some(s) => {
                for v in [s.alg, s.key_bits, s.mode] {
                    b.extend_from_slice(&v.to_be_bytes());
                }
            }
        }
        match scheme {
            None => b.extend_from_slice(&TPM_ALG_NULL.to_be_bytes()),
            Some((s, h)) => {
                b.extend_from_slice(&s.to_be_bytes());
                b.extend_from_slice(&h.to_be_bytes());
            }
        }
        match key {
            PublicKey::Rsa { modulus, exponent } => {
                let bits = u16::try_from(modulus.len() * 8).map_err(|_| TpmError::TooLarge {
                    what: "rsa.unique",
                    size: modulus.len(),
                    max: MAX_RSA_BYTES,
                })?;
                b.extend_from_slice(&bits.to_be_bytes());
                b.extend_from_slice(&exponent.to_be_bytes());
                put_tpm2b(&mut b, modulus);
            }
            PublicKey::EccP256 { x, y } => {
                b.extend_from_slice(&TPM_ECC_NIST_P256.to_be_bytes());
                b.extend_from_slice(&TPM_ALG_NULL.to_be_bytes());
                put_tpm2b(&mut b, x);
                put_tpm2b(&mut b, y);
            }
        }
        Self::from_tpmt(&b)
    }

    /// The `TPM2B_PUBLIC` form.
    pub fn to_tpm2b(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes.len() + 2);
        put_tpm2b(&mut out, &self.bytes);
        out
    }

    /// The object's name (Part 1 §16): `nameAlg || H_nameAlg(TPMT_PUBLIC)`.
    pub fn name(&self) -> Vec<u8> {
        let mut out = self.name_alg.to_be_bytes().to_vec();
        out.extend_from_slice(&Sha256::digest(&self.bytes));
        out
    }

    pub fn has_attributes(&self, bits: u32) -> bool {
        self.attributes & bits == bits
    }

    /// The key as a DER `SubjectPublicKeyInfo`, for certificates.
    pub fn to_spki_der(&self) -> Result<Vec<u8>> {
        use p256::pkcs8::EncodePublicKey as _;
        let der = match &self.key {
            PublicKey::Rsa { .. } => {
                rsa::pkcs8::EncodePublicKey::to_public_key_der(&self.rsa_public_key()?)
                    .map_err(|_| TpmError::Invalid {
                        what: "rsa key",
                        why: "cannot encode",
                    })?
                    .to_vec()
            }
            PublicKey::EccP256 { .. } => self
                .p256_public_key()?
                .to_public_key_der()
                .map_err(|_| TpmError::Invalid {
                    what: "ecc key",
                    why: "cannot encode",
                })?
                .to_vec(),
        };
        Ok(der)
    }

    pub fn rsa_public_key(&self) -> Result<rsa::RsaPublicKey> {
        let PublicKey::Rsa { modulus, exponent } = &self.key else {
            return Err(TpmError::Invalid {
                what: "key",
                why: "not an RSA key",
            });
        };
        let e = if *exponent == 0 { 65537 } else { *exponent };
        rsa::RsaPublicKey::new(rsa::BigUint::from_bytes_be(modulus), rsa::BigUint::from(e)).map_err(
            |_| TpmError::Invalid {
                what: "rsa key",
                why: "not a valid RSA public key",
            },
        )
    }

    pub fn p256_public_key(&self) -> Result<p256::PublicKey> {
        let PublicKey::EccP256 { x, y } = &self.key else {
            return Err(TpmError::Invalid {
                what: "key",
                why: "not a P-256 key",
            });
        };
        use p256::elliptic_curve::sec1::FromEncodedPoint as _;
        let point = p256::EncodedPoint::from_affine_coordinates(x.into(), y.into(), false);
        Option::from(p256::PublicKey::from_encoded_point(&point)).ok_or(TpmError::Invalid {
            what: "ecc key",
            why: "point not on P-256",
        })
    }
}

/// One `TPMS_PCR_SELECTION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrSelection {
    pub hash: u16,
    /// Selected PCR indices, ascending.
    pub pcrs: Vec<u32>,
}

impl PcrSelection {
    /// Reads one `TPMS_PCR_SELECTION` (at most 32 PCRs).
    pub fn read(r: &mut Reader<'_>) -> Result<Self> {
        let hash = r.u16("pcrSelect.hash")?;
        let size = usize::from(r.u8("pcrSelect.sizeofSelect")?);
        if size > MAX_PCR_SELECT {
            return Err(TpmError::TooLarge {
                what: "pcrSelect.sizeofSelect",
                size,
                max: MAX_PCR_SELECT,
            });
        }
        let bitmap = r.bytes(size, "pcrSelect.pcrSelect")?;
        let mut pcrs = Vec::new();
        for (byte_idx, byte) in bitmap.iter().enumerate() {
            for bit in 0..8u32 {
                if byte & (1 << bit) != 0 {
                    pcrs.push(byte_idx as u32 * 8 + bit);
                }
            }
        }
        Ok(Self { hash, pcrs })
    }

    /// Writes it with a 3-byte bitmap (PCRs 0-23; others are dropped: callers check first).
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.hash.to_be_bytes());
        let mut bitmap = [0u8; 3];
        for &p in &self.pcrs {
            if let Some(b) = bitmap.get_mut((p / 8) as usize) {
                *b |= 1 << (p % 8);
            }
        }
        out.push(3);
        out.extend_from_slice(&bitmap);
    }
}

/// `TPMS_CLOCK_INFO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClockInfo {
    pub clock: u64,
    pub reset_count: u32,
    pub restart_count: u32,
    pub safe: bool,
}

/// A `TPMS_ATTEST` whose type is `TPM_ST_ATTEST_QUOTE` (magic and type are checked by the parser).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteAttest {
    pub qualified_signer: Vec<u8>,
    /// `extraData`: the caller's `qualifyingData`, our nonce.
    pub extra_data: Vec<u8>,
    pub clock: ClockInfo,
    pub firmware_version: u64,
    pub pcr_select: Vec<PcrSelection>,
    pub pcr_digest: Vec<u8>,
}

impl QuoteAttest {
    /// Parses the bytes the TPM signed (`tpm2_quote -m`). Refuses anything that is not a quote.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let magic = r.u32("magic")?;
        if magic != TPM_GENERATED_VALUE {
            return Err(TpmError::Invalid {
                what: "magic",
                why: "not TPM_GENERATED_VALUE: not produced by a TPM",
            });
        }
        let typ = r.u16("type")?;
        if typ != TPM_ST_ATTEST_QUOTE {
            return Err(TpmError::Unsupported {
                what: "attest type (expected TPM_ST_ATTEST_QUOTE)",
                value: typ.into(),
            });
        }
        let qualified_signer = r.tpm2b(MAX_DIGEST_BYTES, "qualifiedSigner")?.to_vec();
        let extra_data = r.tpm2b(MAX_DIGEST_BYTES, "extraData")?.to_vec();
        let clock = ClockInfo {
            clock: r.u64("clockInfo.clock")?,
            reset_count: r.u32("clockInfo.resetCount")?,
            restart_count: r.u32("clockInfo.restartCount")?,
            safe: match r.u8("clockInfo.safe")? {
                0 => false,
                1 => true,
                _ => {
                    return Err(TpmError::Invalid {
                        what: "clockInfo.safe",
                        why: "not a TPMI_YES_NO",
                    })
                }
            },
        };
        let firmware_version = r.u64("firmwareVersion")?;
        let count = r.u32("pcrSelect.count")?;
        if count > MAX_PCR_SELECTIONS {
            return Err(TpmError::TooLarge {
                what: "pcrSelect.count",
                size: count as usize,
                max: MAX_PCR_SELECTIONS as usize,
            });
        }
        let pcr_select = (0..count)
            .map(|_| PcrSelection::read(&mut r))
            .collect::<Result<Vec<_>>>()?;
        let pcr_digest = r.tpm2b(MAX_DIGEST_BYTES, "pcrDigest")?.to_vec();
        r.finish("TPMS_ATTEST")?;
        Ok(Self {
            qualified_signer,
            extra_data,
            clock,
            firmware_version,
            pcr_select,
            pcr_digest,
        })
    }

    /// Marshals a quote `TPMS_ATTEST` (what a TPM would sign); used by the software attester.
    pub fn marshal(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&TPM_GENERATED_VALUE.to_be_bytes());
        b.extend_from_slice(&TPM_ST_ATTEST_QUOTE.to_be_bytes());
        put_tpm2b(&mut b, &self.qualified_signer);
        put_tpm2b(&mut b, &self.extra_data);
        b.extend_from_slice(&self.clock.clock.to_be_bytes());
        b.extend_from_slice(&self.clock.reset_count.to_be_bytes());
        b.extend_from_slice(&self.clock.restart_count.to_be_bytes());
        b.push(u8::from(self.clock.safe));
        b.extend_from_slice(&self.firmware_version.to_be_bytes());
        b.extend_from_slice(&(self.pcr_select.len() as u32).to_be_bytes());
        for s in &self.pcr_select {
            s.write(&mut b);
        }
        put_tpm2b(&mut b, &self.pcr_digest);
        b
    }
}

/// A `TPMT_SIGNATURE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TpmSignature {
    Ecdsa { hash: u16, r: Vec<u8>, s: Vec<u8> },
    RsaSsa { hash: u16, sig: Vec<u8> },
}

impl TpmSignature {
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let alg = r.u16("sigAlg")?;
        let sig = match alg {
            TPM_ALG_ECDSA => {
                let hash = r.u16("ecdsa.hash")?;
                let sr = r.tpm2b(32, "ecdsa.signatureR")?.to_vec();
                let ss = r.tpm2b(32, "ecdsa.signatureS")?.to_vec();
                TpmSignature::Ecdsa { hash, r: sr, s: ss }
            }
            TPM_ALG_RSASSA => {
                let hash = r.u16("rsassa.hash")?;
                let sig = r.tpm2b(MAX_RSA_BYTES, "rsassa.sig")?.to_vec();
                TpmSignature::RsaSsa { hash, sig }
            }
            other => {
                return Err(TpmError::Unsupported {
                    what: "sigAlg",
                    value: other.into(),
                })
            }
        };
        r.finish("TPMT_SIGNATURE")?;
        Ok(sig)
    }

    pub fn marshal(&self) -> Vec<u8> {
        let mut b = Vec::new();
        match self {
            TpmSignature::Ecdsa { hash, r, s } => {
                b.extend_from_slice(&TPM_ALG_ECDSA.to_be_bytes());
                b.extend_from_slice(&hash.to_be_bytes());
                put_tpm2b(&mut b, r);
                put_tpm2b(&mut b, s);
            }
            TpmSignature::RsaSsa { hash, sig } => {
                b.extend_from_slice(&TPM_ALG_RSASSA.to_be_bytes());
                b.extend_from_slice(&hash.to_be_bytes());
                put_tpm2b(&mut b, sig);
            }
        }
        b
    }

    pub fn hash_alg(&self) -> u16 {
        match self {
            TpmSignature::Ecdsa { hash, .. } | TpmSignature::RsaSsa { hash, .. } => *hash,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ak.pub` written by `tpm2_createak -G ecc -g sha256 -s ecdsa` on swtpm 0.7.1.
    const AK_PUB: &str = "00580023000b00050072000000100018000b00030010002047011443dc4c1a8094c4b1471fc5fe8fef49333a0a6c0d5ada5dee595391f02600201f67114409b45f9eb202f90d6be694cfda935f8b001b2e7e6ec147544a225b33";
    /// Its name as `tpm2_createak -n` wrote it.
    const AK_NAME: &str = "000b78c057f283de9109cb8f7ed6a18ab4c9bfe90ce6bbb9376e5f0fcb443fefebfe";
    /// `tpm2_quote -m` over sha256:0,1,4,8,9,18 with qualifying data 0123456789abcdef.
    const QUOTE: &str = "ff54434780180022000bdbbe57ac8e70eda3f700d744895b8b2874b8d3073473b77b1f6231a7b4f5b05200080123456789abcdef0000000000000c59000000010000000001201910230016363600000001000b031303040020ff25231aee1fcaaf21092ec8d9b29f24b29e97ef58e1f5fee5c9575563adcd10";

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).expect("test vector is hex")
    }

    #[test]
    fn test_public_swtpm_ak_parses_and_names_match() {
        let ak = TpmPublic::from_tpm2b(&unhex(AK_PUB)).expect("parses");
        assert_eq!(ak.name(), unhex(AK_NAME));
        assert!(ak.has_attributes(
            object_attributes::RESTRICTED
                | object_attributes::SIGN
                | object_attributes::FIXED_TPM
                | object_attributes::FIXED_PARENT
        ));
        assert_eq!(ak.scheme, Some((TPM_ALG_ECDSA, TPM_ALG_SHA256)));
        ak.p256_public_key().expect("point on curve");
        assert_eq!(
            TpmPublic::from_tpmt(&ak.bytes)
                .expect("re-parses")
                .to_tpm2b(),
            unhex(AK_PUB)
        );
    }

    #[test]
    fn test_public_every_truncation_is_an_error_not_a_panic() {
        let full = unhex(AK_PUB);
        for n in 0..full.len() {
            assert!(TpmPublic::from_tpm2b(&full[..n]).is_err(), "prefix {n}");
        }
        let mut long = full.clone();
        long.push(0);
        assert!(matches!(
            TpmPublic::from_tpm2b(&long),
            Err(TpmError::TrailingBytes { .. })
        ));
    }

    #[test]
    fn test_public_off_curve_point_is_refused() {
        let mut b = unhex(AK_PUB);
        let last = b.len() - 1;
        b[last] ^= 1;
        let ak = TpmPublic::from_tpm2b(&b).expect("structure still parses");
        assert!(ak.p256_public_key().is_err());
    }

    #[test]
    fn test_quote_swtpm_attest_parses() {
        let q = QuoteAttest::parse(&unhex(QUOTE)).expect("parses");
        assert_eq!(q.extra_data, unhex("0123456789abcdef"));
        assert_eq!(q.pcr_select.len(), 1);
        assert_eq!(q.pcr_select[0].hash, TPM_ALG_SHA256);
        assert_eq!(q.pcr_select[0].pcrs, vec![0, 1, 4, 8, 9, 18]);
        assert_eq!(q.marshal(), unhex(QUOTE));
        for n in 0..unhex(QUOTE).len() {
            assert!(QuoteAttest::parse(&unhex(QUOTE)[..n]).is_err());
        }
    }

    #[test]
    fn test_quote_wrong_magic_or_type_is_refused() {
        let mut b = unhex(QUOTE);
        b[0] = 0;
        assert!(matches!(
            QuoteAttest::parse(&b),
            Err(TpmError::Invalid { what: "magic", .. })
        ));
        let mut b = unhex(QUOTE);
        b[5] = 0x17; // TPM_ST_ATTEST_CERTIFY
        assert!(matches!(
            QuoteAttest::parse(&b),
            Err(TpmError::Unsupported { .. })
        ));
    }

    /// Property test: random mutations of real TPM output and random bytes never panic any
    /// parser (they may parse: a flipped modulus bit is still a structure).
    #[test]
    fn test_parsers_mutated_input_never_panics() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let seeds = [unhex(AK_PUB), unhex(QUOTE), {
            let mut s = Vec::new();
            s.extend_from_slice(&TPM_ALG_ECDSA.to_be_bytes());
            s.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
            put_tpm2b(&mut s, &[1; 32]);
            put_tpm2b(&mut s, &[2; 32]);
            s
        }];
        for _ in 0..20_000 {
            let mut b = seeds[(next() % 3) as usize].clone();
            match next() % 4 {
                0 => {
                    let n = next() as usize % (b.len() + 8);
                    b = (0..n).map(|_| next() as u8).collect();
                }
                1 => b.truncate(next() as usize % (b.len() + 1)),
                _ => {
                    for _ in 0..(1 + next() % 4) {
                        let i = next() as usize % b.len();
                        b[i] = next() as u8;
                    }
                }
            }
            if let Ok(p) = TpmPublic::from_tpm2b(&b) {
                let _ = (p.name(), p.to_spki_der());
            }
            let _ = QuoteAttest::parse(&b);
            let _ = TpmSignature::parse(&b);
            let _ = crate::activation::CredentialChallenge::from_tpm2_tools(&b);
        }
    }

    #[test]
    fn test_signature_oversized_component_is_refused() {
        let mut b = Vec::new();
        b.extend_from_slice(&TPM_ALG_ECDSA.to_be_bytes());
        b.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
        put_tpm2b(&mut b, &[1u8; 33]);
        put_tpm2b(&mut b, &[1u8; 32]);
        assert!(matches!(
            TpmSignature::parse(&b),
            Err(TpmError::TooLarge { .. })
        ));
    }
}
