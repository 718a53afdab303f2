//! A stand-in for `zone-vmm` in zonectl's process-level tests: it takes the VMM's flags and,
//! instead of booting a zone, plays the zone agent on the host over the `<vsock>_1024` socket.
//!
//! `FAKE_VMM_MODE`: `agent` (default) serves requests and exits 0 after the shutdown request;
//! `fail` writes to the console log and stderr and exits 1; `hang` never connects.

use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::{bail, Context};
use zone_agent::reaper::DirectWaiter;
use zone_agent::session::{self, SessionEnd};
use zone_proto::agent::v1::AgentReady;

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let vsock = flag(&args, "--vsock").context("--vsock missing")?;
    if let Some(log) = flag(&args, "--serial-log") {
        std::fs::write(&log, "fake console line 1\nfake console line 2\n")?;
    }
    match std::env::var("FAKE_VMM_MODE").as_deref() {
        Ok("fail") => {
            eprintln!("fake-vmm: cannot open /dev/kvm");
            std::process::exit(1)
        }
        Ok("hang") => loop {
            std::thread::sleep(Duration::from_secs(60));
        },
        _ => {}
    }
    let stream = UnixStream::connect(format!("{vsock}_1024")).context("connecting to zonectl")?;
    let mut writer = stream.try_clone()?;
    let ready = AgentReady {
        agent_version: "fake".into(),
        kernel_release: "0.0".into(),
        online_cpus: 1,
    };
    session::send_ready(&mut writer, &ready)?;
    match session::serve(&mut BufReader::new(stream), &mut writer, &DirectWaiter)? {
        SessionEnd::Shutdown(_) => Ok(()),
        SessionEnd::Closed => bail!("zonectl hung up without a shutdown request"),
    }
}
