//! The PID 1 reaper on the host, in its own test process: it calls `waitpid(-1)`, which
//! would steal other tests' children if it shared their process. This file holds one test.

use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use std::io::Read;
use std::process::{Command, Stdio};

use zone_agent::reaper::{ExitOutcome, Reaper};

#[test]
fn test_reaper_command_and_orphan_both_reaped() {
    // Orphans of this process's children come back to it, as they would to PID 1.
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    let reaper = Arc::new(Reaper::init());
    let stop = Arc::new(AtomicBool::new(false));
    let reaping = {
        let (reaper, stop) = (Arc::clone(&reaper), Arc::clone(&stop));
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                reaper.reap();
                thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let mut command = Command::new("sh");
    command
        .args([
            "-c",
            "sleep 0.3 </dev/null >/dev/null 2>&1 & echo $!; exit 5",
        ])
        .stdout(Stdio::piped());

    let (mut child, exit) = reaper.spawn(&mut command).expect("spawn");

    let mut stdout = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read");
    let exit = exit.blocking_recv().expect("exit reported");
    assert_eq!(exit.outcome, ExitOutcome::Exited(5));
    let orphan: u32 = stdout.trim().parse().expect("orphan pid");
    let deadline = Instant::now() + Duration::from_secs(5);
    while fs::metadata(format!("/proc/{orphan}")).is_ok() {
        assert!(Instant::now() < deadline, "orphan {orphan} was not reaped");
        thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    reaping.join().expect("reaping thread");
}
