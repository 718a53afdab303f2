//! Attestation results as an EAR (EAT Attestation Result, the format Veraison and CoCo Trustee
//! emit; draft-fv-rats-ear): a JWT (RFC 7519) signed ES256 by the verifier's P-256 key.
//!
//! Claims: `eat_profile` = `tag:github.com,2023:veraison/ear`, `iat`, `ear.verifier-id`
//! {`build`, `developer`}, `eat_nonce` (base64url of the verifier's nonce), and one submodule
//! `zone` with `ear.status` (`affirming` or `contraindicated`), `ear.trustworthiness-vector`
//! (AR4SI claims, values as in veraison/ear `trustclaim.go`), `ear.appraisal-policy-id` and
//! `ear.veraison.annotated-evidence` (what was verified, or the failures).
//!
//! Trustworthiness vector mapping:
//! - `instance-identity`: 2 when the EK/AK chain to a trusted zone CA, activation and the zone id
//!   check out; 97 (unrecognized instance) when a certificate check failed; 99 (cryptographic
//!   validation failed) when the quote, nonce, PCR digest or log failed.
//! - `executables`: 3 (approved boot) when kernel, initrd, VMM version and image digest equal
//!   the reference; 96 (contraindicated) otherwise.
//! - `configuration`: 2 (approved) when command line, zone config and OCI config equal the
//!   reference; 96 (unsupportable) otherwise.
//! - `hardware` is left out: nothing attests the host yet (the zone CA key is a file).
//!
//! Built by hand on `p256` and `serde_json`: the `ear` crate (0.6) pulls in OpenSSL and
//! `jsonwebtoken`, outside the crypto crates zone-attest may use.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::verify::{Check, Failure, Verified};

