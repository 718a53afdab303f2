//! Byte-exact encodings against tpm2-tools 5.4 (commands captured with
//! `TSS2_LOG=tcti+debug TPM2TOOLS_TCTI=swtpm:...` against swtpm 0.7.1) and strict parsing of the
//! responses swtpm answered.

use super::*;
use crate::tpm_command::templates::{ak_ecc_p256, ek_ecc_p256};
use crate::tpm_command::wire::{TPM_ST_NO_SESSIONS, TPM_ST_SESSIONS};

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s.replace([' ', '\n'], "")).expect("test vector is hex")
}

/// `tpm2_createek -G ecc`'s `TPM2_CreatePrimary` parameters (after its HMAC session's
/// authorization area): inSensitive, inPublic, outsideInfo, creationPCR.
const CREATEEK_PARAMS: &str = "000400000000007a0023000b000300b20020837197674484b3f81a90cc8d\
    46a5d724fd52d76e06520b64f2a1da1b331469aa00060080004300100003001000200000000000000000000000\
    000000000000000000000000000000000000000000002000000000000000000000000000000000000000000000\
    00000000000000000000000000000000";

/// swtpm's answer to it (tpm2-tools' HMAC session: 32-byte nonce and HMAC in the auth area).
const CREATEEK_RSP: &str = "80020000019a000000008000000000000143007a0023000b000300b20020\
    837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa00060080004300100003001000\
    20db163185e16c079872d197de2243ad11e9778d34db54235dd76148a05e8117fe0020e80b20d2fe928635ec2e\
    5d4d03bfaa18f464b1780554a8d96c6e6598e6d3cc1a0037000000000020e3b0c44298fc1c149afbf4c8996fb9\
    2427ae41e4649b934ca495991b7852b85501001000044000000b00044000000b0000002028d026fafd74910674\
    3e27c4280551585e5d17668eb521835ed60127effc05d480214000000b0040ad907e2d3c97a22827efa9ccd926\
    3765c96432bb8c07a1475e6d6bc8a6b41137e43531a9fa133c73262dea76045b16797c2cbb76355002cdb9c7ca\
    9aabe121510022000b9eb5d6b43830e7c921385888a2749c7f993f98753e4f45adceed23150141abdd00203540\
    7359e267062a19d0c1096751b267fed24348d1a172cea9f101a3d1c6fbc501002059e0dd3f21d4bcdb5519dca1\
    5bca75eff004f5546b3f410a0498dd1e40c1e8ad";

/// `tpm2_quote -c ak.ctx -l sha256:0,1,2,3,4,5,6,7,8,9,18 -q 0123456789abcdef -g sha256`'s
/// `TPM2_Quote` parameters (after its HMAC session's authorization area): qualifyingData,
/// inScheme ECDSA/SHA-256, PCRselect.
const TOOLS_QUOTE_PARAMS: &str = "00080123456789abcdef0018000b00000001000b03ff0304";

/// swtpm's answer to that quote.
const QUOTE_RSP: &str = "80020000011600000000000000c30079ff54434780180022000bccc6421e\
    e2673cea3659f663a5aef418e15796c72d83f5bc266ec9861bbd2c0400080123456789abcdef00000000000030\
    69000000010000000001201910230016363600000001000b03ff03040020733b827b64a29e072bbea5c7875b88\
    9c86995e79f6c9b90924d15198f917a5660018000b002079d17ba557e4150e29563fd678eb0b10b420a5f111b7\
    4289bc77982ce9ee05aa00208b45a2654b76ee2972a0424a4c8e391b28224f32e55e2fbd890528a114cfb02000\
    20913ad58c45cf183e7021afdc8a73fa4366ba3c169fea67a7d25f71eee4b58fa2010020a80577b9f54b2bb71d\
    ac0d3e1ce7db3d9364ec901d6a21099d4ed24c82df07b1";

const QUOTED_PCRS: [u32; 11] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 18];

