//! The commands, one builder and one parser each (TPM 2.0 Library Part 3, section per command).
//! Builders refuse arguments the TPM would refuse anyway (PCRs over 23, oversized buffers);
//! parsers refuse any response that is not exactly the documented structure.

use super::templates::Template;
use super::wire::{params_err, parse_empty, parse_response, Auth, Command};
use super::CommandError;
use crate::eventlog::{Sha256Digest, TPM_ALG_SHA256};
use crate::tpm_types::{
    PcrSelection, QuoteAttest, TpmError, TpmPublic, TpmSignature, TPM_ALG_ECDSA, TPM_ALG_NULL,
};

pub const TPM_CC_STARTUP: u32 = 0x144;
pub const TPM_CC_PCR_EXTEND: u32 = 0x182;
pub const TPM_CC_PCR_READ: u32 = 0x17e;
pub const TPM_CC_CREATE_PRIMARY: u32 = 0x131;
pub const TPM_CC_READ_PUBLIC: u32 = 0x173;
pub const TPM_CC_FLUSH_CONTEXT: u32 = 0x165;
pub const TPM_CC_START_AUTH_SESSION: u32 = 0x176;
pub const TPM_CC_POLICY_SECRET: u32 = 0x151;
pub const TPM_CC_ACTIVATE_CREDENTIAL: u32 = 0x147;
pub const TPM_CC_QUOTE: u32 = 0x158;
pub const TPM_CC_SIGN: u32 = 0x15d;

pub const TPM_RH_OWNER: u32 = 0x4000_0001;
pub const TPM_RH_NULL: u32 = 0x4000_0007;
pub const TPM_RS_PW: u32 = 0x4000_0009;
pub const TPM_RH_ENDORSEMENT: u32 = 0x4000_000b;
const TPM_SU_CLEAR: u16 = 0x0000;
const TPM_SE_POLICY: u8 = 0x01;
const TPM_ST_CREATION: u16 = 0x8021;
const TPM_ST_AUTH_SECRET: u16 = 0x8023;
const TPM_ST_HASHCHECK: u16 = 0x8024;
/// A P-256 scalar (ECDSA r and s).
const P256_SCALAR: usize = 32;
/// Transient objects and policy sessions live in these handle ranges (Part 2 §7.2).
const HT_TRANSIENT: u32 = 0x80;
const HT_POLICY_SESSION: u32 = 0x03;

/// PCRs of the PC Client profile's SHA-256 bank.
pub const PCR_COUNT: u32 = 24;
/// `TPM2B_PUBLIC` payloads: an RSA-4096 public area is ~600 bytes.
const MAX_PUBLIC: usize = 1024;
/// `TPM2B_NAME`: algorithm and a digest of up to 64 bytes.
const MAX_NAME: usize = 66;
/// Digests, nonces, `TPM2B_DATA` (`sizeof(TPMT_HA)`).
const MAX_DIGEST: usize = 64;
const MAX_DATA: usize = 66;
/// `TPM2B_ID_OBJECT` and `TPM2B_ENCRYPTED_SECRET` (RSA-4096 at most).
const MAX_CREDENTIAL_BLOB: usize = 512;
/// `TPM2B_TIMEOUT` is a `UINT64`.
const MAX_TIMEOUT: usize = 8;
/// A TPML lists no more entries than there are hash algorithms or PCRs read at once.
const MAX_LIST: u32 = 8;

fn arg(command: &'static str, why: &'static str) -> CommandError {
    CommandError::Argument { command, why }
}

fn bad(command: &'static str, what: &'static str, why: &'static str) -> CommandError {
    CommandError::Response {
        command,
        source: TpmError::Invalid { what, why },
    }
}

/// `pcrs` sorted and deduplicated, refused if empty or past PCR 23.
pub fn pcr_list(command: &'static str, pcrs: &[u32]) -> Result<Vec<u32>, CommandError> {
    let mut list = pcrs.to_vec();
    list.sort_unstable();
    list.dedup();
    match list.last() {
        None => Err(arg(command, "no PCRs selected")),
        Some(&last) if last >= PCR_COUNT => Err(arg(command, "PCR index past 23")),
        Some(_) => Ok(list),
    }
}

