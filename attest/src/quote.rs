//! Quote checks (TPM 2.0 Library Part 3 §18.4 `TPM2_Quote`): the signature over the `TPMS_ATTEST`
//! bytes by the AK, the nonce in `extraData` (the `qualifyingData` the verifier chose), and
//! `pcrDigest` = H(selected PCR values in selection order) recomputed from the claimed PCR values.
//!
//! Only the SHA-256 bank is supported. A quote signs only `pcrSelect` and `pcrDigest`: PCR values
//! outside the signed selection are attacker-controlled, so [`check_pcr_digest`] returns only the
//! values the signature covers and the caller must use nothing else.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::tpm_types::{
    object_attributes as attrs, PublicKey, QuoteAttest, TpmPublic, TpmSignature, TPM_ALG_SHA256,
};

/// SHA-256 PCR values by index.
pub type PcrBank = BTreeMap<u32, [u8; 32]>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuoteError {
    #[error("signature hash algorithm {0:#06x} is not SHA-256")]
    SignatureHash(u16),
    #[error("signature kind does not match the AK's key type")]
    SignatureKind,
    #[error("AK public key is unusable: {0}")]
    AkKey(String),
    #[error("signature does not verify with the AK public key")]
    BadSignature,
    #[error("the AK is not a restricted, TPM-resident signing key (attributes {0:#010x})")]
    AkNotRestricted(u32),
    #[error("quote nonce {got} differs from the expected {expected}")]
    Nonce { got: String, expected: String },
    #[error("quote selects PCRs of hash algorithm {0:#06x}, only SHA-256 is supported")]
    PcrBankAlg(u16),
    #[error("quote selects PCR {0} but no value for it was given")]
    MissingPcr(u32),
    #[error("PCR {0} is not a valid PCR index")]
    PcrIndex(u32),
    #[error("PCR values do not hash to the signed pcrDigest")]
    PcrDigest,
}

/// A TPM restricted signing key only signs digests of data it produced itself (`TPM_GENERATED`):
/// without these attributes, a "quote" could be any signed blob.
pub const AK_REQUIRED_ATTRIBUTES: u32 = attrs::RESTRICTED
    | attrs::SIGN
    | attrs::FIXED_TPM
    | attrs::FIXED_PARENT
    | attrs::SENSITIVE_DATA_ORIGIN;

/// Checks that `ak` has the attributes of an attestation key.
pub fn check_ak_attributes(ak: &TpmPublic) -> Result<(), QuoteError> {
    if ak.has_attributes(AK_REQUIRED_ATTRIBUTES) && !ak.has_attributes(attrs::DECRYPT) {
        Ok(())
    } else {
        Err(QuoteError::AkNotRestricted(ak.attributes))
    }
}

/// Verifies `signature` over `attest` (the exact signed bytes) with the AK public key.
pub fn verify_signature(
    ak: &TpmPublic,
    attest: &[u8],
    signature: &TpmSignature,
) -> Result<(), QuoteError> {
    use signature::Verifier as _;
    if signature.hash_alg() != TPM_ALG_SHA256 {
        return Err(QuoteError::SignatureHash(signature.hash_alg()));
    }
    match (&ak.key, signature) {
        (PublicKey::EccP256 { .. }, TpmSignature::Ecdsa { r, s, .. }) => {
            let key = ak
                .p256_public_key()
                .map_err(|e| QuoteError::AkKey(e.to_string()))?;
            let vk = p256::ecdsa::VerifyingKey::from(key);
            let mut r32 = [0u8; 32];
            let mut s32 = [0u8; 32];
            r32[32 - r.len()..].copy_from_slice(r);
            s32[32 - s.len()..].copy_from_slice(s);
            let sig = p256::ecdsa::Signature::from_scalars(r32, s32)
                .map_err(|_| QuoteError::BadSignature)?;
            vk.verify(attest, &sig)
                .map_err(|_| QuoteError::BadSignature)
        }
        (PublicKey::Rsa { .. }, TpmSignature::RsaSsa { sig, .. }) => {
            let key = ak
                .rsa_public_key()
                .map_err(|e| QuoteError::AkKey(e.to_string()))?;
            let vk = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key);
            let sig = rsa::pkcs1v15::Signature::try_from(sig.as_slice())
                .map_err(|_| QuoteError::BadSignature)?;
            vk.verify(attest, &sig)
                .map_err(|_| QuoteError::BadSignature)
        }
        _ => Err(QuoteError::SignatureKind),
    }
}

/// Compares the quote's `extraData` with the nonce the verifier chose, in constant time.
pub fn check_nonce(quote: &QuoteAttest, expected: &[u8]) -> Result<(), QuoteError> {
    if ct_eq(&quote.extra_data, expected) {
        Ok(())
    } else {
        Err(QuoteError::Nonce {
            got: hex::encode(&quote.extra_data),
            expected: hex::encode(expected),
        })
    }
}

