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
//! - The host's zone CA key: a *non-restricted* signing key (it signs digests of certificates
//!   the host built, not only TPM-generated structures), ECDSA with SHA-256 on NIST P-256,
//!   fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth, sign (`0x00040072`), no policy,
//!   `unique.x` the label [`CA_UNIQUE_LABEL`] (so it is not the same key as any other primary
//!   of the same shape), `unique.y` empty. Made as a primary key of the *owner* hierarchy:
//!   the TPM derives it from the owner seed (Part 1 §26.2), so the same TPM gives the same key
//!   every time and nothing has to be persisted (no `EvictControl`, no key blob on disk). The
//!   key changes when the owner hierarchy is cleared (`TPM2_Clear`), and with it the CA: the
//!   stored CA certificate is then refused and a new CA must be made. It is what
//!   `tpm2_createprimary -C o -g sha256 -G ecc256:ecdsa-sha256 -a
//!   "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign" -u unique.dat` sends, with
//!   `unique.dat` the marshalled `TPMS_ECC_POINT { x: label, y: empty }`.

use crate::tpm_types::{
    TpmPublic, TPM_ALG_AES, TPM_ALG_CFB, TPM_ALG_ECC, TPM_ALG_ECDSA, TPM_ALG_NULL, TPM_ALG_SHA256,
    TPM_ECC_NIST_P256,
};

/// `TPMA_OBJECT` of the EK template.
pub const EK_ATTRIBUTES: u32 = 0x0003_00b2;
/// `TPMA_OBJECT` of the AK template.
pub const AK_ATTRIBUTES: u32 = 0x0005_0072;
/// `TPMA_OBJECT` of the zone CA key template.
pub const CA_ATTRIBUTES: u32 = 0x0004_0072;
/// `unique.x` of the zone CA key template: the label that makes it our key.
pub const CA_UNIQUE_LABEL: &[u8] = b"zones-zone-ca-v1";
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

fn ecc_p256(
    attributes: u32,
    policy: &[u8],
    aes128: bool,
    ecdsa: bool,
    unique_x: &[u8],
    unique_y: &[u8],
) -> Template {
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
    crate::tpm_types::put_tpm2b(&mut t, unique_x);
    crate::tpm_types::put_tpm2b(&mut t, unique_y);
    Template { tpmt: t, fixed }
}

/// The TCG default ECC NIST P-256 EK template (L-2).
pub fn ek_ecc_p256() -> Template {
    ecc_p256(EK_ATTRIBUTES, &EK_POLICY, true, false, &[0; 32], &[0; 32])
}

/// Our AK template: restricted ECDSA-SHA256 P-256 signing key.
pub fn ak_ecc_p256() -> Template {
    ecc_p256(AK_ATTRIBUTES, &[], false, true, &[], &[])
}

/// The host's zone CA key: non-restricted ECDSA-SHA256 P-256 signing key, labelled.
pub fn ca_ecc_p256() -> Template {
    ecc_p256(CA_ATTRIBUTES, &[], false, true, CA_UNIQUE_LABEL, &[])
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
    fn test_ca_template_bytes_equal_tpm2_createprimary() {
        // The inPublic of `tpm2_createprimary -C o -g sha256 -G ecc256:ecdsa-sha256
        // -a "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign" -u unique.dat`
        // (unique.dat = 0010 "zones-zone-ca-v1" 0000), tpm2-tools 5.4, TSS2_LOG=tcti+debug.
        let want = "0023000b00040072000000100018000b00030010\
                    00107a6f6e65732d7a6f6e652d63612d76310000";
        assert_eq!(hex::encode(ca_ecc_p256().tpmt), want);
        let attrs = crate::tpm_types::object_attributes::FIXED_TPM
            | crate::tpm_types::object_attributes::FIXED_PARENT
            | crate::tpm_types::object_attributes::SENSITIVE_DATA_ORIGIN
            | crate::tpm_types::object_attributes::USER_WITH_AUTH
            | crate::tpm_types::object_attributes::SIGN;
        assert_eq!(CA_ATTRIBUTES, attrs);
        assert_ne!(ca_ecc_p256(), ak_ecc_p256());
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
