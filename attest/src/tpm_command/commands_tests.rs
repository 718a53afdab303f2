//! Byte-exact encodings against tpm2-tools 5.4 (commands captured with
//! `TSS2_LOG=tcti+debug TPM2TOOLS_TCTI=swtpm:...` against swtpm 0.7.1) and strict parsing of the
//! responses swtpm answered.

use super::*;
use crate::tpm_command::templates::{ak_ecc_p256, ca_ecc_p256, ek_ecc_p256};
use crate::tpm_command::wire::{TPM_ST_NO_SESSIONS, TPM_ST_SESSIONS};

pub(crate) fn unhex(s: &str) -> Vec<u8> {
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

/// `tpm2_createprimary -C o -g sha256 -G ecc256:ecdsa-sha256
/// -a "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign" -u unique.dat`'s
/// `TPM2_CreatePrimary` parameters (after its HMAC session's authorization area).
const CREATE_CA_PARAMS: &str = "00040000000000280023000b00040072000000100018000b000300100010\
    7a6f6e65732d7a6f6e652d63612d76310000000000000000";

/// swtpm's answer to it: the zone CA key of that swtpm's owner hierarchy.
pub(crate) const CREATE_CA_RSP: &str =
    "80020000017800000000800000000000012100580023000b000400720000\
    00100018000b000300100020dc40af1656f0c0ee4dc92c540d697a861c4046941286f9a343e8fe43d6a5eba100\
    20ec425315eca1aee6aacec1b2a39da06c81d31534ddb1e631f18a858d638dfb300037000000000020e3b0c442\
    98fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855010010000440000001000440000001000000\
    205da041bac0ee3135aebb0cadfba497c6a1877fae832dd3d1f8f7a871b825e8548021400000010040631aeab5\
    3ced53b3efa6b84d5310ccf1247a15f1d9f77bc160d706360fcdc873145c24c0840e82873c629ac78912e9af66\
    9774f7723f90d04af5bf2e83392a110022000bd37e8d5335e433f67c8aa1387093dfd2944bd46f33dcff5b154e\
    a98b062d521200204c07652891e16a20900555d99dd019a0bd863ebaebcbcf559a6226bd786c2a0401002090fd\
    f248f6864a16574fcc965383bf1857473111882bb41ebd98f4b239739340";

/// SHA-256("zones").
const SIGNED_DIGEST: &str = "8c279b58e430cfbe2c032ed02222c60e243a210109aca37212503abf05bfb192";

/// `tpm2_sign -c ca.ctx -g sha256 -s ecdsa -d dig.bin`'s `TPM2_Sign` parameters (after its HMAC
/// session's authorization area): digest, inScheme ECDSA/SHA-256, the NULL hashcheck ticket.
const TOOLS_SIGN_PARAMS: &str = "00208c279b58e430cfbe2c032ed02222c60e243a210109aca37212503abf05\
    bfb1920018000b8024400000070000";

/// The key that `tpm2_sign` used: `tpm2_createprimary` with the same attributes and scheme but
/// an empty `unique` (tpm2-tools 5.4 failed to load `-u unique.dat` on most runs, so the
/// signing capture was made with this key), as `tpm2_readpublic -o` wrote it.
const SIGN_KEY_PUB: &str = "00580023000b00040072000000100018000b0003001000200b0a3f904259b0b8fa\
    d307823dbcc78d8f7d29e8c12d8873ecb7c1a53c95c7330020ada423056d617084628290b81289462642b53479\
    6c5b20ad0006792ef0440cea";

/// swtpm's answer to it, signed by [`SIGN_KEY_PUB`].
const SIGN_RSP: &str = "80020000009b00000000000000480018000b00200cc1f95e8543fd163f86ced58961a5\
    b0e9e93115d5428fa79a9c2c95195ad30000208c7fcaab1555d080a7832ab0bcce131974b36c5dea98ecd654b7\
    0b7df02d59dd0020b503da747cbfbdf8a758d5a508a0d2856c772508a3a5c983c8aa61f471c501a90100200\
    3e611c06969fa265c0588b18aacd99e7475c02e776cb08a76009ec82796abc1";

#[test]
fn test_create_primary_ca_key_parameters_equal_tpm2_createprimary() {
    let cmd = create_primary(TPM_RH_OWNER, &ca_ecc_p256()).expect("builds");
    let mut want = unhex("8002 00000000 00000131 40000001 00000009 40000009 0000 00 0000");
    want.extend(unhex(CREATE_CA_PARAMS));
    assert_eq!(hex::encode(&cmd), hex::encode(resize(want)));
}

#[test]
fn test_sign_parameters_equal_tpm2_sign() {
    let digest: [u8; 32] = unhex(SIGNED_DIGEST).try_into().expect("32 bytes");
    let cmd = sign(0x8000_0000, &digest);
    let mut want = unhex("8002 00000000 0000015d 80000000 00000009 40000009 0000 00 0000");
    want.extend(unhex(TOOLS_SIGN_PARAMS));
    assert_eq!(hex::encode(&cmd), hex::encode(resize(want)));
}

#[test]
fn test_parse_create_ca_key_and_sign_swtpm_responses() {
    use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
    let created = parse_create_primary(&unhex(CREATE_CA_RSP), &ca_ecc_p256()).expect("parses");
    assert_eq!(created.handle, 0x8000_0000);
    assert_eq!(
        created.public.attributes,
        crate::tpm_command::templates::CA_ATTRIBUTES
    );
    // Not the EK or AK template.
    assert!(parse_create_primary(&unhex(CREATE_CA_RSP), &ak_ecc_p256()).is_err());
    let signer = crate::tpm_types::TpmPublic::from_tpm2b(&unhex(SIGN_KEY_PUB)).expect("parses");
    // Same template but for the label.
    assert_eq!(signer.bytes[..20], created.public.bytes[..20]);
    let key = p256::ecdsa::VerifyingKey::from(signer.p256_public_key().expect("P-256"));
    let sig = parse_sign(&unhex(SIGN_RSP)).expect("parses");
    key.verify_prehash(&unhex(SIGNED_DIGEST), &sig)
        .expect("swtpm's signature verifies");
    let mut other = unhex(SIGNED_DIGEST);
    other[0] ^= 1;
    assert!(key.verify_prehash(&other, &sig).is_err());
}

#[test]
fn test_parse_sign_truncated_padded_and_garbage_refused() {
    let full = unhex(SIGN_RSP);
    for n in 0..full.len() {
        assert!(parse_sign(&full[..n]).is_err(), "{n}");
        if n >= 10 {
            assert!(parse_sign(&resize(full[..n].to_vec())).is_err(), "{n}");
        }
    }
    // A byte after the signature inside parameterSize.
    let mut long = full.clone();
    long[13] += 1; // parameterSize 0x48 -> 0x49
    long.insert(14 + 0x48, 0);
    assert!(parse_sign(&resize(long)).is_err());
    // Another scheme or hash.
    for (at, v) in [(15usize, 0x14u8), (17, 0x0c)] {
        let mut rsp = full.clone();
        rsp[at] = v;
        assert!(parse_sign(&rsp).is_err(), "byte {at}");
    }
    // r = 0 (a 1-byte zero) and r = n (not below the order) are not signatures.
    let sig = |r: &str, s: &str| {
        let body = format!("0018000b{:04x}{r}{:04x}{s}", r.len() / 2, s.len() / 2);
        let mut rsp = unhex("8002 00000000 00000000");
        rsp.extend((body.len() as u32 / 2).to_be_bytes());
        rsp.extend(unhex(&body));
        rsp.extend(unhex("0000 01 0000"));
        resize(rsp)
    };
    let n = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";
    assert!(parse_sign(&sig("00", "01")).is_err());
    assert!(parse_sign(&sig(n, "01")).is_err());
    assert!(parse_sign(&sig(&"01".repeat(33), "01")).is_err());
    assert!(parse_sign(&sig("", "01")).is_err());
    // Short (leading zeros dropped) r and s are padded.
    let short = parse_sign(&sig("01", "02")).expect("short scalars");
    let (r, s) = short.split_bytes();
    assert_eq!((r[31], s[31], r[0], s[0]), (1, 2, 0, 0));
    // A TPM error names the command.
    let e = parse_sign(&unhex("8001 0000000a 0000098e")).expect_err("rc");
    assert!(e.to_string().contains("TPM2_Sign"), "{e}");
}
