//! `x509` and `watch`: the X.509-SVID profile of the Workload API (SPIFFE Workload API
//! standard, section 5.2, `FetchX509SVID`; the SVID itself: X509-SVID standard, section 4).
//!
//! The leaf is read with `x509-cert` (serial, notAfter, public key), independently of the
//! `spiffe` crate's own parsing, and the private key the API sent is checked against the
//! leaf's public key: the zone agent keeps the key and must hand out the one it was issued for.

use std::io::Write;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use der::{Decode as _, Encode as _};
use futures_util::StreamExt as _;
use p256::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};
use spiffe::{WorkloadApiClient, X509Context, X509Svid};

use crate::client::Api;
use crate::error::ProbeError;

const RPC: &str = "FetchX509SVID";

/// `spiffe-probe x509`.
pub async fn fetch(api: &Api, out: &mut impl Write) -> Result<(), ProbeError> {
    let context = api
        .first_contact(|client: WorkloadApiClient| async move {
            client
                .fetch_x509_context()
                .await
                .map_err(|source| ProbeError::Api { rpc: RPC, source })
        })
        .await?;
    X509Report::from_context(&context)?.write_to(out)?;
    Ok(())
}

/// `spiffe-probe watch`.
pub async fn watch(
    api: &Api,
    wanted: u32,
    timeout: Duration,
    out: &mut impl Write,
) -> Result<(), ProbeError> {
    let (mut stream, first) = api
        .first_contact(|client: WorkloadApiClient| async move {
            let failed = |source| ProbeError::Api { rpc: RPC, source };
            let mut stream = client.stream_x509_contexts().await.map_err(failed)?;
            let first = match stream.next().await {
                Some(first) => first.map_err(failed)?,
                None => return Err(failed(spiffe::WorkloadApiError::EmptyResponse)),
            };
            Ok((stream, first))
        })
        .await?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut rotations = Rotations::new(wanted);
    let mut context = first;
    loop {
        let leaf = Leaf::parse(default_svid(&context)?.leaf().as_bytes())?;
        for line in rotations.observe(&leaf, unix_now()) {
            writeln!(out, "{line}")?;
        }
        if rotations.done() {
            return Ok(());
        }
        context = match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(next)) => next.map_err(|source| ProbeError::Api { rpc: RPC, source })?,
            Ok(None) => {
                return Err(ProbeError::StreamEnded {
                    seen: rotations.seen,
                    wanted,
                })
            }
            Err(_) => {
                return Err(ProbeError::WatchTimeout {
                    seen: rotations.seen,
                    wanted,
                    timeout,
                })
            }
        };
    }
}

fn default_svid(context: &X509Context) -> Result<&X509Svid, ProbeError> {
    context
        .default_svid()
        .map(AsRef::as_ref)
        .ok_or(ProbeError::NoSvid)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What the probe reads from a leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// Lower-case hex, without leading zero bytes.
    pub serial: String,
    /// notAfter, unix seconds.
    pub not_after: u64,
    /// SubjectPublicKeyInfo, DER.
    pub public_key: Vec<u8>,
}

impl Leaf {
    pub fn parse(der: &[u8]) -> Result<Self, ProbeError> {
        let cert = x509_cert::Certificate::from_der(der).map_err(ProbeError::Leaf)?;
        let tbs = &cert.tbs_certificate;
        Ok(Self {
            serial: serial_hex(tbs.serial_number.as_bytes()),
            not_after: tbs.validity.not_after.to_unix_duration().as_secs(),
            public_key: tbs
                .subject_public_key_info
                .to_der()
                .map_err(ProbeError::Leaf)?,
        })
    }

    /// Whether the PKCS#8 `private_key` is the private half of this leaf's public key.
    pub fn key_matches(&self, private_key: &[u8]) -> Result<bool, ProbeError> {
        let secret =
            p256::SecretKey::from_pkcs8_der(private_key).map_err(ProbeError::UnsupportedKey)?;
        Ok(p256::PublicKey::from_public_key_der(&self.public_key)
            .is_ok_and(|public| public == secret.public_key()))
    }
}

/// A DER INTEGER's content bytes as hex, without the sign-padding zero bytes.
fn serial_hex(bytes: &[u8]) -> String {
    let start = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    hex::encode(&bytes[start..])
}

/// What `spiffe-probe x509` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct X509Report {
    pub spiffe_id: String,
    /// DER certificates, leaf first.
    pub chain: Vec<Vec<u8>>,
    /// The SVID's trust domain's authorities, DER.
    pub bundle: Vec<Vec<u8>>,
    pub not_after: u64,
    pub key_matches_leaf: bool,
}

impl X509Report {
    pub fn from_context(context: &X509Context) -> Result<Self, ProbeError> {
        let svid = default_svid(context)?;
        let trust_domain = svid.spiffe_id().trust_domain();
        let bundle =
            context
                .bundle_set()
                .get(trust_domain)
                .ok_or_else(|| ProbeError::NoBundle {
                    trust_domain: trust_domain.to_string(),
                })?;
        let leaf = Leaf::parse(svid.leaf().as_bytes())?;
        Ok(Self {
            spiffe_id: svid.spiffe_id().to_string(),
            chain: svid
                .cert_chain()
                .iter()
                .map(|c| c.as_bytes().to_vec())
                .collect(),
            bundle: bundle
                .authorities()
                .iter()
                .map(|c| c.as_bytes().to_vec())
                .collect(),
            not_after: leaf.not_after,
            key_matches_leaf: leaf.key_matches(svid.private_key().as_bytes())?,
        })
    }

