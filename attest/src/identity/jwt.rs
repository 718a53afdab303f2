//! JWT-SVIDs (the SPIFFE JWT-SVID standard): JWS compact tokens signed ES256, and JWT bundles as
//! JWK Sets. Built on `p256` and `serde_json` like [`crate::ear`]; ES256 is the only algorithm
//! accepted, so no key-type confusion between a bundle's keys and a token's header is possible.
//!
//! Tokens and bundles are untrusted input: sizes are bounded, every field is type-checked, and
//! nothing panics.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use super::spiffe_id::{SpiffeId, SpiffeIdError};

/// Largest token [`validate_jwt_svid`] reads.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Largest JWT bundle [`validate_jwt_svid`] reads.
pub const MAX_BUNDLE_LEN: usize = 1024 * 1024;
/// The JWK `use` of JWT-SVID signing keys in a SPIFFE bundle.
pub const JWK_USE: &str = "jwt-svid";

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JwtError {
    #[error("the token is {0} bytes; tokens over {MAX_TOKEN_LEN} bytes are refused")]
    TooLarge(usize),
    #[error("not a JWS compact token: {0} part(s) separated by '.', 3 expected")]
    Parts(usize),
    #[error("the token's {0} is not unpadded base64url")]
    Base64(&'static str),
    #[error("the token's {0} is not a JSON object: {1}")]
    Json(&'static str, String),
    #[error("the token header has no alg")]
    MissingAlg,
    #[error("alg {0} is refused: JWT-SVIDs are accepted with ES256 only")]
    Algorithm(String),
    #[error("the token header lists critical extensions (crit), which are not supported")]
    Crit,
    #[error("typ {0} is refused: a JWT-SVID's typ is \"JWT\" or \"JOSE\" when present")]
    Typ(String),
    #[error("the token header has no kid (a string naming the signing key)")]
    MissingKid,
    #[error("kid {0:?} is not in the JWT bundle")]
    UnknownKid(String),
    #[error("the JWT bundle is {0} bytes; bundles over {MAX_BUNDLE_LEN} bytes are refused")]
    BundleTooLarge(usize),
    #[error("the JWT bundle is not a JWK Set: {0}")]
    Bundle(String),
    #[error("the JWT bundle's key {kid:?}: {reason}")]
    BundleKey { kid: String, reason: String },
    #[error("the signature is {0} bytes; ES256 needs 64 (r||s)")]
    SignatureLength(usize),
    #[error("the signature does not verify with key {0:?} of the JWT bundle")]
    Signature(String),
    #[error("the token has no {0} claim")]
    MissingClaim(&'static str),
    #[error("the {0} claim is not {1}")]
    ClaimType(&'static str, &'static str),
    #[error("the token expired at {exp} (now {now}; seconds since the epoch)")]
    Expired { exp: f64, now: f64 },
    #[error("the token is not valid before {nbf} (now {now}; seconds since the epoch)")]
    NotYetValid { nbf: f64, now: f64 },
    #[error("audience {audience:?} is not among {aud:?}")]
    Audience { audience: String, aud: Vec<String> },
    #[error("sub {0:?} is not a SPIFFE ID: {1}")]
    Subject(String, SpiffeIdError),
}

/// A JWT-SVID's claims.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JwtSvidClaims {
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: u64,
    pub iat: u64,
}

/// A stable key id for `key`: base64url of the first 16 bytes of SHA-256 of its SPKI DER.
pub fn key_id(key: &p256::ecdsa::VerifyingKey) -> String {
    use p256::pkcs8::EncodePublicKey as _;
    // Encoding a valid P-256 point cannot fail; an empty input still gives a stable id.
    let spki = key
        .to_public_key_der()
        .map(|d| d.into_vec())
        .unwrap_or_default();
    URL_SAFE_NO_PAD.encode(&Sha256::digest(&spki)[..16])
}

/// Signs claims as a JWS compact ES256 token with header {"alg":"ES256","kid":kid,"typ":"JWT"}.
pub fn sign_es256(claims: &JwtSvidClaims, kid: &str, key: &p256::ecdsa::SigningKey) -> String {
    use signature::Signer as _;
    // Built as `Value`s, whose Display cannot fail, rather than serialized fallibly.
    let header = serde_json::json!({ "alg": "ES256", "kid": kid, "typ": "JWT" });
    let payload = serde_json::json!({
        "sub": claims.sub,
        "aud": claims.aud,
        "exp": claims.exp,
        "iat": claims.iat,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string())
    );
    let sig: p256::ecdsa::Signature = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
}

/// A JWK Set JSON document with one EC P-256 public key per entry:
/// {"keys":[{"kty":"EC","crv":"P-256","x":b64url,"y":b64url,"kid":kid,"use":"jwt-svid"}]}
pub fn jwk_set(keys: &[(String, p256::ecdsa::VerifyingKey)]) -> String {
    use p256::elliptic_curve::sec1::Coordinates;
    let entries: Vec<Value> = keys
        .iter()
        .filter_map(|(kid, key)| {
            let point = key.to_encoded_point(false);
            // A verifying key is never the identity, so it always has both coordinates.
            let Coordinates::Uncompressed { x, y } = point.coordinates() else {
                return None;
            };
            Some(serde_json::json!({
                "kty": "EC",
                "crv": "P-256",
                "x": URL_SAFE_NO_PAD.encode(x),
                "y": URL_SAFE_NO_PAD.encode(y),
                "kid": kid,
                "use": JWK_USE,
            }))
        })
        .collect();
    serde_json::json!({ "keys": entries }).to_string()
}

/// Decodes one base64url part of the token into a JSON object.
fn json_part(part: &str, what: &'static str) -> Result<Map<String, Value>, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Base64(what))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(JwtError::Json(what, "not an object".into())),
        Err(e) => Err(JwtError::Json(what, e.to_string())),
    }
}

/// The key `kid` names in the JWK Set `jwks_json`. Only that entry is interpreted: a bundle may
/// hold keys of other types for other kids (SPIRE bundles can), which this validator never uses.
fn bundle_key(jwks_json: &[u8], kid: &str) -> Result<p256::ecdsa::VerifyingKey, JwtError> {
    if jwks_json.len() > MAX_BUNDLE_LEN {
        return Err(JwtError::BundleTooLarge(jwks_json.len()));
    }
    let set: Value =
        serde_json::from_slice(jwks_json).map_err(|e| JwtError::Bundle(e.to_string()))?;
    let Some(keys) = set.get("keys").and_then(Value::as_array) else {
        return Err(JwtError::Bundle("no \"keys\" array".into()));
    };
    let mut named = keys
        .iter()
        .filter(|k| k.get("kid").and_then(Value::as_str) == Some(kid));
    let Some(jwk) = named.next() else {
        return Err(JwtError::UnknownKid(kid.to_string()));
    };
    let bad = |reason: String| JwtError::BundleKey {
        kid: kid.to_string(),
        reason,
    };
    if named.next().is_some() {
        return Err(bad("more than one key has this kid".into()));
    }
    let field = |name: &str| jwk.get(name).and_then(Value::as_str);
    if field("kty") != Some("EC") {
        return Err(bad(format!("kty is {}, not \"EC\"", shown(jwk.get("kty")))));
    }
    if field("crv") != Some("P-256") {
        return Err(bad(format!(
            "crv is {}, not \"P-256\"",
            shown(jwk.get("crv"))
        )));
    }
    if let Some(u) = jwk.get("use") {
        if u.as_str() != Some(JWK_USE) {
            return Err(bad(format!("use is {}, not \"{JWK_USE}\"", shown(Some(u)))));
        }
    }
    let coordinate = |name: &'static str| -> Result<[u8; 32], JwtError> {
        let text = field(name).ok_or_else(|| bad(format!("{name} is missing or not a string")))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| bad(format!("{name} is not unpadded base64url")))?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| bad(format!("{name} is {} bytes, not 32", bytes.len())))
    };
    let (x, y) = (coordinate("x")?, coordinate("y")?);
    let point = p256::EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
    p256::ecdsa::VerifyingKey::from_encoded_point(&point)
        .map_err(|_| bad("x, y is not a point on P-256".into()))
}