/// Rewrites the responseSize field after a test changed the length.
fn resize(mut rsp: Vec<u8>) -> Vec<u8> {
    let n = rsp.len() as u32;
    rsp[2..6].copy_from_slice(&n.to_be_bytes());
    rsp
}

#[test]
fn test_create_primary_ek_parameters_equal_tpm2_createek() {
    let cmd = create_primary(TPM_RH_ENDORSEMENT, &ek_ecc_p256()).expect("builds");
    let mut want = unhex("8002 00000000 00000131 4000000b 00000009 40000009 0000 00 0000");
    want.extend(unhex(CREATEEK_PARAMS));
    let want = resize(want);
    assert_eq!(hex::encode(&cmd), hex::encode(want));
}

#[test]
fn test_create_primary_ak_bytes() {
    let cmd = create_primary(TPM_RH_ENDORSEMENT, &ak_ecc_p256()).expect("builds");
    let want = "8002 00000041 00000131 4000000b 00000009 40000009 0000 00 0000 \
                0004 0000 0000 0018 0023000b00050072000000100018000b0003001000000000 0000 00000000";
    assert_eq!(hex::encode(cmd), want.replace(' ', ""));
}

#[test]
fn test_quote_parameters_equal_tpm2_quote() {
    let cmd = quote(0x8000_0000, &unhex("0123456789abcdef"), &QUOTED_PCRS).expect("builds");
    let mut want = unhex("8002 00000000 00000158 80000000 00000009 40000009 0000 00 0000");
    want.extend(unhex(TOOLS_QUOTE_PARAMS));
    assert_eq!(hex::encode(cmd), hex::encode(resize(want)));
    // Unsorted and repeated PCRs select the same.
    let again = quote(
        0x8000_0000,
        &unhex("0123456789abcdef"),
        &[18, 9, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    );
    assert_eq!(
        again.expect("builds"),
        quote(0x8000_0000, &unhex("0123456789abcdef"), &QUOTED_PCRS).expect("builds")
    );
}

#[test]
fn test_quote_bad_arguments_refused() {
    assert!(matches!(
        quote(0x8000_0000, &[0; 67], &[0]),
        Err(CommandError::Argument { .. })
    ));
    assert!(matches!(
        quote(0x8000_0000, &[0; 32], &[24]),
        Err(CommandError::Argument { .. })
    ));
    assert!(matches!(
        quote(0x8000_0000, &[0; 32], &[]),
        Err(CommandError::Argument { .. })
    ));
}

#[test]
fn test_small_commands_bytes() {
    assert_eq!(hex::encode(startup_clear()), "80010000000c000001440000");
    assert_eq!(
        hex::encode(flush_context(0x8000_0001)),
        "80010000000e0000016580000001"
    );
    assert_eq!(
        hex::encode(read_public(0x8000_0000)),
        "80010000000e0000017380000000"
    );
    // tpm2_pcrread's second read (PCRs 16-23 left) from the capture.
    assert_eq!(
        hex::encode(pcr_read(&[18]).expect("builds")),
        "8001000000140000017e00000001000b03000004"
    );
    let ext = pcr_extend(18, &[0xab; 32]).expect("builds");
    assert_eq!(
        hex::encode(&ext[..33]),
        "8002 00000041 00000182 00000012 00000009 40000009 0000 00 0000 00000001 000b"
            .replace(' ', "")
    );
    assert!(pcr_extend(24, &[0; 32]).is_err());
    assert_eq!(
        hex::encode(start_auth_session_policy(&[0x11; 32])),
        format!(
            "80010000003b00000176{}{}0020{}0000010010000b",
            "40000007",
            "40000007",
            "11".repeat(32)
        )
    );
    assert_eq!(
        hex::encode(policy_secret(TPM_RH_ENDORSEMENT, 0x0300_0000)),
        "8002 00000029 00000151 4000000b 03000000 00000009 40000009 0000 00 0000 \
         0000 0000 0000 00000000"
            .replace(' ', "")
    );
}

#[test]
fn test_parse_create_primary_swtpm_response() {
    let created = parse_create_primary(&unhex(CREATEEK_RSP), &ek_ecc_p256()).expect("parses");
    assert_eq!(created.handle, 0x8000_0000);
    assert_eq!(
        created.public.to_tpm2b(),
        unhex(crate::tpm_command::templates::tests::EK_PUB)
    );
    // Not the AK it was asked for.
    assert!(matches!(
        parse_create_primary(&unhex(CREATEEK_RSP), &ak_ecc_p256()),
        Err(CommandError::Response { .. })
    ));
}

#[test]
fn test_parse_create_primary_every_truncation_refused() {
    let full = unhex(CREATEEK_RSP);
    for n in 0..full.len() {
        // With the size field lying (as sent) and telling the truth (the structure is short).
        assert!(
            parse_create_primary(&full[..n], &ek_ecc_p256()).is_err(),
            "{n}"
        );
        if n >= 10 {
            let cut = resize(full[..n].to_vec());
            assert!(parse_create_primary(&cut, &ek_ecc_p256()).is_err(), "{n}");
        }
    }
    let mut long = full.clone();
    long.push(0);
    assert!(parse_create_primary(&resize(long), &ek_ecc_p256()).is_err());
}

#[test]
fn test_parse_create_primary_wrong_name_refused() {
    let mut rsp = unhex(CREATEEK_RSP);
    // The name's last digest byte sits just before the 4-byte parameterSize-bounded auth area:
    // find the name (000b || digest) by its known prefix.
    let at = hex::encode(&rsp).find("0022000b9eb5").expect("name") / 2 + 4;
    rsp[at] ^= 1;
    let e = parse_create_primary(&rsp, &ek_ecc_p256()).expect_err("name mismatch");
    assert!(e.to_string().contains("TPM2_CreatePrimary"), "{e}");
}

#[test]
fn test_parse_quote_swtpm_response() {
    let (attest, sig) = parse_quote(&unhex(QUOTE_RSP)).expect("parses");
    let q = QuoteAttest::parse(&attest).expect("attest");
    assert_eq!(q.extra_data, unhex("0123456789abcdef"));
    assert_eq!(q.pcr_select[0].pcrs, QUOTED_PCRS.to_vec());
    assert!(matches!(
        TpmSignature::parse(&sig).expect("sig"),
        TpmSignature::Ecdsa {
            hash: TPM_ALG_SHA256,
            ..
        }
    ));
}

#[test]
fn test_parse_quote_truncated_oversized_and_garbage_refused() {
    let full = unhex(QUOTE_RSP);
    for n in 0..full.len() {
        assert!(parse_quote(&full[..n]).is_err(), "{n}");
        if n >= 10 {
            assert!(parse_quote(&resize(full[..n].to_vec())).is_err(), "{n}");
        }
    }
    // parameterSize past the end.
    let mut rsp = full.clone();
    rsp[10..14].copy_from_slice(&0x1000u32.to_be_bytes());
    assert!(parse_quote(&rsp).is_err());
    // A TPMS_ATTEST that is not a quote.
    let mut rsp = full.clone();
    rsp[16 + 4 + 1] = 0x17;
    assert!(matches!(
        parse_quote(&rsp),
        Err(CommandError::Response {
            command: "Quote",
            ..
        })
    ));
    // Oversized and error answers.
    let mut big = full.clone();
    big.resize(MAX_RESPONSE_TEST + 1, 0);
    assert!(parse_quote(&resize(big)).is_err());
    let e = parse_quote(&unhex("80010000000a00000922")).expect_err("RETRY");
    assert_eq!(
        e.to_string(),
        "TPM2_Quote returned TPM_RC 0x922 TPM_RC_RETRY"
    );
    let mut wrong_tag = full;
    wrong_tag[1] = 0x01;
    assert!(
        parse_quote(&wrong_tag).is_err(),
        "sessions answered with NO_SESSIONS"
    );
}

const MAX_RESPONSE_TEST: usize = crate::tpm_command::MAX_RESPONSE;

fn pcr_read_rsp(counter: u32, select: [u8; 3], digests: &[[u8; 32]]) -> Vec<u8> {
    let mut r = unhex("8001 00000000 00000000");
    r.extend(counter.to_be_bytes());
    r.extend(unhex("00000001 000b 03"));
    r.extend(select);
    r.extend((digests.len() as u32).to_be_bytes());
    for d in digests {
        r.extend(32u16.to_be_bytes());
        r.extend(d);
    }
    resize(r)
}

#[test]
fn test_parse_pcr_read_values_and_inconsistencies() {
    let out = parse_pcr_read(&pcr_read_rsp(
        7,
        [0x03, 0, 0x04],
        &[[1; 32], [2; 32], [3; 32]],
    ))
    .expect("parses");
    assert_eq!(out.update_counter, 7);
    assert_eq!(out.values, vec![(0, [1; 32]), (1, [2; 32]), (18, [3; 32])]);
    // Fewer digests than PCRs selected, and more.
    assert!(parse_pcr_read(&pcr_read_rsp(7, [0x03, 0, 0], &[[1; 32]])).is_err());
    assert!(parse_pcr_read(&pcr_read_rsp(7, [0x01, 0, 0], &[[1; 32], [2; 32]])).is_err());
    // Another bank.
    let mut sha1 = pcr_read_rsp(7, [0x01, 0, 0], &[[1; 32]]);
    sha1[19] = 0x04;
    assert!(parse_pcr_read(&sha1).is_err());
    // A digest of the wrong size.
    let mut r = unhex("8001 00000000 00000000 00000007 00000001 000b 03 010000 00000001 0014");
    r.extend([0; 20]);
    assert!(parse_pcr_read(&resize(r)).is_err());
    let full = pcr_read_rsp(7, [0x03, 0, 0x04], &[[1; 32], [2; 32], [3; 32]]);
    for n in 10..full.len() {
        assert!(parse_pcr_read(&resize(full[..n].to_vec())).is_err(), "{n}");
    }
}

#[test]
fn test_parse_session_and_policy_responses() {
    let mut rsp = unhex("8001 00000000 00000000 03000000 0020");
    rsp.extend([9; 32]);
    let (h, nonce) = parse_start_auth_session(&resize(rsp.clone())).expect("parses");
    assert_eq!((h, nonce), (0x0300_0000, vec![9; 32]));
    // An HMAC session handle is not the policy session asked for.
    rsp[10] = 0x02;
    assert!(parse_start_auth_session(&resize(rsp)).is_err());

    let ok = unhex("8002 00000000 00000000 0000000a 0000 8023 40000007 0000 0000 01 0000");
    parse_policy_secret(&resize(ok.clone())).expect("parses");
    let mut bad_ticket = ok;
    bad_ticket[16] = 0x21;
    assert!(parse_policy_secret(&resize(bad_ticket)).is_err());

    let mut ac = unhex("8002 00000000 00000000 00000012 0010");
    ac.extend([5; 16]);
    ac.extend(unhex("0000 01 0000 0000 00 0000"));
    assert_eq!(
        parse_activate_credential(&resize(ac.clone())).expect("parses"),
        vec![5; 16]
    );
    // Only one authorization answered for the two sent.
    ac.truncate(ac.len() - 5);
    assert!(parse_activate_credential(&resize(ac)).is_err());
    assert_eq!(
        TPM_ST_SESSIONS.to_be_bytes(),
        [0x80, 0x02],
        "test vectors use these tags"
    );
    assert_eq!(TPM_ST_NO_SESSIONS.to_be_bytes(), [0x80, 0x01]);
}
