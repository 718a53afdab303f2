//! Running the built `spiffe-probe` as the e2e tests do: a process, its stdout, stderr and
//! exit status, and how long it took.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one run of `spiffe-probe` produced.
#[derive(Debug)]
pub struct Run {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

/// A run that takes longer than this is killed and fails the test.
const LIMIT: Duration = Duration::from_secs(60);

/// Runs `spiffe-probe ARGS` with `SPIFFE_ENDPOINT_SOCKET` set to `endpoint`, or unset.
pub fn probe(endpoint: Option<&str>, args: &[&str]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_spiffe-probe"));
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match endpoint {
        Some(endpoint) => command.env("SPIFFE_ENDPOINT_SOCKET", endpoint),
        None => command.env_remove("SPIFFE_ENDPOINT_SOCKET"),
    };
    let start = Instant::now();
    let mut child = command.spawn().expect("start spiffe-probe");
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            pipe.read_to_string(&mut text)
                .expect("read spiffe-probe's output");
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for spiffe-probe") {
            break status;
        }
        if start.elapsed() > LIMIT {
            child.kill().expect("kill spiffe-probe");
            panic!("spiffe-probe {args:?} ran for more than {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        status: status.code(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
        took: start.elapsed(),
    }
}