fn sha256_selection(pcrs: Vec<u32>) -> Vec<u8> {
    let mut out = 1u32.to_be_bytes().to_vec();
    PcrSelection {
        hash: TPM_ALG_SHA256,
        pcrs,
    }
    .write(&mut out);
    out
}

/// `TPM2_Startup(TPM_SU_CLEAR)` (§9.3).
pub fn startup_clear() -> Vec<u8> {
    Command::new(TPM_CC_STARTUP).u16(TPM_SU_CLEAR).build()
}

pub fn parse_startup(rsp: &[u8]) -> Result<(), CommandError> {
    parse_empty("Startup", rsp, 0)
}

/// `TPM2_PCR_Extend(pcr, {SHA-256: digest})` with an empty password (§22.2).
pub fn pcr_extend(pcr: u32, digest: &Sha256Digest) -> Result<Vec<u8>, CommandError> {
    if pcr >= PCR_COUNT {
        return Err(arg("PCR_Extend", "PCR index past 23"));
    }
    Ok(Command::new(TPM_CC_PCR_EXTEND)
        .handle(pcr)
        .auth(Auth::EmptyPassword)
        .u32(1)
        .u16(TPM_ALG_SHA256)
        .raw(digest)
        .build())
}

pub fn parse_pcr_extend(rsp: &[u8]) -> Result<(), CommandError> {
    parse_empty("PCR_Extend", rsp, 1)
}

/// `TPM2_PCR_Read` of the SHA-256 bank (§22.4).
pub fn pcr_read(pcrs: &[u32]) -> Result<Vec<u8>, CommandError> {
    let list = pcr_list("PCR_Read", pcrs)?;
    Ok(Command::new(TPM_CC_PCR_READ)
        .raw(&sha256_selection(list))
        .build())
}

/// What one `TPM2_PCR_Read` returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrReadOut {
    pub update_counter: u32,
    /// The PCRs the TPM selected (a subset of those asked for), ascending, with their values.
    pub values: Vec<(u32, Sha256Digest)>,
}

pub fn parse_pcr_read(rsp: &[u8]) -> Result<PcrReadOut, CommandError> {
    const C: &str = "PCR_Read";
    let e = params_err(C);
    let mut r = parse_response(C, rsp, 0, 0)?.params;
    let update_counter = r.u32("pcrUpdateCounter").map_err(&e)?;
    let selections = r.u32("pcrSelectionOut.count").map_err(&e)?;
    if selections > MAX_LIST {
        return Err(e(TpmError::TooLarge {
            what: "pcrSelectionOut.count",
            size: selections as usize,
            max: MAX_LIST as usize,
        }));
    }
    let mut selected = Vec::new();
    for _ in 0..selections {
        let s = PcrSelection::read(&mut r).map_err(&e)?;
        if s.hash != TPM_ALG_SHA256 {
            return Err(bad(
                C,
                "pcrSelectionOut.hash",
                "not the SHA-256 bank asked for",
            ));
        }
        if s.pcrs.iter().any(|p| *p >= PCR_COUNT) {
            return Err(bad(C, "pcrSelectionOut", "PCR index past 23"));
        }
        selected.extend(s.pcrs);
    }
    let digests = r.u32("pcrValues.count").map_err(&e)?;
    if digests as usize != selected.len() {
        return Err(bad(
            C,
            "pcrValues.count",
            "differs from the number of PCRs selected",
        ));
    }
    let mut values = Vec::new();
    for pcr in selected {
        let d = r.tpm2b(MAX_DIGEST, "pcrValues.digest").map_err(&e)?;
        let d: Sha256Digest = d
            .try_into()
            .map_err(|_| bad(C, "pcrValues.digest", "not a SHA-256 digest"))?;
        values.push((pcr, d));
    }
    r.finish("TPM2_PCR_Read response").map_err(&e)?;
    Ok(PcrReadOut {
        update_counter,
        values,
    })
}