/// A JSON value for an error message, bounded so a hostile bundle cannot flood logs.
fn shown(v: Option<&Value>) -> String {
    let mut s = v.map_or_else(|| "missing".to_string(), Value::to_string);
    if s.len() > 64 {
        let mut end = 64;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// A NumericDate claim (RFC 7519: seconds since the epoch, possibly fractional).
fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<f64>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => match v.as_f64() {
            Some(t) if t.is_finite() && t >= 0.0 => Ok(Some(t)),
            _ => Err(JwtError::ClaimType(name, "a non-negative number")),
        },
    }
}

/// Validates a JWT-SVID per the JWT-SVID standard: three base64url parts; header alg must be
/// ES256 (refuse "none" and anything else), kid must name a key of the JWK Set (`jwks_json`,
/// parse it defensively: bad JSON, wrong kty/crv, bad coordinates are errors); the signature
/// (64-byte r||s) verifies; `exp` present and > now; `aud` (string or array) contains `audience`;
/// `sub` is a SPIFFE ID (SpiffeId::parse). Returns the SPIFFE ID and all claims as a JSON map.
///
/// Also refused: a `crit` header, a `typ` other than "JWT"/"JOSE", an `nbf` after `now`. Whether
/// `sub`'s trust domain is the one `jwks_json` belongs to is the caller's check.
pub fn validate_jwt_svid(
    token: &str,
    jwks_json: &[u8],
    audience: &str,
    now: SystemTime,
) -> Result<(SpiffeId, Map<String, Value>), JwtError> {
    use signature::Verifier as _;
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::TooLarge(token.len()));
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [h, c, s] = parts.as_slice() else {
        return Err(JwtError::Parts(parts.len()));
    };
    let header = json_part(h, "header")?;
    match header.get("alg") {
        None => return Err(JwtError::MissingAlg),
        Some(Value::String(alg)) if alg == "ES256" => {}
        Some(other) => return Err(JwtError::Algorithm(shown(Some(other)))),
    }
    if header.contains_key("crit") {
        return Err(JwtError::Crit);
    }
    match header.get("typ") {
        None => {}
        Some(Value::String(t)) if t == "JWT" || t == "JOSE" => {}
        Some(other) => return Err(JwtError::Typ(shown(Some(other)))),
    }
    let Some(Value::String(kid)) = header.get("kid") else {
        return Err(JwtError::MissingKid);
    };
    let key = bundle_key(jwks_json, kid)?;
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| JwtError::Base64("signature"))?;
    if sig.len() != 64 {
        return Err(JwtError::SignatureLength(sig.len()));
    }
    let sig =
        p256::ecdsa::Signature::from_slice(&sig).map_err(|_| JwtError::Signature(kid.clone()))?;
    key.verify(format!("{h}.{c}").as_bytes(), &sig)
        .map_err(|_| JwtError::Signature(kid.clone()))?;

    let claims = json_part(c, "payload")?;
    let now_secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let exp = numeric_date(&claims, "exp")?.ok_or(JwtError::MissingClaim("exp"))?;
    if exp <= now_secs {
        return Err(JwtError::Expired { exp, now: now_secs });
    }
    if let Some(nbf) = numeric_date(&claims, "nbf")? {
        if nbf > now_secs {
            return Err(JwtError::NotYetValid { nbf, now: now_secs });
        }
    }
    let aud: Vec<String> = match claims.get("aud") {
        None => return Err(JwtError::MissingClaim("aud")),
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .map(|a| a.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or(JwtError::ClaimType(
                "aud",
                "a string or an array of strings",
            ))?,
        Some(_) => {
            return Err(JwtError::ClaimType(
                "aud",
                "a string or an array of strings",
            ))
        }
    };
    if !aud.iter().any(|a| a == audience) {
        return Err(JwtError::Audience {
            audience: audience.to_string(),
            aud,
        });
    }
    let sub = match claims.get("sub") {
        None => return Err(JwtError::MissingClaim("sub")),
        Some(Value::String(sub)) => sub,
        Some(_) => return Err(JwtError::ClaimType("sub", "a string")),
    };
    let id = SpiffeId::parse(sub).map_err(|e| JwtError::Subject(sub.clone(), e))?;
    Ok((id, claims))
}

#[cfg(test)]
mod tests;
