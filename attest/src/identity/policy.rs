//! The registration policy: which attested zones get an identity, and which SPIFFE ID. The
//! operator writes it as JSON; zonectl applies it to the facts a verification established.
//!
//! The ID is rendered only from verified facts and the host's own records (see [`Facts`]), and
//! only for a zone whose measured kernel (and initrd, if it has one) the policy trusts: a zone
//! cannot talk its way into another zone's identity.

use std::time::Duration;

use super::spiffe_id::{check_path, check_path_segment, SpiffeId, TrustDomain};

pub const POLICY_FORMAT: &str = "zones-identity-policy/v1";
/// Largest policy file [`IdentityPolicy::from_json`] reads.
const MAX_POLICY_LEN: usize = 1024 * 1024;
const X509_TTL_RANGE: std::ops::RangeInclusive<u64> = 10..=604_800;
const JWT_TTL_RANGE: std::ops::RangeInclusive<u64> = 10..=86_400;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("the policy is {0} bytes; at most {MAX_POLICY_LEN} are read")]
    TooLarge(usize),
    #[error("the policy is not a valid {POLICY_FORMAT} JSON document: {0}")]
    Json(String),
    #[error("{field}: {reason}")]
    Field { field: String, reason: String },
}

fn field_error(field: impl Into<String>, reason: impl Into<String>) -> PolicyError {
    PolicyError::Field {
        field: field.into(),
        reason: reason.into(),
    }
}

fn default_x509_ttl() -> u64 {
    3600
}

fn default_jwt_ttl() -> u64 {
    300
}

/// The registration policy, a JSON file the operator writes, e.g.
/// {"format":"zones-identity-policy/v1","trust_domain":"zones.test",
///  "path_template":"/zone/{zone_name}","x509_svid_ttl_seconds":3600,"jwt_svid_ttl_seconds":300,
///  "trusted_kernels":["sha256:<64 hex>"],"trusted_initrds":["sha256:<64 hex>"]}
///
/// A zone with an initrd needs that initrd listed in `trusted_initrds`; a zone without one
/// needs nothing there. A template without placeholders gives every admitted zone the same ID.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityPolicy {
    pub format: String,
    pub trust_domain: String,
    pub path_template: String,
    /// Allowed 10..=604800 (a week).
    #[serde(default = "default_x509_ttl")]
    pub x509_svid_ttl_seconds: u64,
    /// Allowed 10..=86400 (a day).
    #[serde(default = "default_jwt_ttl")]
    pub jwt_svid_ttl_seconds: u64,
    /// Non-empty, each "sha256:" + 64 lowercase hex.
    pub trusted_kernels: Vec<String>,
    /// Same form; may be empty.
    #[serde(default)]
    pub trusted_initrds: Vec<String>,
}

/// A value the path template can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placeholder {
    ZoneId,
    ZoneName,
    HostId,
    ImageDigest,
    PodNamespace,
    ServiceAccount,
}

impl Placeholder {
    const ALL: [Placeholder; 6] = [
        Self::ZoneId,
        Self::ZoneName,
        Self::HostId,
        Self::ImageDigest,
        Self::PodNamespace,
        Self::ServiceAccount,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::ZoneId => "zone_id",
            Self::ZoneName => "zone_name",
            Self::HostId => "host_id",
            Self::ImageDigest => "image_digest",
            Self::PodNamespace => "pod_namespace",
            Self::ServiceAccount => "service_account",
        }
    }

    /// The value from `facts`, or why there is none usable.
    fn value(self, facts: &Facts) -> Result<String, String> {
        let known = |v: Option<&String>| {
            v.filter(|s| !s.is_empty()).cloned().ok_or_else(|| {
                format!(
                    "the path template needs {{{}}}, which is not known for this zone",
                    self.name()
                )
            })
        };
        let value = match self {
            Self::ZoneId => known(Some(&facts.zone_id))?,
            Self::ZoneName => known(facts.zone_name.as_ref())?,
            Self::HostId => known(Some(&facts.host_id))?,
            Self::PodNamespace => known(facts.pod_namespace.as_ref())?,
            Self::ServiceAccount => known(facts.service_account.as_ref())?,
            // ':' is not allowed in a SPIFFE path, so only the hex digits go in.
            Self::ImageDigest => {
                let digest = known(facts.image_digest.as_ref())?;
                check_digest(&digest)
                    .map(|hex| hex.to_string())
                    .map_err(|e| format!("{{image_digest}}: the image digest {e}"))?
            }
        };
        check_path_segment(&value).map_err(|e| {
            format!(
                "{{{}}} is {value:?}, which is not allowed in a SPIFFE ID path segment: {e}",
                self.name()
            )
        })?;
        Ok(value)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Value(Placeholder),
}

