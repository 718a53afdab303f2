use std::time::Duration;

use super::*;

const NOW: u64 = 1_800_000_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

struct Fixture {
    key: p256::ecdsa::SigningKey,
    kid: String,
    bundle: String,
}

fn fixture() -> Fixture {
    let key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let kid = key_id(key.verifying_key());
    let bundle = jwk_set(&[(kid.clone(), *key.verifying_key())]);
    Fixture { key, kid, bundle }
}

fn claims() -> JwtSvidClaims {
    JwtSvidClaims {
        sub: "spiffe://zones.test/zone/web".into(),
        aud: vec!["db".into(), "cache".into()],
        exp: NOW + 300,
        iat: NOW,
    }
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// A token with any header and payload, signed correctly with `key`.
fn signed(header: &Value, payload: &Value, key: &p256::ecdsa::SigningKey) -> String {
    use signature::Signer as _;
    let input = format!("{}.{}", b64(header), b64(payload));
    let sig: p256::ecdsa::Signature = key.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
}

fn es256(kid: &str) -> Value {
    serde_json::json!({ "alg": "ES256", "kid": kid, "typ": "JWT" })
}

fn payload() -> Value {
    serde_json::to_value(claims()).expect("claims")
}

#[test]
fn test_jwt_round_trip_returns_id_and_claims() {
    let f = fixture();
    let token = sign_es256(&claims(), &f.kid, &f.key);
    let (id, map) = validate_jwt_svid(&token, f.bundle.as_bytes(), "cache", now()).expect("valid");
    assert_eq!(id.to_string(), "spiffe://zones.test/zone/web");
    assert_eq!(Value::Object(map.clone()), payload());
    let back: JwtSvidClaims = serde_json::from_value(Value::Object(map)).expect("claims");
    assert_eq!(back, claims());
    let header = json_part(token.split('.').next().expect("header"), "header").expect("json");
    assert_eq!(Value::Object(header), es256(&f.kid));
    // One second before exp is still valid; exp itself is not.
    let edge = UNIX_EPOCH + Duration::from_secs(NOW + 299);
    validate_jwt_svid(&token, f.bundle.as_bytes(), "db", edge).expect("valid until exp");
    let at_exp = UNIX_EPOCH + Duration::from_secs(NOW + 300);
    let e = validate_jwt_svid(&token, f.bundle.as_bytes(), "db", at_exp).expect_err("at exp");
    assert!(
        e.to_string().starts_with("the token expired at 1800000300"),
        "{e}"
    );
}

#[test]
fn test_jwt_bundle_has_the_expected_shape_and_several_keys_work() {
    let f = fixture();
    let other = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let bundle = jwk_set(&[
        ("old".to_string(), *other.verifying_key()),
        (f.kid.clone(), *f.key.verifying_key()),
    ]);
    let set: Value = serde_json::from_str(&bundle).expect("json");
    let keys = set["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[1]["kty"], "EC");
    assert_eq!(keys[1]["crv"], "P-256");
    assert_eq!(keys[1]["use"], "jwt-svid");
    assert_eq!(keys[1]["kid"], f.kid.as_str());
    let x = URL_SAFE_NO_PAD
        .decode(keys[1]["x"].as_str().expect("x"))
        .expect("b64");
    assert_eq!(x.len(), 32);
    assert_eq!(f.kid.len(), 22, "16 bytes base64url");
    let token = sign_es256(&claims(), &f.kid, &f.key);
    validate_jwt_svid(&token, bundle.as_bytes(), "db", now()).expect("second key");
    let by_old = sign_es256(&claims(), "old", &other);
    validate_jwt_svid(&by_old, bundle.as_bytes(), "db", now()).expect("first key");
    // The right kid but another key's signature.
    let mislabeled = sign_es256(&claims(), &f.kid, &other);
    assert_eq!(
        validate_jwt_svid(&mislabeled, bundle.as_bytes(), "db", now()),
        Err(JwtError::Signature(f.kid.clone()))
    );
}

#[test]
fn test_jwt_refuses_other_algorithms() {
    let f = fixture();
    let good = sign_es256(&claims(), &f.kid, &f.key);
    let parts: Vec<&str> = good.split('.').collect();
    for alg in ["none", "HS256", "RS256", "ES384", "es256"] {
        let header = serde_json::json!({ "alg": alg, "kid": f.kid });
        // Unsigned ("none" style) and with the ES256 signature kept.
        for sig in ["", parts[2]] {
            let token = format!("{}.{}.{sig}", b64(&header), parts[1]);
            let e = validate_jwt_svid(&token, f.bundle.as_bytes(), "db", now()).expect_err(alg);
            assert_eq!(e, JwtError::Algorithm(format!("\"{alg}\"")), "{alg}");
            assert!(e.to_string().contains(alg), "{e}");
        }
    }
    let no_alg = serde_json::json!({ "kid": f.kid });
    let token = signed(&no_alg, &payload(), &f.key);
    assert_eq!(
        validate_jwt_svid(&token, f.bundle.as_bytes(), "db", now()),
        Err(JwtError::MissingAlg)
    );
    let numeric = serde_json::json!({ "alg": 7, "kid": f.kid });
    let token = signed(&numeric, &payload(), &f.key);
    assert_eq!(
        validate_jwt_svid(&token, f.bundle.as_bytes(), "db", now()),
        Err(JwtError::Algorithm("7".into()))
    );
}

#[test]
fn test_jwt_refuses_bad_headers() {
    let f = fixture();
    let check = |header: Value, want: JwtError| {
        let token = signed(&header, &payload(), &f.key);
        assert_eq!(
            validate_jwt_svid(&token, f.bundle.as_bytes(), "db", now()),
            Err(want),
            "{header}"
        );
    };
    check(
        serde_json::json!({ "alg": "ES256", "kid": "nope" }),
        JwtError::UnknownKid("nope".into()),
    );
    check(serde_json::json!({ "alg": "ES256" }), JwtError::MissingKid);
    check(
        serde_json::json!({ "alg": "ES256", "kid": 5 }),
        JwtError::MissingKid,
    );
    check(
        serde_json::json!({ "alg": "ES256", "kid": f.kid, "crit": ["b64"], "b64": false }),
        JwtError::Crit,
    );
    check(
        serde_json::json!({ "alg": "ES256", "kid": f.kid, "typ": "at+jwt" }),
        JwtError::Typ("\"at+jwt\"".into()),
    );
    let jose = serde_json::json!({ "alg": "ES256", "kid": f.kid, "typ": "JOSE" });
    let token = signed(&jose, &payload(), &f.key);
    validate_jwt_svid(&token, f.bundle.as_bytes(), "db", now()).expect("typ JOSE");
    let e = JwtError::UnknownKid("k".into());
    assert_eq!(e.to_string(), "kid \"k\" is not in the JWT bundle");
}

#[test]
fn test_jwt_refuses_tampering() {
    let f = fixture();
    let token = sign_es256(&claims(), &f.kid, &f.key);
    let parts: Vec<&str> = token.split('.').collect();
    let mut forged = payload();
    forged["sub"] = "spiffe://zones.test/zone/admin".into();
    let swapped = format!("{}.{}.{}", parts[0], b64(&forged), parts[2]);
    assert_eq!(
        validate_jwt_svid(&swapped, f.bundle.as_bytes(), "db", now()),
        Err(JwtError::Signature(f.kid.clone()))
    );
    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).expect("sig");
    sig[10] ^= 1;
    let flipped = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(&sig));
    assert_eq!(
        validate_jwt_svid(&flipped, f.bundle.as_bytes(), "db", now()),
        Err(JwtError::Signature(f.kid.clone()))
    );
    // A DER signature (what some libraries emit) is not a JWS ES256 signature.
    let der = p256::ecdsa::Signature::from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).expect("sig"))
        .expect("sig")
        .to_der();
    let der_token = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        URL_SAFE_NO_PAD.encode(der.as_bytes())
    );
    assert!(matches!(
        validate_jwt_svid(&der_token, f.bundle.as_bytes(), "db", now()),
        Err(JwtError::SignatureLength(70..=72))
    ));
    // An all-zero r||s is not a signature at all.
    let zero = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        URL_SAFE_NO_PAD.encode([0u8; 64])
    );
    assert_eq!(
        validate_jwt_svid(&zero, f.bundle.as_bytes(), "db", now()),
        Err(JwtError::Signature(f.kid.clone()))
    );
}