/// `TPM2_CreatePrimary` under `hierarchy` (empty password) with an empty `inSensitive`, no
/// `outsideInfo` and no creation PCRs (§24.1).
pub fn create_primary(hierarchy: u32, template: &Template) -> Result<Vec<u8>, CommandError> {
    if template.tpmt.len() > MAX_PUBLIC {
        return Err(arg("CreatePrimary", "template too large"));
    }
    Ok(Command::new(TPM_CC_CREATE_PRIMARY)
        .handle(hierarchy)
        .auth(Auth::EmptyPassword)
        .tpm2b(&[0, 0, 0, 0]) // TPM2B_SENSITIVE_CREATE { userAuth: empty, data: empty }
        .tpm2b(&template.tpmt)
        .tpm2b(&[]) // outsideInfo
        .u32(0) // creationPCR: TPML_PCR_SELECTION with no selections
        .build())
}

/// A primary key the TPM created and loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedPrimary {
    pub handle: u32,
    pub public: TpmPublic,
}

/// Parses `TPM2_CreatePrimary`'s response and checks the key against `template` and its name
/// against its public area.
pub fn parse_create_primary(
    rsp: &[u8],
    template: &Template,
) -> Result<CreatedPrimary, CommandError> {
    const C: &str = "CreatePrimary";
    let e = params_err(C);
    let resp = parse_response(C, rsp, 1, 1)?;
    let handle = resp.handles[0];
    let mut r = resp.params;
    if handle >> 24 != HT_TRANSIENT {
        return Err(bad(C, "objectHandle", "not a transient object handle"));
    }
    let public = TpmPublic::from_tpmt(r.tpm2b(MAX_PUBLIC, "outPublic").map_err(&e)?).map_err(&e)?;
    r.tpm2b(super::MAX_RESPONSE, "creationData").map_err(&e)?;
    r.tpm2b(MAX_DIGEST, "creationHash").map_err(&e)?;
    if r.u16("creationTicket.tag").map_err(&e)? != TPM_ST_CREATION {
        return Err(bad(C, "creationTicket.tag", "not TPM_ST_CREATION"));
    }
    r.u32("creationTicket.hierarchy").map_err(&e)?;
    r.tpm2b(MAX_DIGEST, "creationTicket.digest").map_err(&e)?;
    let name = r.tpm2b(MAX_NAME, "name").map_err(&e)?;
    r.finish("TPM2_CreatePrimary response").map_err(&e)?;
    if name != public.name().as_slice() {
        return Err(bad(C, "name", "is not the hash of outPublic"));
    }
    if !template.made(&public) {
        return Err(bad(C, "outPublic", "differs from the template"));
    }
    Ok(CreatedPrimary { handle, public })
}

/// `TPM2_ReadPublic` (§12.4).
pub fn read_public(handle: u32) -> Vec<u8> {
    Command::new(TPM_CC_READ_PUBLIC).handle(handle).build()
}

/// A loaded object's public area and names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadPublic {
    pub public: TpmPublic,
    pub name: Vec<u8>,
    pub qualified_name: Vec<u8>,
}

pub fn parse_read_public(rsp: &[u8]) -> Result<ReadPublic, CommandError> {
    const C: &str = "ReadPublic";
    let e = params_err(C);
    let mut r = parse_response(C, rsp, 0, 0)?.params;
    let public = TpmPublic::from_tpmt(r.tpm2b(MAX_PUBLIC, "outPublic").map_err(&e)?).map_err(&e)?;
    let name = r.tpm2b(MAX_NAME, "name").map_err(&e)?.to_vec();
    let qualified_name = r.tpm2b(MAX_NAME, "qualifiedName").map_err(&e)?.to_vec();
    r.finish("TPM2_ReadPublic response").map_err(&e)?;
    if name != public.name() {
        return Err(bad(C, "name", "is not the hash of outPublic"));
    }
    Ok(ReadPublic {
        public,
        name,
        qualified_name,
    })
}

/// `TPM2_FlushContext` (§28.4): the handle is a parameter, not in the handle area.
pub fn flush_context(handle: u32) -> Vec<u8> {
    Command::new(TPM_CC_FLUSH_CONTEXT).u32(handle).build()
}

pub fn parse_flush_context(rsp: &[u8]) -> Result<(), CommandError> {
    parse_empty("FlushContext", rsp, 0)
}

