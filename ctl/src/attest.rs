//! `zonectl attest ZONE --nonce HEX -o FILE`: evidence that a running zone is what it claims.
//!
//! The host's zone CA certifies the zone vTPM's EK as the VMM read it before the zone ran
//! (never as the zone reports it), seals a credential to that EK and the zone's AK, and
//! certifies the AK once the zone's TPM has opened it; the zone then quotes its PCRs over the
//! verifier's nonce. The bundle holds the quote, the PCRs, the boot event log, the EK and AK
//! certificates, the CA certificate and the zone's manifest; `zonectl verify` checks it.

use std::fs;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use zone_attest::protocol;
use zone_attest::tpm_types::TpmPublic;
use zone_attest::zone_ca::KEY_FILE;
use zone_identity::config::DEFAULT_CA_DIR;
use zone_identity::host_tpm::{self, HostTpmSpec};
use zone_identity::remote_attester::RemoteAttester;

use crate::agent_client;
use crate::boot_facts;
use crate::cli::ZoneRef;
use crate::exec::BOOT_PATIENCE;
use crate::zone_dir::ZoneDir;
use crate::zone_state;

/// Most bytes of qualifying data a TPM quote carries.
const MAX_NONCE: usize = 64;

/// Produce attestation evidence for a running zone.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  zonectl run -d --name web busybox sleep 1000\n  \
                        zonectl attest web --nonce $(head -c 32 /dev/urandom | xxd -p -c 64) \
                        -o web.evidence.json\n  \
                        zonectl verify web.evidence.json --nonce ... \
                        --ca /var/lib/zones/ca/zone-ca-cert.pem --reference ref.json"
)]
pub struct AttestArgs {
    #[command(flatten)]
    pub zone: ZoneRef,
    /// The verifier's challenge: 1 to 64 bytes, in hex. Use a fresh one every time.
    #[arg(long, value_name = "HEX")]
    pub nonce: String,
    /// Where to write the evidence (JSON).
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: PathBuf,
    /// The host's zone CA (key and certificate; created on first use).
    #[arg(long, value_name = "DIR", env = "ZONES_CA_DIR", default_value = DEFAULT_CA_DIR)]
    pub ca_dir: PathBuf,
    /// Where the zone CA's key lives: device:PATH, swtpm:unix:PATH, swtpm:tcp:HOST:PORT or
    /// file. Default: device:/dev/tpmrm0 if it exists, else file (a key file in --ca-dir).
    #[arg(long, value_name = "SPEC", env = "ZONES_HOST_TPM")]
    pub host_tpm: Option<HostTpmSpec>,
}

pub fn run(args: AttestArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let nonce = parse_nonce(&args.nonce)?;
    let state = zone_state::find(&args.zone.state_root, &args.zone.zone)?;
    if !state.is_active() {
        bail!("zone {} is not running ({})", state.id, state.status_text());
    }
    let Some(boot) = state.boot.as_ref().filter(|boot| boot.tpm) else {
        bail!(
            "zone {} has no vTPM (started with --no-tpm, or by an older zonectl): it cannot be \
             attested",
            state.id
        );
    };
    let zone = ZoneDir::open(&args.zone.state_root, &state.id);
    // Once the agent answers, the VMM has written the EK: it does so before the zone runs.
    let runtime = agent_client::runtime()?;
    let client = runtime
        .block_on(agent_client::connect_retrying(
            &zone.vsock_socket(),
            BOOT_PATIENCE,
        ))
        .with_context(|| format!("cannot reach the agent of zone {}", state.id))?;
    let ek_path = zone.tpm_ek_public();
    let ek_bytes = fs::read(&ek_path)
        .with_context(|| format!("reading the EK the VMM wrote ({})", ek_path.display()))?;
    let ek = TpmPublic::from_tpm2b(&ek_bytes)
        .with_context(|| format!("{} is not a TPM2B_PUBLIC", ek_path.display()))?;
    let host_id = zone_identity::host_id::host_id()?;
    let spec = host_tpm::choose_default(args.host_tpm.clone());
    let signer = host_tpm::open_signer(&spec, &args.ca_dir)?;
    eprintln!("zonectl: zone CA key: {} ({spec})", signer.describe());
    if spec == HostTpmSpec::File {
        eprintln!(
            "zonectl: warning: {}",
            host_tpm::file_key_warning(&args.ca_dir.join(KEY_FILE))
        );
    }
    let ca = host_tpm::open_zone_ca(&args.ca_dir, &host_id, signer)?;
    let manifest = boot_facts::manifest(&state.id, host_id, boot)?;
    let mut attester = RemoteAttester::new(client, &runtime);
    let enrollment = protocol::enroll_with_ek(&ca, &mut attester, &state.id, &ek)
        .context("enrolling the zone's TPM with the zone CA")?;
    let evidence = protocol::respond(&mut attester, &enrollment, &manifest, &nonce)
        .context("quoting the zone's PCRs")?;
    fs::write(&args.output, evidence.to_json())
        .with_context(|| format!("writing {}", args.output.display()))?;
    println!(
        "zone {}: evidence written to {} ({} PCRs quoted, {} byte event log) in {} ms",
        state.id,
        args.output.display(),
        evidence.pcrs.sha256.len(),
        evidence.event_log.len(),
        started.elapsed().as_millis()
    );
    Ok(())
}

/// A verifier's nonce: hex, 1 to 64 bytes.
pub fn parse_nonce(text: &str) -> anyhow::Result<Vec<u8>> {
    let nonce = hex::decode(text.trim()).with_context(|| format!("--nonce {text:?} is not hex"))?;
    if nonce.is_empty() || nonce.len() > MAX_NONCE {
        bail!(
            "--nonce is {} bytes; it must be 1 to {MAX_NONCE} (a fresh random 32 is usual)",
            nonce.len()
        );
    }
    Ok(nonce)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_attest(extra: &[&str]) -> Result<AttestArgs, clap::Error> {
        use clap::Parser as _;
        let argv = ["zonectl", "attest", "web", "--nonce", "00", "-o", "e.json"]
            .iter()
            .chain(extra);
        crate::cli::Cli::try_parse_from(argv).map(|cli| match cli.command {
            crate::cli::Command::Attest(a) => a,
            _ => panic!("parsed as another verb"),
        })
    }

    #[test]
    fn test_cli_attest_host_tpm_flag_parsed_and_bad_spec_refused() {
        let a = parse_attest(&["--host-tpm", "swtpm:unix:/run/host.sock"]).expect("parses");
        assert_eq!(
            a.host_tpm,
            Some(HostTpmSpec::Swtpm(
                zone_attest::tpm_socket::SocketAddress::Unix("/run/host.sock".into())
            ))
        );
        let a = parse_attest(&["--host-tpm", "file"]).expect("parses");
        assert_eq!(a.host_tpm, Some(HostTpmSpec::File));
        let e = parse_attest(&["--host-tpm", "swtpm:tcp:localhost"]).expect_err("no port");
        assert!(e.to_string().contains("swtpm:tcp:HOST:PORT"), "{e}");
    }

    #[test]
    fn test_parse_nonce_bounds_and_hex() {
        assert_eq!(parse_nonce("00ff").unwrap(), [0, 255]);
        assert!(parse_nonce("xyz")
            .unwrap_err()
            .to_string()
            .contains("not hex"));
        assert!(parse_nonce("").is_err());
        assert!(parse_nonce(&"ab".repeat(65)).is_err());
    }
}