    pub fn write_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(out, "spiffe-id={}", self.spiffe_id)?;
        for cert in &self.chain {
            writeln!(out, "svid-cert={}", STANDARD.encode(cert))?;
        }
        for cert in &self.bundle {
            writeln!(out, "bundle-cert={}", STANDARD.encode(cert))?;
        }
        writeln!(out, "not-after={}", self.not_after)?;
        writeln!(out, "key-matches-leaf={}", yes_no(self.key_matches_leaf))?;
        out.flush()
    }
}

fn yes_no(value: bool) -> &'static str {
    if value {
        "yes"
    } else {
        "no"
    }
}

/// `watch`'s bookkeeping: which leaf was last seen and how many times it changed.
#[derive(Debug)]
struct Rotations {
    wanted: u32,
    seen: u32,
    /// The last leaf's serial and notAfter.
    last: Option<(String, u64)>,
}

impl Rotations {
    fn new(wanted: u32) -> Self {
        Self {
            wanted,
            seen: 0,
            last: None,
        }
    }

    /// The lines to print for `leaf` arriving at `received` (unix seconds): none when it is
    /// the leaf already seen.
    fn observe(&mut self, leaf: &Leaf, received: u64) -> Vec<String> {
        if self
            .last
            .as_ref()
            .is_some_and(|(serial, _)| *serial == leaf.serial)
        {
            return Vec::new();
        }
        let mut lines = vec![format!(
            "svid serial={} not-after={} received={received}",
            leaf.serial, leaf.not_after
        )];
        if let Some((_, previous_not_after)) = &self.last {
            self.seen += 1;
            lines.push(format!(
                "rotated-before-expiry={}",
                yes_no(received < *previous_not_after)
            ));
        }
        self.last = Some((leaf.serial.clone(), leaf.not_after));
        if self.done() {
            lines.push(format!("rotations={}", self.seen));
        }
        lines
    }

    fn done(&self) -> bool {
        self.last.is_some() && self.seen >= self.wanted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(serial: &str, not_after: u64) -> Leaf {
        Leaf {
            serial: serial.to_owned(),
            not_after,
            public_key: Vec::new(),
        }
    }

    #[test]
    fn test_x509_report_prints_keys_in_order_with_standard_base64() {
        let report = X509Report {
            spiffe_id: "spiffe://example.org/zone/web".to_owned(),
            chain: vec![vec![0xfb, 0xff], vec![1, 2, 3]],
            bundle: vec![vec![0xff; 4]],
            not_after: 1_700_000_000,
            key_matches_leaf: true,
        };
        let mut out = Vec::new();
        report.write_to(&mut out).expect("writes to a Vec");
        assert_eq!(
            String::from_utf8(out).expect("UTF-8"),
            "spiffe-id=spiffe://example.org/zone/web\n\
             svid-cert=+/8=\n\
             svid-cert=AQID\n\
             bundle-cert=/////w==\n\
             not-after=1700000000\n\
             key-matches-leaf=yes\n"
        );
    }

    #[test]
    fn test_x509_report_key_mismatch_prints_no() {
        let report = X509Report {
            spiffe_id: "spiffe://example.org/a".to_owned(),
            chain: vec![vec![0]],
            bundle: Vec::new(),
            not_after: 0,
            key_matches_leaf: false,
        };
        let mut out = Vec::new();
        report.write_to(&mut out).expect("writes to a Vec");
        assert!(String::from_utf8(out)
            .expect("UTF-8")
            .ends_with("not-after=0\nkey-matches-leaf=no\n"));
    }

    #[test]
    fn test_serial_hex_drops_sign_padding_only() {
        assert_eq!(serial_hex(&[0x00, 0x9a, 0x01]), "9a01");
        assert_eq!(serial_hex(&[0x7f, 0x00]), "7f00");
        assert_eq!(serial_hex(&[0x00]), "00");
    }

    #[test]
    fn test_leaf_parse_garbage_is_an_error() {
        assert!(matches!(
            Leaf::parse(b"not a certificate"),
            Err(ProbeError::Leaf(_))
        ));
    }

    #[test]
    fn test_rotations_first_svid_then_rotation_before_expiry() {
        let mut rotations = Rotations::new(1);
        assert_eq!(
            rotations.observe(&leaf("0a", 200), 100),
            ["svid serial=0a not-after=200 received=100"]
        );
        assert!(!rotations.done());
        assert!(rotations.observe(&leaf("0a", 200), 150).is_empty());
        assert_eq!(
            rotations.observe(&leaf("0b", 300), 180),
            [
                "svid serial=0b not-after=300 received=180",
                "rotated-before-expiry=yes",
                "rotations=1"
            ]
        );
        assert!(rotations.done());
    }

    #[test]
    fn test_rotations_after_expiry_says_no() {
        let mut rotations = Rotations::new(2);
        rotations.observe(&leaf("01", 200), 100);
        assert_eq!(
            rotations.observe(&leaf("02", 300), 200),
            [
                "svid serial=02 not-after=300 received=200",
                "rotated-before-expiry=no"
            ]
        );
        assert_eq!(
            rotations.observe(&leaf("03", 400), 250),
            [
                "svid serial=03 not-after=400 received=250",
                "rotated-before-expiry=yes",
                "rotations=2"
            ]
        );
    }

    #[test]
    fn test_rotations_zero_wanted_is_done_after_the_first_svid() {
        let mut rotations = Rotations::new(0);
        assert!(!rotations.done());
        assert_eq!(
            rotations.observe(&leaf("01", 200), 100),
            ["svid serial=01 not-after=200 received=100", "rotations=0"]
        );
        assert!(rotations.done());
    }
}
