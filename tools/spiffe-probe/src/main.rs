//! `spiffe-probe`: a workload that exercises the SPIFFE Workload API (SPIFFE standard,
//! `SPIFFE_Workload_API.md`, section 5: X.509-SVID and JWT-SVID profiles) with the `spiffe`
//! crate from crates.io, as an ordinary container in a zone would. The zone agent serves the
//! API on the socket `SPIFFE_ENDPOINT_SOCKET` names (section 4.1).
//!
//! The end-to-end tests run it inside a zone and parse what it prints, so its output is a
//! contract: `key=value` lines on stdout (see `--help`), and on failure one
//! `error: <message>` line on stderr and exit status 1. A refusal from the Workload API shows
//! its gRPC status code and the server's message verbatim
//! (`error: FetchX509SVID failed: PERMISSION_DENIED: this zone has no SPIFFE identity: ...`).

mod client;
mod error;
mod jwt;
mod x509;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::client::Api;
use crate::error::ProbeError;

#[derive(Debug, Parser)]
#[command(
    name = "spiffe-probe",
    version,
    about = "Exercise the SPIFFE Workload API at $SPIFFE_ENDPOINT_SOCKET and print what it serves",
    long_about = "Exercise the SPIFFE Workload API at $SPIFFE_ENDPOINT_SOCKET \
(such as unix:///run/spiffe/workload.sock) with the spiffe crate and print what it serves, \
one key=value line each on stdout.\n\n\
On failure: one line `error: <message>` on stderr, exit status 1. When the API refused, \
the message holds the gRPC status code and the server's own text, such as \
`error: FetchX509SVID failed: PERMISSION_DENIED: this zone has no SPIFFE identity: ...`.",
    after_help = "Examples:\n  \
SPIFFE_ENDPOINT_SOCKET=unix:///run/spiffe/workload.sock spiffe-probe x509\n  \
spiffe-probe --wait 60 jwt spiffe://example.org/db\n  \
spiffe-probe watch --rotations 2 --timeout 300"
)]
struct Cli {
    /// How long to keep retrying the first connection and fetch, in seconds, while the socket
    /// does not exist yet or the API answers UNAVAILABLE; other errors (PERMISSION_DENIED,
    /// INVALID_ARGUMENT, ...) end the probe at once. 0: try once.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 30)]
    wait: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fetch the X.509-SVID and its trust bundle once.
    #[command(
        long_about = "Fetch the X.509-SVID and its trust bundle once (FetchX509SVID). \
Prints, in this order:\n  \
spiffe-id=<the SVID's SPIFFE ID>\n  \
svid-cert=<base64 DER>        one per certificate of the SVID's chain, leaf first\n  \
bundle-cert=<base64 DER>      one per X.509 authority of the SVID's trust domain\n  \
not-after=<unix seconds>      the leaf's notAfter\n  \
key-matches-leaf=yes|no       whether the private key sent belongs to the leaf's public key\n\
(base64 is the standard alphabet with padding)."
    )]
    X509,
    /// Fetch a JWT-SVID for AUDIENCE and validate it against the JWT bundles.
    #[command(
        long_about = "Fetch a JWT-SVID for AUDIENCE (FetchJWTSVID) and the JWT bundles \
(FetchJWTBundles), and validate the token locally against them (signature, expiry, audience). \
Prints, in this order:\n  \
jwt-spiffe-id=<the token's sub>\n  \
jwt-audience=<its aud, comma-joined>\n  \
jwt-expiry=<its exp, unix seconds>\n  \
jwt-valid=yes\n  \
jwt-token=<the token>\n\
A token that does not validate is an error (exit 1), not jwt-valid=no."
    )]
    Jwt {
        /// The audience to ask the token for (the `aud` claim).
        audience: String,
    },
    /// Follow the X.509-SVID stream until the SVID has rotated N times.
    #[command(
        long_about = "Follow the X.509-SVID stream (FetchX509SVID keeps sending) until \
the SVID has rotated N times. Prints, for the first SVID and for each new one (a new leaf \
serial; messages repeating the same leaf are skipped):\n  \
svid serial=<hex> not-after=<unix seconds> received=<unix seconds>\n\
after each new one (not the first) also:\n  \
rotated-before-expiry=yes|no  yes when it arrived before the previous SVID's notAfter\n\
and after the N-th rotation:\n  \
rotations=N\n\
The serial is lower-case hex without leading zero bytes. Not reaching N rotations within \
--timeout, or the stream ending, is an error."
    )]
    Watch {
        /// How many rotations (new SVIDs after the first) to wait for.
        #[arg(long, value_name = "N")]
        rotations: u32,
        /// How long to follow the stream once it is open, in seconds.
        #[arg(long, value_name = "SECS", default_value_t = 120)]
        timeout: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", error::render(&err));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), ProbeError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ProbeError::Runtime)?;
    runtime.block_on(async {
        let api = Api::from_env(Duration::from_secs(cli.wait))?;
        let mut out = std::io::stdout().lock();
        match cli.command {
            Command::X509 => x509::fetch(&api, &mut out).await,
            Command::Jwt { audience } => jwt::fetch(&api, &audience, &mut out).await,
            Command::Watch { rotations, timeout } => {
                x509::watch(&api, rotations, Duration::from_secs(timeout), &mut out).await
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("spiffe-probe").chain(args.iter().copied()))
    }

    #[test]
    fn test_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn test_cli_x509_defaults_wait_30() {
        let cli = parse(&["x509"]).expect("parses");
        assert_eq!(cli.wait, 30);
        assert!(matches!(cli.command, Command::X509));
    }

    #[test]
    fn test_cli_wait_is_global_before_or_after_the_subcommand() {
        assert_eq!(parse(&["--wait", "5", "x509"]).expect("parses").wait, 5);
        assert_eq!(parse(&["x509", "--wait", "7"]).expect("parses").wait, 7);
    }

    #[test]
    fn test_cli_jwt_takes_one_audience() {
        let cli = parse(&["jwt", "spiffe://example.org/db"]).expect("parses");
        assert!(
            matches!(cli.command, Command::Jwt { ref audience } if audience == "spiffe://example.org/db")
        );
        assert!(parse(&["jwt"]).is_err());
        assert!(parse(&["jwt", "a", "b"]).is_err());
    }

    #[test]
    fn test_cli_watch_needs_rotations_and_defaults_timeout_120() {
        let cli = parse(&["watch", "--rotations", "2"]).expect("parses");
        assert!(matches!(
            cli.command,
            Command::Watch {
                rotations: 2,
                timeout: 120
            }
        ));
        let cli = parse(&["watch", "--rotations", "1", "--timeout", "9"]).expect("parses");
        assert!(matches!(
            cli.command,
            Command::Watch {
                rotations: 1,
                timeout: 9
            }
        ));
        assert!(parse(&["watch"]).is_err());
        assert!(parse(&["watch", "--rotations", "-1"]).is_err());
    }

    #[test]
    fn test_cli_without_subcommand_is_an_error() {
        assert!(parse(&[]).is_err());
        assert!(parse(&["x509", "--wait", "soon"]).is_err());
    }

    #[test]
    fn test_cli_help_names_every_output_key() {
        let mut help = Vec::new();
        for sub in ["x509", "jwt", "watch"] {
            let mut cmd = Cli::command();
            let sub = cmd.find_subcommand_mut(sub).expect("subcommand exists");
            help.extend_from_slice(sub.render_long_help().to_string().as_bytes());
        }
        let help = String::from_utf8(help).expect("help is UTF-8");
        for key in [
            "spiffe-id=",
            "svid-cert=",
            "bundle-cert=",
            "not-after=",
            "key-matches-leaf=",
            "jwt-spiffe-id=",
            "jwt-audience=",
            "jwt-expiry=",
            "jwt-valid=",
            "jwt-token=",
            "svid serial=",
            "rotated-before-expiry=",
            "rotations=",
        ] {
            assert!(help.contains(key), "--help does not mention {key}");
        }
    }
}
