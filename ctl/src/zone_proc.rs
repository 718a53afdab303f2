//! A zone's host processes (its supervisor and VMM), seen through `/proc`.
//!
//! A recorded pid may have been reused by an unrelated process after the zone's died, so a
//! process counts as the zone's only while its command line mentions the zone id: the VMM's
//! holds `/run/zones/<id>/vsock.sock`, the supervisor's `supervise --zone-id <id>`.

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const POLL: Duration = Duration::from_millis(50);

/// Whether `pid` runs (not a zombie) and its command line contains `zone_id`.
pub fn owned_alive(pid: i32, zone_id: &str) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state letter follows the parenthesised command name, which may hold spaces.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    if matches!(state, Some('Z' | 'X') | None) {
        return false;
    }
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmdline| contains(&cmdline, zone_id.as_bytes()))
        .unwrap_or(false)
}

/// Sends `signal` to `pid` if it is still the zone's; says whether it was.
pub fn signal_owned(pid: i32, zone_id: &str, signal: Signal) -> bool {
    if !owned_alive(pid, zone_id) {
        return false;
    }
    match kill(Pid::from_raw(pid), signal) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(pid, ?signal, error = %e, "signalling a zone process");
            false
        }
    }
}

/// Waits up to `timeout` until none of `pids` is the zone's any more; says whether they all went.
pub fn wait_gone(pids: &[i32], zone_id: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !pids.iter().any(|&pid| owned_alive(pid, zone_id)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL);
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Spawns `sleep secs` and waits until its command line shows (exec has happened).
    fn sleeper(secs: &str) -> (std::process::Child, i32) {
        let child = Command::new("sleep").arg(secs).spawn().unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !owned_alive(pid, secs) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        (child, pid)
    }

    #[test]
    fn test_owned_alive_running_child_with_id_true() {
        let (mut child, pid) = sleeper("30");

        let owned = owned_alive(pid, "30");
        let foreign = owned_alive(pid, "zone-abc123");
        child.kill().unwrap();
        child.wait().unwrap();

        assert!(owned);
        assert!(!foreign, "another zone's id does not match");
        assert!(!owned_alive(pid, "30"), "reaped process is gone");
    }

    #[test]
    fn test_owned_alive_zombie_false() {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        thread::sleep(Duration::from_millis(300));

        let alive = owned_alive(pid, "true");
        child.wait().unwrap();

        assert!(!alive);
    }

    #[test]
    fn test_wait_gone_killed_process_true() {
        let (mut child, pid) = sleeper("31");

        assert!(signal_owned(pid, "31", Signal::SIGTERM));
        let gone = wait_gone(&[pid], "31", Duration::from_secs(5));
        child.wait().unwrap();

        assert!(gone);
    }
}