/// Splits a path template into literal text and placeholders, refusing anything that could not
/// render to a valid SPIFFE path (checked with a stand-in value for every placeholder).
fn parse_template(template: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        let open = rest.find('{');
        let close = rest.find('}');
        match (open, close) {
            (None, None) => {
                parts.push(Part::Literal(rest.to_string()));
                rest = "";
            }
            (Some(o), Some(c)) if o < c => {
                if o > 0 {
                    parts.push(Part::Literal(rest[..o].to_string()));
                }
                let name = &rest[o + 1..c];
                if name.contains('{') {
                    return Err(format!("unbalanced '{{' before {{{name}}}"));
                }
                let placeholder = Placeholder::ALL
                    .into_iter()
                    .find(|p| p.name() == name)
                    .ok_or_else(|| {
                        let known: Vec<String> = Placeholder::ALL
                            .iter()
                            .map(|p| format!("{{{}}}", p.name()))
                            .collect();
                        format!(
                            "unknown placeholder {{{name}}} (known: {})",
                            known.join(" ")
                        )
                    })?;
                parts.push(Part::Value(placeholder));
                rest = &rest[c + 1..];
            }
            (Some(_), None) => return Err("a '{' is never closed".into()),
            (_, Some(_)) => return Err("a '}' has no matching '{'".into()),
        }
    }
    for part in &parts {
        if let Part::Literal(text) = part {
            let bad = text
                .chars()
                .find(|c| !matches!(c, 'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' | '/'));
            if let Some(ch) = bad {
                return Err(format!(
                    "{ch:?} is not allowed in a SPIFFE ID path (letters, digits, '.', '-', '_', '/')"
                ));
            }
        }
    }
    let sample = render(&parts, |_| Ok("x".to_string())).map_err(|e| e.join("; "))?;
    check_path(&sample).map_err(|e| format!("does not render to a valid SPIFFE ID path: {e}"))?;
    Ok(parts)
}

/// Renders the parts, with every placeholder's value or every reason one is missing.
fn render(
    parts: &[Part],
    value: impl Fn(Placeholder) -> Result<String, String>,
) -> Result<String, Vec<String>> {
    let mut path = String::new();
    let mut reasons = Vec::new();
    for part in parts {
        match part {
            Part::Literal(text) => path.push_str(text),
            Part::Value(p) => match value(*p) {
                Ok(v) => path.push_str(&v),
                Err(reason) => {
                    if !reasons.contains(&reason) {
                        reasons.push(reason);
                    }
                }
            },
        }
    }
    if reasons.is_empty() {
        Ok(path)
    } else {
        Err(reasons)
    }
}

/// The 64 hex digits of a "sha256:<64 lowercase hex>" digest.
fn check_digest(digest: &str) -> Result<&str, String> {
    match digest.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            Ok(hex)
        }
        _ => Err(format!(
            "{digest:?} is not \"sha256:\" followed by 64 lowercase hex digits"
        )),
    }
}

impl IdentityPolicy {
    /// Parses and checks everything (format tag, trust domain, template, TTL ranges, digests);
    /// an error names the field ("trusted_kernels[1]: ...").
    pub fn from_json(bytes: &[u8]) -> Result<Self, PolicyError> {
        if bytes.len() > MAX_POLICY_LEN {
            return Err(PolicyError::TooLarge(bytes.len()));
        }
        let policy: Self =
            serde_json::from_slice(bytes).map_err(|e| PolicyError::Json(e.to_string()))?;
        policy.check()?;
        Ok(policy)
    }

    /// The checks [`IdentityPolicy::from_json`] makes, for a policy built in code.
    pub fn check(&self) -> Result<(), PolicyError> {
        if self.format != POLICY_FORMAT {
            return Err(field_error(
                "format",
                format!("{:?} is not {POLICY_FORMAT:?}", self.format),
            ));
        }
        TrustDomain::parse(&self.trust_domain)
            .map_err(|e| field_error("trust_domain", e.to_string()))?;
        parse_template(&self.path_template).map_err(|e| field_error("path_template", e))?;
        for (field, value, range) in [
            (
                "x509_svid_ttl_seconds",
                self.x509_svid_ttl_seconds,
                X509_TTL_RANGE,
            ),
            (
                "jwt_svid_ttl_seconds",
                self.jwt_svid_ttl_seconds,
                JWT_TTL_RANGE,
            ),
        ] {
            if !range.contains(&value) {
                return Err(field_error(
                    field,
                    format!(
                        "{value} is outside {}..={} seconds",
                        range.start(),
                        range.end()
                    ),
                ));
            }
        }
        if self.trusted_kernels.is_empty() {
            return Err(field_error(
                "trusted_kernels",
                "is empty; no zone could be admitted",
            ));
        }
        for (list, digests) in [
            ("trusted_kernels", &self.trusted_kernels),
            ("trusted_initrds", &self.trusted_initrds),
        ] {
            for (i, d) in digests.iter().enumerate() {
                check_digest(d).map_err(|e| field_error(format!("{list}[{i}]"), e))?;
            }
        }
        Ok(())
    }

