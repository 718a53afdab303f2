//! SPIFFE IDs as the SPIFFE-ID standard defines them: `spiffe://<trust domain>/<path>`.
//!
//! Checked strictly and without normalization (no percent-decoding, no case folding): two IDs
//! are the same workload only if their bytes are equal, so anything a comparison could read two
//! ways (`%2F`, `..`, an uppercase trust domain, a port) is refused instead of cleaned up.

use std::fmt;

/// The scheme and authority separator every SPIFFE ID starts with.
const PREFIX: &str = "spiffe://";
/// The standard's limit on a whole ID, in bytes.
const MAX_ID_LEN: usize = 2048;
/// The standard's limit on a trust domain name (a DNS-like name), in bytes.
const MAX_TRUST_DOMAIN_LEN: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    #[error("the SPIFFE ID is empty")]
    Empty,
    #[error("the SPIFFE ID is {0} bytes; at most {MAX_ID_LEN} are allowed")]
    TooLong(usize),
    #[error("{0:?} does not start with \"spiffe://\" (the scheme must be lowercase \"spiffe\")")]
    Scheme(String),
    #[error("the trust domain is empty")]
    TrustDomainEmpty,
    #[error("the trust domain is {0} bytes; at most {MAX_TRUST_DOMAIN_LEN} are allowed")]
    TrustDomainTooLong(usize),
    #[error(
        "the trust domain {domain:?} holds {ch:?}{hint}; only lowercase letters, digits, '.', '-' \
         and '_' are allowed"
    )]
    TrustDomainChar {
        domain: String,
        ch: char,
        hint: &'static str,
    },
    #[error(
        "{0:?} has no path; a workload's SPIFFE ID needs one (spiffe://<trust domain>/<path>)"
    )]
    NoPath(String),
    #[error("the path {0:?} does not start with '/'")]
    PathStart(String),
    #[error("the path {0:?} has an empty segment (a \"//\" or a trailing '/')")]
    EmptySegment(String),
    #[error("the path segment {0:?} is not allowed (\".\" and \"..\" are refused)")]
    DotSegment(String),
    #[error(
        "the path segment {segment:?} holds {ch:?}{hint}; only letters, digits, '.', '-' and '_' \
         are allowed"
    )]
    PathChar {
        segment: String,
        ch: char,
        hint: &'static str,
    },
}

/// Why a character people commonly try is not there, for the error message.
fn hint(ch: char) -> &'static str {
    match ch {
        '%' => " (percent-encoding is not allowed)",
        '?' => " (a query is not allowed)",
        '#' => " (a fragment is not allowed)",
        '@' => " (userinfo is not allowed)",
        ':' => " (a port is not allowed)",
        'A'..='Z' => " (uppercase is not allowed in a trust domain)",
        _ => "",
    }
}