pub const EAT_PROFILE: &str = "tag:github.com,2023:veraison/ear";
pub const SUBMOD: &str = "zone";
/// Largest token [`verify_jwt`] reads.
const MAX_JWT: usize = 256 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EarError {
    #[error("not a compact JWS (three base64url parts)")]
    Format,
    #[error("JOSE header: alg must be ES256")]
    Algorithm,
    #[error("signature does not verify with the verifier key")]
    Signature,
    #[error("claims: {0}")]
    Claims(String),
    #[error("eat_profile is not {EAT_PROFILE}")]
    Profile,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    None,
    Affirming,
    Warning,
    Contraindicated,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TrustVector {
    #[serde(
        rename = "instance-identity",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub instance_identity: Option<i8>,
    #[serde(
        rename = "configuration",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub configuration: Option<i8>,
    #[serde(
        rename = "executables",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub executables: Option<i8>,
    #[serde(rename = "hardware", skip_serializing_if = "Option::is_none", default)]
    pub hardware: Option<i8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Appraisal {
    #[serde(rename = "ear.status")]
    pub status: Status,
    #[serde(rename = "ear.trustworthiness-vector")]
    pub trust_vector: TrustVector,
    #[serde(
        rename = "ear.appraisal-policy-id",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub policy_id: Option<String>,
    #[serde(
        rename = "ear.veraison.annotated-evidence",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub annotated_evidence: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifierId {
    pub build: String,
    pub developer: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ear {
    pub eat_profile: String,
    pub iat: u64,
    #[serde(rename = "ear.verifier-id")]
    pub verifier_id: VerifierId,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub eat_nonce: Option<String>,
    pub submods: BTreeMap<String, Appraisal>,
}

fn is_crypto(check: Check) -> bool {
    matches!(
        check,
        Check::Evidence | Check::QuoteSignature | Check::Nonce | Check::PcrDigest | Check::EventLog
    )
}

fn is_config(component: &str) -> bool {
    matches!(component, "cmdline" | "zone-config" | "oci-config-digest")
}

/// The EAR for a verification result.
pub fn appraise(
    result: &Result<Verified, Vec<Failure>>,
    nonce: &[u8],
    policy_id: &str,
    now: SystemTime,
) -> Ear {
    let appraisal = match result {
        Ok(v) => Appraisal {
            status: Status::Affirming,
            trust_vector: TrustVector {
                instance_identity: Some(2),
                configuration: Some(2),
                executables: Some(3),
                hardware: None,
            },
            policy_id: Some(policy_id.to_string()),
            annotated_evidence: serde_json::to_value(v).ok(),
        },
        Err(failures) => {
            let mut tv = TrustVector::default();
            for f in failures {
                match (f.check, f.component.as_deref()) {
                    (c, _) if is_crypto(c) => tv.instance_identity = Some(99),
                    (Check::Reference | Check::Manifest, Some(c)) if is_config(c) => {
                        tv.configuration = Some(96)
                    }
                    (Check::Reference | Check::Manifest, _) => tv.executables = Some(96),
                    _ => {
                        if tv.instance_identity != Some(99) {
                            tv.instance_identity = Some(97)
                        }
                    }
                }
            }
            Appraisal {
                status: Status::Contraindicated,
                trust_vector: tv,
                policy_id: Some(policy_id.to_string()),
                annotated_evidence: Some(serde_json::json!({ "failures": failures })),
            }
        }
    };
    Ear {
        eat_profile: EAT_PROFILE.to_string(),
        iat: now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        verifier_id: VerifierId {
            build: format!("zone-attest {}", env!("CARGO_PKG_VERSION")),
            developer: "zones".to_string(),
        },
        eat_nonce: (!nonce.is_empty()).then(|| URL_SAFE_NO_PAD.encode(nonce)),
        submods: BTreeMap::from([(SUBMOD.to_string(), appraisal)]),
    }
}

/// The EAR as a compact JWT signed ES256.
pub fn sign_jwt(ear: &Ear, key: &p256::ecdsa::SigningKey) -> String {
    use signature::Signer as _;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(ear).expect("an EAR always serializes"));
    let signing_input = format!("{header}.{claims}");
    let sig: p256::ecdsa::Signature = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
}

/// Checks a JWT's ES256 signature with `key` and returns its EAR.
pub fn verify_jwt(jwt: &str, key: &p256::ecdsa::VerifyingKey) -> Result<Ear, EarError> {
    use signature::Verifier as _;
    if jwt.len() > MAX_JWT {
        return Err(EarError::Format);
    }
    let mut parts = jwt.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(EarError::Format);
    };
    let header: serde_json::Value = URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(EarError::Format)?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("ES256") {
        return Err(EarError::Algorithm);
    }
    let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| EarError::Format)?;
    let sig = p256::ecdsa::Signature::from_slice(&sig).map_err(|_| EarError::Signature)?;
    key.verify(format!("{h}.{c}").as_bytes(), &sig)
        .map_err(|_| EarError::Signature)?;
    let claims = URL_SAFE_NO_PAD.decode(c).map_err(|_| EarError::Format)?;
    let ear: Ear = serde_json::from_slice(&claims).map_err(|e| EarError::Claims(e.to_string()))?;
    if ear.eat_profile != EAT_PROFILE {
        return Err(EarError::Profile);
    }
    Ok(ear)
}

/// A few lines for people: the verdict and, if refused, each failure.
pub fn summary(result: &Result<Verified, Vec<Failure>>) -> String {
    match result {
        Ok(v) => {
            let mut s = format!("AFFIRMING: zone {} on host {}\n", v.zone_id, v.host_id);
            for (k, d) in v.components.iter().chain(v.claims.iter()) {
                s.push_str(&format!("  {k}: {d}\n"));
            }
            s
        }
        Err(f) => {
            let mut s = format!("CONTRAINDICATED: {} check(s) failed\n", f.len());
            for x in f {
                s.push_str(&format!("  {x}\n"));
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failures() -> Vec<Failure> {
        vec![Failure {
            check: Check::Reference,
            component: Some("kernel".into()),
            detail: "measured sha256:aa, reference sha256:bb".into(),
        }]
    }

    #[test]
    fn test_ear_jwt_verifies_with_the_verifier_key() {
        let key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let ear = appraise(&Err(failures()), &[1, 2, 3], "zones/ref", SystemTime::now());
        let jwt = sign_jwt(&ear, &key);
        let back = verify_jwt(&jwt, key.verifying_key()).expect("verifies");
        assert_eq!(back, ear);
        let zone = &back.submods[SUBMOD];
        assert_eq!(zone.status, Status::Contraindicated);
        assert_eq!(zone.trust_vector.executables, Some(96));
        let json = serde_json::to_string(&back).expect("json");
        assert!(json.contains(r#""ear.status":"contraindicated""#), "{json}");
        assert!(json.contains(r#""eat_profile":"tag:github.com,2023:veraison/ear""#));
    }

    #[test]
    fn test_ear_tampered_or_foreign_jwt_is_refused() {
        let key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let ear = appraise(&Err(failures()), &[], "p", SystemTime::now());
        let jwt = sign_jwt(&ear, &key);
        // Claims swapped for an affirming result, old signature kept.
        let mut forged = ear.clone();
        forged.submods.get_mut(SUBMOD).expect("zone").status = Status::Affirming;
        let forged_claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).expect("json"));
        let parts: Vec<&str> = jwt.split('.').collect();
        let tampered = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
        assert_eq!(
            verify_jwt(&tampered, key.verifying_key()),
            Err(EarError::Signature)
        );
        let other = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        assert_eq!(
            verify_jwt(&jwt, other.verifying_key()),
            Err(EarError::Signature)
        );
        let none_alg = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            parts[1],
            parts[2]
        );
        assert_eq!(
            verify_jwt(&none_alg, key.verifying_key()),
            Err(EarError::Algorithm)
        );
        assert_eq!(
            verify_jwt("a.b", key.verifying_key()),
            Err(EarError::Format)
        );
    }
}
