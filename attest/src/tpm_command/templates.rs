//! Key templates (`TPMT_PUBLIC` for `TPM2_CreatePrimary`).
//!
//! - The EK: TCG EK Credential Profile for TPM Family 2.0 (version 2.x) §B.3.4, template L-2
//!   "ECC NIST P256 (Storage)": nameAlg SHA-256; fixedTPM, fixedParent, sensitiveDataOrigin,
//!   adminWithPolicy, restricted, decrypt (`0x000300b2`); authPolicy
//!   `PolicySecret(TPM_RH_ENDORSEMENT)`; AES-128-CFB; scheme and KDF NULL; curve NIST P-256;
//!   unique x and y 32 zero bytes each. It is what `tpm2_createek -G ecc` sends, byte for byte,
//!   so every party that derives the EK from the endorsement seed gets the same key.
//! - The AK: a restricted signing key, ECDSA with SHA-256 on NIST P-256, fixedTPM, fixedParent,
//!   sensitiveDataOrigin, userWithAuth, restricted, sign (`0x00050072`, the attributes
//!   `tpm2_createak` gives), no policy, empty unique. Made as a primary key of the endorsement
//!   hierarchy, so it too is the same key every time it is derived on the same TPM.

use crate::tpm_types::{
    TpmPublic, TPM_ALG_AES, TPM_ALG_CFB, TPM_ALG_ECC, TPM_ALG_ECDSA, TPM_ALG_NULL, TPM_ALG_SHA256,
    TPM_ECC_NIST_P256,
};

/// `TPMA_OBJECT` of the EK template.
pub const EK_ATTRIBUTES: u32 = 0x0003_00b2;
/// `TPMA_OBJECT` of the AK template.
pub const AK_ATTRIBUTES: u32 = 0x0005_0072;
/// `PolicySecret(TPM_RH_ENDORSEMENT)`: `H(0^32 || TPM_CC_PolicySecret || Name(TPM_RH_ENDORSEMENT))`,
/// then extended with an empty policyRef (EK Credential Profile §B.3.3).
pub const EK_POLICY: [u8; 32] = [
    0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24,
    0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
];

/// A `TPMT_PUBLIC` template and how much of it a created key's public area repeats verbatim
/// (everything but `unique`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub tpmt: Vec<u8>,
    fixed: usize,
}

impl Template {
    /// Whether `public` was made from this template (all fields but the key itself equal).
    pub fn made(&self, public: &TpmPublic) -> bool {
        public.bytes.get(..self.fixed) == Some(&self.tpmt[..self.fixed])
    }
}

fn ecc_p256(attributes: u32, policy: &[u8], aes128: bool, ecdsa: bool, unique: usize) -> Template {
    let mut t = Vec::new();
    t.extend_from_slice(&TPM_ALG_ECC.to_be_bytes());
    t.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
    t.extend_from_slice(&attributes.to_be_bytes());
    crate::tpm_types::put_tpm2b(&mut t, policy);
    if aes128 {
        for v in [TPM_ALG_AES, 128, TPM_ALG_CFB] {
            t.extend_from_slice(&v.to_be_bytes());
        }
    } else {
        t.extend_from_slice(&TPM_ALG_NULL.to_be_bytes());
    }
    if ecdsa {
        t.extend_from_slice(&TPM_ALG_ECDSA.to_be_bytes());
        t.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
    } else {
        t.extend_from_slice(&TPM_ALG_NULL.to_be_bytes());
    }
    t.extend_from_slice(&TPM_ECC_NIST_P256.to_be_bytes());
    t.extend_from_slice(&TPM_ALG_NULL.to_be_bytes()); // kdf
    let fixed = t.len();
    for _ in 0..2 {
        crate::tpm_types::put_tpm2b(&mut t, &vec![0; unique]);
    }
    Template { tpmt: t, fixed }
}

/// The TCG default ECC NIST P-256 EK template (L-2).
pub fn ek_ecc_p256() -> Template {
    ecc_p256(EK_ATTRIBUTES, &EK_POLICY, true, false, 32)
}

/// Our AK template: restricted ECDSA-SHA256 P-256 signing key.
pub fn ak_ecc_p256() -> Template {
    ecc_p256(AK_ATTRIBUTES, &[], false, true, 0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn test_ek_policy_is_policy_secret_endorsement() {
        // TPM2_PolicySecret: policyDigest' = H(H(0^32 || TPM_CC_PolicySecret || authName) || policyRef).
        let mut h = Sha256::new();
        h.update([0u8; 32]);
        h.update(0x0000_0151u32.to_be_bytes());
        h.update(0x4000_000bu32.to_be_bytes());
        let first = h.finalize();
        let second = Sha256::digest(first);
        assert_eq!(second.as_slice(), EK_POLICY);
    }

    #[test]
    fn test_ek_template_bytes_equal_tpm2_createek() {
        // The inPublic of tpm2_createek -G ecc (tpm2-tools 5.4, captured with TSS2_LOG=tcti+debug).
        let want = "0023000b000300b20020837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2\
                    a1da1b331469aa000600800043001000030010002000000000000000000000000000000000000000\
                    00000000000000000000000000002000000000000000000000000000000000000000000000000000\
                    00000000000000";
        assert_eq!(hex::encode(ek_ecc_p256().tpmt), want);
    }

    #[test]
    fn test_ak_template_bytes() {
        assert_eq!(
            hex::encode(ak_ecc_p256().tpmt),
            "0023000b00050072000000100018000b0003001000000000"
        );
    }

    #[test]
    fn test_template_made_compares_all_but_unique() {
        // ek.pub from tpm2_createek -G ecc on swtpm 0.7.1.
        let ek = TpmPublic::from_tpm2b(&hex::decode(EK_PUB).expect("hex")).expect("parses");
        assert!(ek_ecc_p256().made(&ek));
        assert!(!ak_ecc_p256().made(&ek));
    }

    pub(crate) const EK_PUB: &str = "007a0023000b000300b20020837197674484b3f81a90cc8d46\
        a5d724fd52d76e06520b64f2a1da1b331469aa0006008000430010000300100020db163185e16c079872d197de\
        2243ad11e9778d34db54235dd76148a05e8117fe0020e80b20d2fe928635ec2e5d4d03bfaa18f464b1780554a8\
        d96c6e6598e6d3cc1a";
}