/// `TPM2_StartAuthSession` (§11.1): tpmKey and bind `TPM_RH_NULL` (unsalted, unbound), a
/// policy session, no symmetric parameter encryption, SHA-256.
pub fn start_auth_session_policy(nonce_caller: &[u8; 32]) -> Vec<u8> {
    Command::new(TPM_CC_START_AUTH_SESSION)
        .handle(TPM_RH_NULL)
        .handle(TPM_RH_NULL)
        .tpm2b(nonce_caller)
        .tpm2b(&[]) // encryptedSalt
        .u8(TPM_SE_POLICY)
        .u16(TPM_ALG_NULL) // symmetric
        .u16(TPM_ALG_SHA256)
        .build()
}

/// The session handle and `nonceTPM`.
pub fn parse_start_auth_session(rsp: &[u8]) -> Result<(u32, Vec<u8>), CommandError> {
    const C: &str = "StartAuthSession";
    let e = params_err(C);
    let resp = parse_response(C, rsp, 1, 0)?;
    let handle = resp.handles[0];
    let mut r = resp.params;
    let nonce = r.tpm2b(MAX_DIGEST, "nonceTPM").map_err(&e)?.to_vec();
    r.finish("TPM2_StartAuthSession response").map_err(&e)?;
    if handle >> 24 != HT_POLICY_SESSION {
        return Err(bad(C, "sessionHandle", "not a policy session handle"));
    }
    Ok((handle, nonce))
}

/// `TPM2_PolicySecret(auth_entity)` with the entity's empty password (§23.4); no nonce, cpHash,
/// policyRef or expiration.
pub fn policy_secret(auth_entity: u32, session: u32) -> Vec<u8> {
    Command::new(TPM_CC_POLICY_SECRET)
        .handle(auth_entity)
        .handle(session)
        .auth(Auth::EmptyPassword)
        .tpm2b(&[]) // nonceTPM
        .tpm2b(&[]) // cpHashA
        .tpm2b(&[]) // policyRef
        .u32(0) // expiration
        .build()
}

pub fn parse_policy_secret(rsp: &[u8]) -> Result<(), CommandError> {
    const C: &str = "PolicySecret";
    let e = params_err(C);
    let mut r = parse_response(C, rsp, 0, 1)?.params;
    r.tpm2b(MAX_TIMEOUT, "timeout").map_err(&e)?;
    let tag = r.u16("policyTicket.tag").map_err(&e)?;
    // With no expiration the ticket is a NULL ticket (tag TPM_ST_AUTH_SECRET, TPM_RH_NULL).
    if tag != TPM_ST_AUTH_SECRET {
        return Err(bad(C, "policyTicket.tag", "not TPM_ST_AUTH_SECRET"));
    }
    r.u32("policyTicket.hierarchy").map_err(&e)?;
    r.tpm2b(MAX_DIGEST, "policyTicket.digest").map_err(&e)?;
    r.finish("TPM2_PolicySecret response").map_err(&e)
}

/// `TPM2_ActivateCredential` (§12.5): `ak` (activateHandle) by empty password, `ek` (keyHandle)
/// by the policy `session`.
pub fn activate_credential(
    ak: u32,
    ek: u32,
    session: u32,
    credential_blob: &[u8],
    encrypted_secret: &[u8],
) -> Result<Vec<u8>, CommandError> {
    if credential_blob.len() > MAX_CREDENTIAL_BLOB || encrypted_secret.len() > MAX_CREDENTIAL_BLOB {
        return Err(arg(
            "ActivateCredential",
            "credential larger than any EK takes",
        ));
    }
    Ok(Command::new(TPM_CC_ACTIVATE_CREDENTIAL)
        .handle(ak)
        .handle(ek)
        .auth(Auth::EmptyPassword)
        .auth(Auth::Policy(session))
        .tpm2b(credential_blob)
        .tpm2b(encrypted_secret)
        .build())
}

/// The recovered credential (`certInfo`).
pub fn parse_activate_credential(rsp: &[u8]) -> Result<Vec<u8>, CommandError> {
    const C: &str = "ActivateCredential";
    let e = params_err(C);
    let mut r = parse_response(C, rsp, 0, 2)?.params;
    let cert_info = r.tpm2b(MAX_DIGEST, "certInfo").map_err(&e)?.to_vec();
    r.finish("TPM2_ActivateCredential response").map_err(&e)?;
    Ok(cert_info)
}