/// Recomputes `pcrDigest` from `pcrs` over the signed selection; returns only the signed values.
pub fn check_pcr_digest(quote: &QuoteAttest, pcrs: &PcrBank) -> Result<PcrBank, QuoteError> {
    let mut h = Sha256::new();
    let mut signed = PcrBank::new();
    for sel in &quote.pcr_select {
        if sel.hash != TPM_ALG_SHA256 {
            return Err(QuoteError::PcrBankAlg(sel.hash));
        }
        for &idx in &sel.pcrs {
            if idx >= 24 {
                return Err(QuoteError::PcrIndex(idx));
            }
            let v = pcrs.get(&idx).ok_or(QuoteError::MissingPcr(idx))?;
            h.update(v);
            signed.insert(idx, *v);
        }
    }
    if ct_eq(&h.finalize(), &quote.pcr_digest) {
        Ok(signed)
    } else {
        Err(QuoteError::PcrDigest)
    }
}

/// The `pcrDigest` a TPM computes for `pcrs` selected in one SHA-256 selection.
pub fn pcr_digest(pcrs: &PcrBank) -> [u8; 32] {
    let mut h = Sha256::new();
    for v in pcrs.values() {
        h.update(v);
    }
    h.finalize().into()
}

/// Constant-time equality (length is not secret).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from swtpm 0.7.1 + tpm2-tools 5.4 (see tpm_types tests): `tpm2_quote` of PCRs
    // sha256:0,1,4,8,9,18 after Startup(CLEAR) (0..15 are zero, 17..22 are all ones).
    const AK_PUB: &str = "00580023000b00050072000000100018000b00030010002047011443dc4c1a8094c4b1471fc5fe8fef49333a0a6c0d5ada5dee595391f02600201f67114409b45f9eb202f90d6be694cfda935f8b001b2e7e6ec147544a225b33";
    const QUOTE: &str = "ff54434780180022000bdbbe57ac8e70eda3f700d744895b8b2874b8d3073473b77b1f6231a7b4f5b05200080123456789abcdef0000000000000c59000000010000000001201910230016363600000001000b031303040020ff25231aee1fcaaf21092ec8d9b29f24b29e97ef58e1f5fee5c9575563adcd10";
    const SIG: &str = "0018000b00207560b6396a893bc73badac9c79cce4eb41240485e6f338aca0cd1c1edee18a2000208fc9f24d3fb204ee62a771782ddbaf58fbf8fd96ca4cb901888afa50a5624675";

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).expect("test vector is hex")
    }

    fn swtpm_pcrs() -> PcrBank {
        let mut p = PcrBank::new();
        for i in [0, 1, 4, 8, 9] {
            p.insert(i, [0; 32]);
        }
        p.insert(18, [0xff; 32]);
        p
    }

    #[test]
    fn test_quote_swtpm_vector_verifies() {
        let ak = TpmPublic::from_tpm2b(&unhex(AK_PUB)).expect("ak");
        let sig = TpmSignature::parse(&unhex(SIG)).expect("sig");
        check_ak_attributes(&ak).expect("restricted AK");
        verify_signature(&ak, &unhex(QUOTE), &sig).expect("signature");
        let q = QuoteAttest::parse(&unhex(QUOTE)).expect("attest");
        check_nonce(&q, &unhex("0123456789abcdef")).expect("nonce");
        let signed = check_pcr_digest(&q, &swtpm_pcrs()).expect("digest");
        assert_eq!(signed.len(), 6);
        assert_eq!(pcr_digest(&swtpm_pcrs()).to_vec(), q.pcr_digest);
    }

    #[test]
    fn test_quote_flipped_attest_byte_fails_signature() {
        let ak = TpmPublic::from_tpm2b(&unhex(AK_PUB)).expect("ak");
        let sig = TpmSignature::parse(&unhex(SIG)).expect("sig");
        let mut attest = unhex(QUOTE);
        attest[20] ^= 1;
        assert_eq!(
            verify_signature(&ak, &attest, &sig),
            Err(QuoteError::BadSignature)
        );
    }

    #[test]
    fn test_quote_other_nonce_fails() {
        let q = QuoteAttest::parse(&unhex(QUOTE)).expect("attest");
        assert!(matches!(
            check_nonce(&q, &unhex("0123456789abcdee")),
            Err(QuoteError::Nonce { .. })
        ));
    }

    #[test]
    fn test_quote_edited_pcr_value_fails_digest() {
        let q = QuoteAttest::parse(&unhex(QUOTE)).expect("attest");
        let mut pcrs = swtpm_pcrs();
        pcrs.insert(8, [1; 32]);
        assert_eq!(check_pcr_digest(&q, &pcrs), Err(QuoteError::PcrDigest));
        pcrs.remove(&8);
        assert_eq!(check_pcr_digest(&q, &pcrs), Err(QuoteError::MissingPcr(8)));
    }

    #[test]
    fn test_quote_unsigned_pcr_values_are_dropped() {
        let q = QuoteAttest::parse(&unhex(QUOTE)).expect("attest");
        let mut pcrs = swtpm_pcrs();
        pcrs.insert(10, [7; 32]);
        let signed = check_pcr_digest(&q, &pcrs).expect("digest");
        assert!(!signed.contains_key(&10));
    }
}