#[test]
fn test_jwt_refuses_bad_claims() {
    let f = fixture();
    let check = |payload: Value| -> JwtError {
        let token = signed(&es256(&f.kid), &payload, &f.key);
        validate_jwt_svid(&token, f.bundle.as_bytes(), "db", now()).expect_err("refused")
    };
    let mut expired = payload();
    expired["exp"] = (NOW - 1).into();
    let e = check(expired);
    assert!(matches!(e, JwtError::Expired { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "the token expired at 1799999999 (now 1800000000; seconds since the epoch)"
    );
    let mut no_exp = payload();
    no_exp.as_object_mut().expect("obj").remove("exp");
    assert_eq!(check(no_exp), JwtError::MissingClaim("exp"));
    let mut text_exp = payload();
    text_exp["exp"] = "tomorrow".into();
    assert!(matches!(check(text_exp), JwtError::ClaimType("exp", _)));
    let mut future = payload();
    future["nbf"] = (NOW + 60).into();
    assert!(matches!(check(future), JwtError::NotYetValid { .. }));

    // Control: the same payload with a valid exp is accepted.
    let token = signed(&es256(&f.kid), &payload(), &f.key);
    validate_jwt_svid(&token, f.bundle.as_bytes(), "db", now()).expect("control");
}

#[test]
fn test_jwt_audience_and_subject() {
    let f = fixture();
    let token = sign_es256(&claims(), &f.kid, &f.key);
    let e = validate_jwt_svid(&token, f.bundle.as_bytes(), "x", now()).expect_err("aud");
    assert_eq!(
        e.to_string(),
        r#"audience "x" is not among ["db", "cache"]"#
    );
    let run = |payload: Value, audience: &str| {
        let token = signed(&es256(&f.kid), &payload, &f.key);
        validate_jwt_svid(&token, f.bundle.as_bytes(), audience, now())
    };
    let mut single = payload();
    single["aud"] = "db".into();
    let (_, map) = run(single.clone(), "db").expect("aud as a string");
    assert_eq!(map["aud"], "db");
    assert!(matches!(
        run(single, "cache"),
        Err(JwtError::Audience { .. })
    ));
    let mut none = payload();
    none.as_object_mut().expect("obj").remove("aud");
    assert_eq!(run(none, "db"), Err(JwtError::MissingClaim("aud")));
    let mut numbers = payload();
    numbers["aud"] = serde_json::json!(["db", 3]);
    assert!(matches!(
        run(numbers, "db"),
        Err(JwtError::ClaimType("aud", _))
    ));
    let mut empty = payload();
    empty["aud"] = serde_json::json!([]);
    assert!(matches!(run(empty, "db"), Err(JwtError::Audience { .. })));

    for bad in [
        "web",
        "https://zones.test/zone/web",
        "spiffe://zones.test",
        "",
    ] {
        let mut p = payload();
        p["sub"] = bad.into();
        let e = run(p, "db").expect_err(bad);
        assert!(matches!(e, JwtError::Subject(ref s, _) if s == bad), "{e}");
    }
    let mut no_sub = payload();
    no_sub.as_object_mut().expect("obj").remove("sub");
    assert_eq!(run(no_sub, "db"), Err(JwtError::MissingClaim("sub")));
}

#[test]
fn test_jwt_garbage_and_oversized_tokens() {
    let f = fixture();
    let bundle = f.bundle.as_bytes();
    let run = |t: &str| validate_jwt_svid(t, bundle, "db", now());
    assert_eq!(run(""), Err(JwtError::Parts(1)));
    assert_eq!(run("a.b"), Err(JwtError::Parts(2)));
    assert_eq!(run("a.b.c.d.e"), Err(JwtError::Parts(5)));
    assert_eq!(run("!!.b.c"), Err(JwtError::Base64("header")));
    assert_eq!(
        run("eyJhbGciOiJFUzI1NiJ9=.b.c"),
        Err(JwtError::Base64("header"))
    );
    assert!(matches!(run("YWJj.b.c"), Err(JwtError::Json("header", _))));
    let array = URL_SAFE_NO_PAD.encode("[1]");
    assert!(matches!(
        run(&format!("{array}.b.c")),
        Err(JwtError::Json("header", _))
    ));
    let token = sign_es256(&claims(), &f.kid, &f.key);
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(
        run(&format!("{}.{}.%%", parts[0], parts[1])),
        Err(JwtError::Base64("signature"))
    );
    let huge = format!("{}.{}.{}", parts[0], "A".repeat(MAX_TOKEN_LEN), parts[2]);
    assert_eq!(run(&huge), Err(JwtError::TooLarge(huge.len())));
    // A payload that is signed but not JSON.
    let not_json = {
        use signature::Signer as _;
        let input = format!("{}.{}", parts[0], URL_SAFE_NO_PAD.encode("not json"));
        let sig: p256::ecdsa::Signature = f.key.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
    };
    assert!(matches!(run(&not_json), Err(JwtError::Json("payload", _))));
    // Arbitrary bytes never panic.
    let mut seed = 7u32;
    for len in 0..300 {
        let s: String = (0..len)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                b"eyJ.-_AZaz09{}\"\\"[(seed >> 16) as usize % 16] as char
            })
            .collect();
        assert!(run(&s).is_err());
    }
}