/// `TPM2_Quote` (§18.4) by `ak` (empty password), scheme ECDSA/SHA-256, of the SHA-256 `pcrs`.
pub fn quote(ak: u32, nonce: &[u8], pcrs: &[u32]) -> Result<Vec<u8>, CommandError> {
    if nonce.len() > MAX_DATA {
        return Err(arg("Quote", "qualifying data over 66 bytes"));
    }
    let list = pcr_list("Quote", pcrs)?;
    Ok(Command::new(TPM_CC_QUOTE)
        .handle(ak)
        .auth(Auth::EmptyPassword)
        .tpm2b(nonce)
        .u16(TPM_ALG_ECDSA)
        .u16(TPM_ALG_SHA256)
        .raw(&sha256_selection(list))
        .build())
}

/// The signed `TPMS_ATTEST` and its `TPMT_SIGNATURE`, each checked to parse as a quote and as
/// a signature.
pub fn parse_quote(rsp: &[u8]) -> Result<(Vec<u8>, Vec<u8>), CommandError> {
    const C: &str = "Quote";
    let e = params_err(C);
    let mut r = parse_response(C, rsp, 0, 1)?.params;
    let quoted = r.tpm2b(super::MAX_RESPONSE, "quoted").map_err(&e)?.to_vec();
    QuoteAttest::parse(&quoted).map_err(&e)?;
    let signature = r.rest().to_vec();
    TpmSignature::parse(&signature).map_err(&e)?;
    Ok((quoted, signature))
}

/// `TPM2_Sign` (§20.2) by `key` (empty password) of the SHA-256 `digest`, scheme ECDSA/SHA-256,
/// with the NULL validation ticket (`TPM_ST_HASHCHECK`, `TPM_RH_NULL`, empty digest): enough for
/// a key that is not restricted; a restricted key refuses it (`TPM_RC_TICKET`), so an AK
/// cannot be made to sign a digest that could pass for a quote.
pub fn sign(key: u32, digest: &Sha256Digest) -> Vec<u8> {
    Command::new(TPM_CC_SIGN)
        .handle(key)
        .auth(Auth::EmptyPassword)
        .tpm2b(digest)
        .u16(TPM_ALG_ECDSA)
        .u16(TPM_ALG_SHA256)
        .u16(TPM_ST_HASHCHECK)
        .u32(TPM_RH_NULL)
        .tpm2b(&[])
        .build()
}

/// The signature of `TPM2_Sign`'s response: exactly a `TPMT_SIGNATURE` of ECDSA with SHA-256,
/// r and s each 1 to 32 bytes (big-endian, a TPM may drop leading zeros) and valid P-256
/// scalars (non-zero, below the group order).
pub fn parse_sign(rsp: &[u8]) -> Result<p256::ecdsa::Signature, CommandError> {
    const C: &str = "Sign";
    let e = params_err(C);
    let mut r = parse_response(C, rsp, 0, 1)?.params;
    let alg = r.u16("signature.sigAlg").map_err(&e)?;
    if alg != TPM_ALG_ECDSA {
        return Err(bad(C, "signature.sigAlg", "not TPM_ALG_ECDSA"));
    }
    if r.u16("signature.hash").map_err(&e)? != TPM_ALG_SHA256 {
        return Err(bad(C, "signature.hash", "not TPM_ALG_SHA256"));
    }
    let mut scalar = |what: &'static str| -> Result<[u8; P256_SCALAR], CommandError> {
        let v = r.tpm2b(P256_SCALAR, what).map_err(&e)?;
        if v.is_empty() {
            return Err(bad(C, what, "empty"));
        }
        let mut out = [0u8; P256_SCALAR];
        out[P256_SCALAR - v.len()..].copy_from_slice(v);
        Ok(out)
    };
    let sig_r = scalar("signature.signatureR")?;
    let sig_s = scalar("signature.signatureS")?;
    r.finish("TPM2_Sign response").map_err(&e)?;
    p256::ecdsa::Signature::from_scalars(sig_r, sig_s).map_err(|_| {
        bad(
            C,
            "signature",
            "r or s is zero or not below the P-256 group order",
        )
    })
}

#[cfg(test)]
#[path = "commands_tests.rs"]
pub(crate) mod tests;
