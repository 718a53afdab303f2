//! `zonectl logs [-f] ZONE`: a detached zone's output. The supervisor appends the main
//! command's stdout and stderr to `stdout.log` and `stderr.log` as they arrive; `-f` keeps
//! printing what is appended until the zone has ended.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use anyhow::Context;

use crate::cli::ZoneRef;
use crate::zone_dir::ZoneDir;
use crate::zone_state::{self, Status, ZoneState};

const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// Print a detached zone's stdout and stderr.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  zonectl run -d --name ticker busybox sh -c \
                        'while sleep 1; do date; done'\n  zonectl logs -f ticker")]
pub struct LogsArgs {
    #[command(flatten)]
    pub zone: ZoneRef,
    /// Keep printing new output until the zone ends.
    #[arg(short = 'f', long)]
    pub follow: bool,
}

pub fn run(args: LogsArgs) -> anyhow::Result<()> {
    let mut state = zone_state::find(&args.zone.state_root, &args.zone.zone)?;
    let zone = ZoneDir::open(&args.zone.state_root, &state.id);
    let mut stdout = LogTail::new(zone.stdout_log());
    let mut stderr = LogTail::new(zone.stderr_log());
    loop {
        // Read the state first: output written before the zone ended is then never missed.
        let ended = !state.is_active();
        let copied = stdout.copy_new(&mut io::stdout())? + stderr.copy_new(&mut io::stderr())?;
        if !args.follow || (ended && copied == 0) {
            break;
        }
        if copied == 0 {
            thread::sleep(FOLLOW_POLL);
        }
        state = match ZoneState::load(zone.path()) {
            Ok(state) => state,
            // Removed meanwhile (`rm`, or `run -d --rm`): it has ended.
            Err(_) => {
                stdout.copy_new(&mut io::stdout())?;
                stderr.copy_new(&mut io::stderr())?;
                return Ok(());
            }
        };
    }
    if let (Status::Failed | Status::VmmDied, Some(error)) = (state.status, &state.error) {
        eprintln!("zonectl: zone {} failed: {error}", state.id);
    }
    Ok(())
}

/// What of a log file was printed so far.
#[derive(Debug)]
struct LogTail {
    path: PathBuf,
    offset: u64,
}

impl LogTail {
    fn new(path: PathBuf) -> Self {
        Self { path, offset: 0 }
    }

    /// Copies what was appended since the last call; a missing file has nothing yet.
    fn copy_new(&mut self, out: &mut impl Write) -> anyhow::Result<u64> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.path.display())),
        };
        file.seek(SeekFrom::Start(self.offset))
            .with_context(|| format!("reading {}", self.path.display()))?;
        let mut new = Vec::new();
        file.read_to_end(&mut new)
            .with_context(|| format!("reading {}", self.path.display()))?;
        out.write_all(&new)
            .and_then(|()| out.flush())
            .context("writing the log")?;
        self.offset += new.len() as u64;
        Ok(new.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_log_tail_copies_only_what_was_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        let mut tail = LogTail::new(path.clone());
        let mut out = Vec::new();

        assert_eq!(tail.copy_new(&mut out).unwrap(), 0);
        std::fs::write(&path, "one\n").unwrap();
        assert_eq!(tail.copy_new(&mut out).unwrap(), 4);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"two\n").unwrap();
        assert_eq!(tail.copy_new(&mut out).unwrap(), 4);
        assert_eq!(tail.copy_new(&mut out).unwrap(), 0);

        assert_eq!(out, b"one\ntwo\n");
    }
}