#[test]
fn test_jwt_malformed_bundles_are_errors() {
    let f = fixture();
    let token = sign_es256(&claims(), &f.kid, &f.key);
    let run = |bundle: &str| validate_jwt_svid(&token, bundle.as_bytes(), "db", now());
    assert!(matches!(run("not json"), Err(JwtError::Bundle(_))));
    assert!(matches!(run("{}"), Err(JwtError::Bundle(_))));
    assert!(matches!(run(r#"{"keys":{}}"#), Err(JwtError::Bundle(_))));
    assert_eq!(
        run(r#"{"keys":[]}"#),
        Err(JwtError::UnknownKid(f.kid.clone()))
    );
    let good: Value = serde_json::from_str(&f.bundle).expect("json");
    let jwk = good["keys"][0].clone();
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut k = jwk.clone();
        edit(&mut k);
        serde_json::json!({ "keys": [k] }).to_string()
    };
    let reason = |bundle: String| match run(&bundle) {
        Err(JwtError::BundleKey { kid, reason }) => {
            assert_eq!(kid, f.kid);
            reason
        }
        other => panic!("{other:?} for {bundle}"),
    };
    assert!(reason(with(&|k| k["kty"] = "RSA".into())).contains("kty is \"RSA\""));
    assert!(reason(with(&|k| k["crv"] = "P-384".into())).contains("crv is \"P-384\""));
    assert!(reason(with(&|k| k["use"] = "x509-svid".into())).contains("use is"));
    assert!(reason(with(&|k| {
        k.as_object_mut().expect("obj").remove("x");
    }))
    .contains("x is missing"));
    assert!(reason(with(&|k| k["y"] = "***".into())).contains("y is not unpadded base64url"));
    let short = URL_SAFE_NO_PAD.encode([1u8; 31]);
    assert!(reason(with(&|k| k["x"] = short.clone().into())).contains("31 bytes"));
    let off_curve = URL_SAFE_NO_PAD.encode([1u8; 32]);
    assert!(reason(with(&|k| k["y"] = off_curve.clone().into())).contains("not a point"));
    let twice = serde_json::json!({ "keys": [jwk, jwk] }).to_string();
    assert!(reason(twice).contains("more than one"));
    // An RSA key under another kid is left alone.
    let mixed = serde_json::json!({ "keys": [{"kty": "RSA", "kid": "rsa-1", "n": "AQAB", "e": "AQAB"}, jwk] });
    run(&mixed.to_string()).expect("other kids are not interpreted");
    let big = format!("{{\"keys\":[],\"pad\":\"{}\"}}", "a".repeat(MAX_BUNDLE_LEN));
    assert!(matches!(run(&big), Err(JwtError::BundleTooLarge(_))));
}