    /// Pretty JSON, as [`IdentityPolicy::from_json`] reads it.
    pub fn to_json(&self) -> String {
        // Strings, numbers and lists of strings always serialize.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The trust domain. Infallible for a policy from [`IdentityPolicy::from_json`] (or one that
    /// passed [`IdentityPolicy::check`]).
    ///
    /// # Panics
    /// If `trust_domain` was set to an invalid name without checking: a programming error, and
    /// handing out a made-up trust domain instead would be worse.
    pub fn trust_domain(&self) -> TrustDomain {
        match TrustDomain::parse(&self.trust_domain) {
            Ok(td) => td,
            Err(e) => panic!("an unchecked IdentityPolicy: trust_domain: {e}"),
        }
    }

    pub fn x509_svid_ttl(&self) -> Duration {
        Duration::from_secs(self.x509_svid_ttl_seconds)
    }

    pub fn jwt_svid_ttl(&self) -> Duration {
        Duration::from_secs(self.jwt_svid_ttl_seconds)
    }

    /// Decides: the SPIFFE ID for a zone with these verified facts, or every reason it is refused
    /// (kernel not trusted: "kernel sha256:.. is not one of the policy's trusted_kernels";
    /// initrd likewise; a template placeholder with no known value: "the path template needs
    /// {pod_namespace}, which is not known for this zone"; a value not allowed in a SPIFFE path
    /// segment). Never puts into the ID anything not in `facts`.
    pub fn admit(&self, facts: &Facts) -> Result<SpiffeId, Vec<String>> {
        // Fields are public: a policy changed after from_json is checked again, not trusted.
        self.check()
            .map_err(|e| vec![format!("the policy is invalid: {e}")])?;
        let mut reasons = Vec::new();
        if facts.kernel.is_empty() {
            reasons.push("the zone's kernel was not measured".to_string());
        } else if !self.trusted_kernels.contains(&facts.kernel) {
            reasons.push(format!(
                "kernel {} is not one of the policy's trusted_kernels",
                facts.kernel
            ));
        }
        if let Some(initrd) = facts.initrd.as_ref().filter(|d| !d.is_empty()) {
            if !self.trusted_initrds.contains(initrd) {
                reasons.push(format!(
                    "initrd {initrd} is not one of the policy's trusted_initrds"
                ));
            }
        }
        let parts = parse_template(&self.path_template)
            .map_err(|e| vec![format!("the policy is invalid: path_template: {e}")])?;
        match render(&parts, |p| p.value(facts)) {
            Ok(path) if reasons.is_empty() => {
                SpiffeId::new(&self.trust_domain(), &path).map_err(|e| vec![e.to_string()])
            }
            Ok(_) => Err(reasons),
            Err(missing) => {
                reasons.extend(missing);
                Err(reasons)
            }
        }
    }
}

/// Template placeholders: {zone_id} {zone_name} {host_id} {image_digest} {pod_namespace} {service_account}.
/// {image_digest} renders as the 64 hex digits of the image manifest digest (no "sha256:" prefix, ':' is not
/// allowed in SPIFFE paths). A template's literal parts must themselves be valid SPIFFE path text; an unknown
/// placeholder or an unbalanced brace is a PolicyError at from_json time. Each placeholder value must be a
/// valid path segment text on its own ([A-Za-z0-9.-_], non-empty, not "." or "..").
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Facts {
    pub zone_id: String,
    pub zone_name: Option<String>,
    pub host_id: String,
    /// "sha256:<hex>", measured.
    pub kernel: String,
    /// Measured.
    pub initrd: Option<String>,
    /// "sha256:<hex>" from the verified PCR 15 claim, None/empty for no image.
    pub image_digest: Option<String>,
    pub pod_namespace: Option<String>,
    pub service_account: Option<String>,
}

impl Facts {
    /// The facts a verification established (crate::verify::Verified): zone_id, host_id,
    /// kernel = components["kernel"], initrd = components.get("initrd"), image_digest =
    /// claims.get("image-manifest-digest") when non-empty. zone_name is the host's own record for
    /// that verified zone id (never the guest's word); pod fields are None.
    pub fn from_verified(verified: &crate::verify::Verified, zone_name: Option<&str>) -> Self {
        Self {
            zone_id: verified.zone_id.clone(),
            zone_name: zone_name.map(str::to_string),
            host_id: verified.host_id.clone(),
            kernel: verified
                .components
                .get("kernel")
                .cloned()
                .unwrap_or_default(),
            initrd: verified.components.get("initrd").cloned(),
            image_digest: verified
                .claims
                .get("image-manifest-digest")
                .filter(|d| !d.is_empty())
                .cloned(),
            pod_namespace: None,
            service_account: None,
        }
    }
}

#[cfg(test)]
mod tests;
