//! The TPM 2.0 commands the VMM sends itself (TPM 2.0 Library Part 3: `TPM2_Startup` §9.3,
//! `TPM2_PCR_Extend` §22.2, `TPM2_PCR_Read` §22.4), big-endian as on the wire.

use zone_attest::eventlog::{Sha256Digest, SHA256_LEN, TPM_ALG_SHA256};

const TPM_ST_NO_SESSIONS: u16 = 0x8001;
const TPM_ST_SESSIONS: u16 = 0x8002;
const TPM_CC_STARTUP: u32 = 0x144;
const TPM_CC_PCR_EXTEND: u32 = 0x182;
const TPM_CC_PCR_READ: u32 = 0x17e;
const TPM_SU_CLEAR: u16 = 0x0000;
/// The password authorization session handle.
const TPM_RS_PW: u32 = 0x4000_0009;
/// `TPM_RC_LOCALITY`: the PCR cannot be extended from the current locality.
pub const TPM_RC_LOCALITY: u32 = 0x907;
/// `TPM_RC_INITIALIZE`: the TPM has not been started.
pub const TPM_RC_INITIALIZE: u32 = 0x100;

fn command(tag: u16, cc: u32, body: &[u8]) -> Vec<u8> {
    let size = u32::try_from(10 + body.len()).expect("commands are small");
    let mut c = Vec::with_capacity(10 + body.len());
    c.extend(tag.to_be_bytes());
    c.extend(size.to_be_bytes());
    c.extend(cc.to_be_bytes());
    c.extend(body);
    c
}

/// `TPM2_Startup(TPM_SU_CLEAR)`.
pub fn startup_clear() -> Vec<u8> {
    command(
        TPM_ST_NO_SESSIONS,
        TPM_CC_STARTUP,
        &TPM_SU_CLEAR.to_be_bytes(),
    )
}

/// `TPM2_PCR_Extend(pcr, {SHA-256: digest})` with an empty password authorization.
pub fn pcr_extend(pcr: u32, digest: &Sha256Digest) -> Vec<u8> {
    let mut body = pcr.to_be_bytes().to_vec();
    // TPMS_AUTH_COMMAND: handle, empty nonce, no attributes, empty password.
    let auth = [
        &TPM_RS_PW.to_be_bytes()[..],
        &0u16.to_be_bytes(),
        &[0u8],
        &0u16.to_be_bytes(),
    ]
    .concat();
    body.extend((auth.len() as u32).to_be_bytes());
    body.extend(auth);
    body.extend(1u32.to_be_bytes());
    body.extend(TPM_ALG_SHA256.to_be_bytes());
    body.extend(digest);
    command(TPM_ST_SESSIONS, TPM_CC_PCR_EXTEND, &body)
}

/// `TPM2_PCR_Read` of the SHA-256 bank for `pcrs` (a TPM answers at most 8 per call).
pub fn pcr_read(pcrs: &[u32]) -> Vec<u8> {
    let mut select = [0u8; 3];
    for pcr in pcrs.iter().filter(|p| **p < 24) {
        select[(*pcr / 8) as usize] |= 1 << (pcr % 8);
    }
    let mut body = 1u32.to_be_bytes().to_vec();
    body.extend(TPM_ALG_SHA256.to_be_bytes());
    body.push(3);
    body.extend(select);
    command(TPM_ST_NO_SESSIONS, TPM_CC_PCR_READ, &body)
}

/// The digests of a `TPM2_PCR_Read` response, in PCR order; `None` if it is malformed or an
/// error.
pub fn parse_pcr_read(rsp: &[u8]) -> Option<Vec<Sha256Digest>> {
    if response_code(rsp) != 0 {
        return None;
    }
    // header(10) pcrUpdateCounter(4) TPML_PCR_SELECTION{count(4) {hash(2) size(1) select}*}
    let mut at = 14;
    let count = u32::from_be_bytes(rsp.get(at..at + 4)?.try_into().ok()?);
    at += 4;
    for _ in 0..count.min(16) {
        let size = *rsp.get(at + 2)? as usize;
        at += 3 + size;
    }
    let n = u32::from_be_bytes(rsp.get(at..at + 4)?.try_into().ok()?);
    at += 4;
    let mut out = Vec::new();
    for _ in 0..n.min(24) {
        let size = u16::from_be_bytes(rsp.get(at..at + 2)?.try_into().ok()?) as usize;
        at += 2;
        if size != SHA256_LEN {
            return None;
        }
        out.push(rsp.get(at..at + size)?.try_into().ok()?);
        at += size;
    }
    Some(out)
}

/// The response code of a response (`TPM_RC_FAILURE` for one too short to have one).
pub fn response_code(rsp: &[u8]) -> u32 {
    match rsp.get(6..10) {
        Some(rc) => u32::from_be_bytes([rc[0], rc[1], rc[2], rc[3]]),
        None => 0x101,
    }
}

/// A few words on the response codes measured boot can meet.
pub fn rc_hint(rc: u32) -> &'static str {
    match rc {
        TPM_RC_LOCALITY => " (TPM_RC_LOCALITY: this PCR cannot be extended from this locality)",
        TPM_RC_INITIALIZE => " (TPM_RC_INITIALIZE: the TPM was not started)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_startup_clear_bytes() {
        assert_eq!(
            startup_clear(),
            [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x44, 0, 0]
        );
    }

    #[test]
    fn test_pcr_extend_layout() {
        let c = pcr_extend(18, &[0xab; 32]);
        assert_eq!(c.len(), 65);
        assert_eq!(&c[0..2], &[0x80, 0x02]);
        assert_eq!(u32::from_be_bytes([c[2], c[3], c[4], c[5]]), 65);
        assert_eq!(&c[10..14], &18u32.to_be_bytes());
        assert_eq!(&c[14..18], &9u32.to_be_bytes());
        assert_eq!(&c[18..22], &[0x40, 0, 0, 0x09]);
        assert_eq!(&c[27..33], &[0, 0, 0, 1, 0, 0x0b]);
        assert_eq!(&c[33..], &[0xab; 32]);
    }

    #[test]
    fn test_parse_pcr_read_two_digests_and_garbage() {
        let mut rsp = vec![0x80, 0x01, 0, 0, 0, 0, 0, 0, 0, 0];
        rsp.extend(7u32.to_be_bytes());
        rsp.extend([0, 0, 0, 1, 0, 0x0b, 3, 0x03, 0, 0]);
        rsp.extend(2u32.to_be_bytes());
        for b in [1u8, 2] {
            rsp.extend(32u16.to_be_bytes());
            rsp.extend([b; 32]);
        }
        let size = rsp.len() as u32;
        rsp[2..6].copy_from_slice(&size.to_be_bytes());
        assert_eq!(parse_pcr_read(&rsp), Some(vec![[1; 32], [2; 32]]));
        assert_eq!(parse_pcr_read(&rsp[..rsp.len() - 1]), None);
        assert_eq!(parse_pcr_read(&[0x80, 1, 0, 0, 0, 10, 0, 0, 1, 1]), None);
        assert_eq!(parse_pcr_read(&[]), None);
    }
}