/// A SPIFFE trust domain name, e.g. `example.org`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// "example.org" (no scheme): lowercase letters, digits, '.', '-', '_' only, 1..=255 bytes.
    pub fn parse(name: &str) -> Result<Self, SpiffeIdError> {
        if name.is_empty() {
            return Err(SpiffeIdError::TrustDomainEmpty);
        }
        if name.len() > MAX_TRUST_DOMAIN_LEN {
            return Err(SpiffeIdError::TrustDomainTooLong(name.len()));
        }
        let bad = name
            .chars()
            .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '-' | '_'));
        if let Some(ch) = bad {
            return Err(SpiffeIdError::TrustDomainChar {
                domain: name.to_string(),
                ch,
                hint: hint(ch),
            });
        }
        Ok(Self(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// "spiffe://<name>": the trust domain's own ID, the URI SAN of its signing certificates.
    pub fn id_uri(&self) -> String {
        format!("{PREFIX}{}", self.0)
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for TrustDomain {
    type Err = SpiffeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Checks one path segment: non-empty, not "." or "..", only `[A-Za-z0-9._-]`.
pub fn check_path_segment(segment: &str) -> Result<(), SpiffeIdError> {
    if segment.is_empty() {
        return Err(SpiffeIdError::EmptySegment(segment.to_string()));
    }
    if segment == "." || segment == ".." {
        return Err(SpiffeIdError::DotSegment(segment.to_string()));
    }
    let bad = segment
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_'));
    match bad {
        Some(ch) => Err(SpiffeIdError::PathChar {
            segment: segment.to_string(),
            ch,
            hint: hint(ch),
        }),
        None => Ok(()),
    }
}

/// Checks a non-root path: "/" followed by one or more valid segments.
pub fn check_path(path: &str) -> Result<(), SpiffeIdError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(SpiffeIdError::PathStart(path.to_string()));
    };
    for segment in rest.split('/') {
        match check_path_segment(segment) {
            Err(SpiffeIdError::EmptySegment(_)) => {
                return Err(SpiffeIdError::EmptySegment(path.to_string()))
            }
            other => other?,
        }
    }
    Ok(())
}

/// A workload's SPIFFE ID: a trust domain and a non-root path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    trust_domain: TrustDomain,
    path: String,
}

impl SpiffeId {
    /// "spiffe://td/path/segments": scheme lowercase "spiffe", no userinfo/port/query/fragment,
    /// path segments non-empty, not "." or "..", chars [A-Za-z0-9.-_]; whole ID <= 2048 bytes.
    /// A workload ID must have a path (non-root): parse() refuses an ID without a path.
    pub fn parse(uri: &str) -> Result<Self, SpiffeIdError> {
        if uri.is_empty() {
            return Err(SpiffeIdError::Empty);
        }
        if uri.len() > MAX_ID_LEN {
            return Err(SpiffeIdError::TooLong(uri.len()));
        }
        let Some(rest) = uri.strip_prefix(PREFIX) else {
            return Err(SpiffeIdError::Scheme(uri.to_string()));
        };
        let (domain, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let trust_domain = TrustDomain::parse(domain)?;
        if path.is_empty() {
            return Err(SpiffeIdError::NoPath(uri.to_string()));
        }
        check_path(path)?;
        Ok(Self {
            trust_domain,
            path: path.to_string(),
        })
    }

    /// trust domain + path ("/a/b", must start with '/'), same checks.
    pub fn new(trust_domain: &TrustDomain, path: &str) -> Result<Self, SpiffeIdError> {
        check_path(path)?;
        let len = PREFIX.len() + trust_domain.as_str().len() + path.len();
        if len > MAX_ID_LEN {
            return Err(SpiffeIdError::TooLong(len));
        }
        Ok(Self {
            trust_domain: trust_domain.clone(),
            path: path.to_string(),
        })
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The path, starting with '/'.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether this ID belongs to `trust_domain`.
    pub fn is_member_of(&self, trust_domain: &TrustDomain) -> bool {
        &self.trust_domain == trust_domain
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}{}", self.trust_domain.0, self.path)
    }
}

impl std::str::FromStr for SpiffeId {
    type Err = SpiffeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_spiffe_id_good_ids_keep_their_parts() {
        let id = SpiffeId::parse("spiffe://zones.test/zone/web-1").expect("valid");
        assert_eq!(id.trust_domain().as_str(), "zones.test");
        assert_eq!(id.path(), "/zone/web-1");
        assert_eq!(id.to_string(), "spiffe://zones.test/zone/web-1");
        let odd = "spiffe://a-b_c.9/Zone.X/_/-/a.b/...";
        assert_eq!(SpiffeId::parse(odd).expect("valid").to_string(), odd);
        let td = TrustDomain::parse("example.org").expect("td");
        assert_eq!(td.id_uri(), "spiffe://example.org");
        let made = SpiffeId::new(&td, "/ns/prod/sa/api").expect("new");
        assert_eq!(made.to_string(), "spiffe://example.org/ns/prod/sa/api");
        assert_eq!(
            SpiffeId::parse(&made.to_string()).expect("round trip"),
            made
        );
        assert!(made.is_member_of(&td));
        assert!(!made.is_member_of(&TrustDomain::parse("example.com").expect("td")));
    }

    #[test]
    fn test_spiffe_id_bad_ids_are_refused_naming_the_problem() {
        use SpiffeIdError as E;
        let err = |s: &str| SpiffeId::parse(s).expect_err(s);
        assert_eq!(err(""), E::Empty);
        assert!(matches!(err("SPIFFE://zones.test/a"), E::Scheme(_)));
        assert!(matches!(err("Spiffe://zones.test/a"), E::Scheme(_)));
        assert!(matches!(err("https://zones.test/a"), E::Scheme(_)));
        assert!(matches!(err("spiffe:/zones.test/a"), E::Scheme(_)));
        let upper = err("spiffe://Zones.test/a");
        assert!(
            matches!(upper, E::TrustDomainChar { ch: 'Z', .. }),
            "{upper}"
        );
        assert!(upper.to_string().contains("uppercase"), "{upper}");
        let port = err("spiffe://zones.test:8443/a");
        assert!(matches!(port, E::TrustDomainChar { ch: ':', .. }), "{port}");
        assert!(port.to_string().contains("port"), "{port}");
        let user = err("spiffe://user@zones.test/a");
        assert!(matches!(user, E::TrustDomainChar { ch: '@', .. }), "{user}");
        assert_eq!(err("spiffe:///a"), E::TrustDomainEmpty);
        assert!(matches!(err("spiffe://zones.test"), E::NoPath(_)));
        assert!(matches!(err("spiffe://zones.test/"), E::EmptySegment(_)));
        assert!(matches!(
            err("spiffe://zones.test/a//b"),
            E::EmptySegment(_)
        ));
        assert!(matches!(err("spiffe://zones.test/a/"), E::EmptySegment(_)));
        assert_eq!(
            err("spiffe://zones.test/a/../b"),
            E::DotSegment("..".into())
        );
        assert_eq!(err("spiffe://zones.test/./b"), E::DotSegment(".".into()));
        let pct = err("spiffe://zones.test/a%2Fb");
        assert!(
            matches!(pct, E::PathChar { ch: '%', ref segment, .. } if segment == "a%2Fb"),
            "{pct}"
        );
        assert!(pct.to_string().contains("percent-encoding"), "{pct}");
        let query = err("spiffe://zones.test/a?b=c");
        assert!(matches!(query, E::PathChar { ch: '?', .. }), "{query}");
        assert!(query.to_string().contains("query"), "{query}");
        let frag = err("spiffe://zones.test/a#b");
        assert!(matches!(frag, E::PathChar { ch: '#', .. }), "{frag}");
        assert!(frag.to_string().contains("fragment"), "{frag}");
        assert!(matches!(
            err("spiffe://zones.test?x"),
            E::TrustDomainChar { ch: '?', .. }
        ));
        assert!(matches!(
            err("spiffe://zones.test/é"),
            E::PathChar { ch: 'é', .. }
        ));
        assert!(matches!(
            err("spiffe://zones.test/a b"),
            E::PathChar { ch: ' ', .. }
        ));
    }

    #[test]
    fn test_spiffe_id_length_limits() {
        let prefix = "spiffe://zones.test/";
        let at_limit = format!("{prefix}{}", "a".repeat(MAX_ID_LEN - prefix.len()));
        assert_eq!(at_limit.len(), 2048);
        SpiffeId::parse(&at_limit).expect("2048 bytes is allowed");
        let over = format!("{at_limit}b");
        assert_eq!(SpiffeId::parse(&over), Err(SpiffeIdError::TooLong(2049)));
        let td = TrustDomain::parse("zones.test").expect("td");
        let long_path = format!("/{}", "a".repeat(MAX_ID_LEN));
        assert!(matches!(
            SpiffeId::new(&td, &long_path),
            Err(SpiffeIdError::TooLong(_))
        ));
        assert_eq!(
            TrustDomain::parse(&"a".repeat(256)),
            Err(SpiffeIdError::TrustDomainTooLong(256))
        );
        TrustDomain::parse(&"a".repeat(255)).expect("255 bytes is allowed");
    }

    #[test]
    fn test_trust_domain_and_new_refuse_bad_parts() {
        assert_eq!(TrustDomain::parse(""), Err(SpiffeIdError::TrustDomainEmpty));
        for bad in [
            "spiffe://zones.test",
            "Zones.test",
            "zones.test:80",
            "a/b",
            "a b",
        ] {
            assert!(TrustDomain::parse(bad).is_err(), "{bad}");
        }
        let td = TrustDomain::parse("zones.test").expect("td");
        assert_eq!(
            SpiffeId::new(&td, "a/b"),
            Err(SpiffeIdError::PathStart("a/b".into()))
        );
        assert!(matches!(
            SpiffeId::new(&td, "/"),
            Err(SpiffeIdError::EmptySegment(_))
        ));
        assert!(matches!(
            SpiffeId::new(&td, ""),
            Err(SpiffeIdError::PathStart(_))
        ));
        assert!(matches!(
            SpiffeId::new(&td, "/a/.."),
            Err(SpiffeIdError::DotSegment(_))
        ));
        assert!(check_path_segment("sha256:ab").is_err());
        check_path_segment("web-1.prod_A").expect("valid segment");
    }
}
