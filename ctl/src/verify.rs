//! `zonectl verify FILE --nonce HEX --ca CERT --reference REF`: checks evidence from
//! `zonectl attest` (certificate chain to a trusted zone CA, credential activation, quote
//! signature and nonce, event log replay against the quoted PCRs, reference values), prints a
//! verdict a person can read, and can write an EAT Attestation Result (EAR, a JWT signed
//! ES256). Exits 0 when the zone is affirmed, 1 when it is not.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use anyhow::Context;
use zone_attest::ear;
use zone_attest::evidence::Evidence;
use zone_attest::reference::ReferenceValues;
use zone_attest::verify::{verify, Policy};
use zone_attest::zone_ca::{read_certificate, FileCaSigner};

use crate::attest::parse_nonce;

/// The verifier's EAR signing key unless --verifier-key says otherwise.
const DEFAULT_VERIFIER_KEY: &str = "/var/lib/zones/verifier/ear-key.pem";
/// Names the policy in the EAR: these checks against one reference file.
const POLICY_ID: &str = "zones/reference-values/v1";

/// Verify attestation evidence against a trusted zone CA and reference values.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  zonectl reference busybox -o ref.json\n  \
                        zonectl verify web.evidence.json --nonce <the nonce given to attest> \
                        --ca /var/lib/zones/ca/zone-ca-cert.pem --reference ref.json \
                        --ear web.ear.jwt")]
pub struct VerifyArgs {
    /// Evidence from `zonectl attest`.
    #[arg(value_name = "FILE")]
    pub evidence: PathBuf,
    /// The nonce you gave `zonectl attest` (hex): evidence for any other is a replay.
    #[arg(long, value_name = "HEX")]
    pub nonce: String,
    /// A zone CA certificate you trust (PEM or DER; repeatable).
    #[arg(long = "ca", value_name = "CERT", required = true)]
    pub cas: Vec<PathBuf>,
    /// Reference values (from `zonectl reference`).
    #[arg(long, value_name = "FILE")]
    pub reference: PathBuf,
    /// Write the EAT Attestation Result (JWT, ES256) here.
    #[arg(long, value_name = "FILE")]
    pub ear: Option<PathBuf>,
    /// The verifier's EAR signing key (P-256, PKCS#8 PEM; created if missing).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_VERIFIER_KEY)]
    pub verifier_key: PathBuf,
}

pub fn run(args: VerifyArgs) -> anyhow::Result<i32> {
    let started = Instant::now();
    let nonce = parse_nonce(&args.nonce)?;
    let bytes =
        fs::read(&args.evidence).with_context(|| format!("reading {}", args.evidence.display()))?;
    let evidence = Evidence::from_json(&bytes)
        .with_context(|| format!("{} is not zone evidence", args.evidence.display()))?;
    let reference_bytes = fs::read(&args.reference)
        .with_context(|| format!("reading {}", args.reference.display()))?;
    let reference = ReferenceValues::from_json(&reference_bytes)
        .with_context(|| format!("{} is not a reference file", args.reference.display()))?;
    let cas = args
        .cas
        .iter()
        .map(|path| read_certificate(path).with_context(|| format!("reading {}", path.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let now = SystemTime::now();
    let policy = Policy {
        trusted_cas: &cas,
        reference: &reference,
        expected_nonce: &nonce,
        now,
    };
    let result = verify(&evidence, &policy);
    let verified_in = started.elapsed();
    // The exit status carries the verdict; a reader that went away (`| head -1`) is fine.
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{}", ear::summary(&result));
    if let Some(path) = &args.ear {
        if let Some(dir) = args.verifier_key.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        let key = FileCaSigner::load_or_create(&args.verifier_key)
            .with_context(|| format!("the verifier key {}", args.verifier_key.display()))?;
        let result = ear::appraise(&result, &nonce, POLICY_ID, now);
        fs::write(path, ear::sign_jwt(&result, key.signing_key()))
            .with_context(|| format!("writing {}", path.display()))?;
        let _ = writeln!(out, "EAR written to {}", path.display());
    }
    tracing::info!(ms = verified_in.as_secs_f64() * 1e3, "verified");
    Ok(if result.is_ok() { 0 } else { 1 })
}
