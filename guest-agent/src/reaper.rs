//! Spawning children and learning how they ended.
//!
//! As PID 1 the agent inherits every orphan in the zone, so it cannot wait for one child at a
//! time: on SIGCHLD the signal thread calls [`Reaper::reap`], which collects every child that
//! exited and hands the outcome of those the agent spawned to whoever waits for them; orphans
//! are reaped and forgotten. Spawning holds the same lock as reaping, so a child that exits at
//! once is never reaped before it is watched.
//!
//! Outside a zone (tests) [`Reaper::per_child`] waits for each spawned child on a thread of its
//! own and leaves other processes alone.

use std::collections::HashMap;
use std::io;
use std::process::{Child, Command};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::sync::oneshot;

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitOutcome {
    Exited(i32),
    Signaled(i32),
}

/// A child's end and when the agent saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub outcome: ExitOutcome,
    pub at: SystemTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// PID 1: reap everything on SIGCHLD.
    Init,
    /// Not PID 1: one waiting thread per spawned child.
    PerChild,
}

#[derive(Debug)]
pub struct Reaper {
    mode: Mode,
    watched: Mutex<HashMap<i32, oneshot::Sender<Exit>>>,
}

impl Reaper {
    /// For PID 1, whose signal thread calls [`Reaper::reap`] on every SIGCHLD.
    pub fn init() -> Self {
        Self::with_mode(Mode::Init)
    }

    /// For tests and tools that are not PID 1.
    pub fn per_child() -> Self {
        Self::with_mode(Mode::PerChild)
    }

    fn with_mode(mode: Mode) -> Self {
        Self {
            mode,
            watched: Mutex::new(HashMap::new()),
        }
    }

    /// Spawns `command`; the receiver gets the child's exit once it is reaped.
    pub fn spawn(&self, command: &mut Command) -> io::Result<(Child, oneshot::Receiver<Exit>)> {
        let mut watched = self.lock();
        let child = command.spawn()?;
        let pid = i32::try_from(child.id()).map_err(io::Error::other)?;
        let (sender, receiver) = oneshot::channel();
        match self.mode {
            Mode::Init => {
                watched.insert(pid, sender);
            }
            Mode::PerChild => {
                std::thread::Builder::new()
                    .name(format!("wait-{pid}"))
                    .spawn(move || loop {
                        match waitpid(Pid::from_raw(pid), None) {
                            Err(Errno::EINTR) => continue,
                            Ok(status) => {
                                if let Some((_, outcome)) = outcome_of(status) {
                                    let _ = sender.send(exit_now(outcome));
                                    return;
                                }
                            }
                            Err(e) => return tracing::warn!(pid, error = %e, "waitpid failed"),
                        }
                    })?;
            }
        }
        Ok((child, receiver))
    }

    /// Collects every child that has exited. Called on SIGCHLD.
    pub fn reap(&self) {
        let mut watched = self.lock();
        loop {
            let status = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(status) => status,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "waitpid failed");
                    break;
                }
            };
            let Some((pid, outcome)) = outcome_of(status) else {
                continue;
            };
            match watched.remove(&pid) {
                Some(sender) => {
                    let _ = sender.send(exit_now(outcome));
                }
                None => tracing::debug!(pid, ?outcome, "reaped orphan"),
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<i32, oneshot::Sender<Exit>>> {
        self.watched
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn outcome_of(status: WaitStatus) -> Option<(i32, ExitOutcome)> {
    match status {
        WaitStatus::Exited(pid, code) => Some((pid.as_raw(), ExitOutcome::Exited(code))),
        WaitStatus::Signaled(pid, signal, _) => {
            Some((pid.as_raw(), ExitOutcome::Signaled(signal as i32)))
        }
        _ => None,
    }
}

fn exit_now(outcome: ExitOutcome) -> Exit {
    Exit {
        outcome,
        at: SystemTime::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(script: &str) -> ExitOutcome {
        let reaper = Reaper::per_child();
        let (_child, exit) = reaper
            .spawn(Command::new("sh").args(["-c", script]))
            .unwrap();
        exit.blocking_recv().unwrap().outcome
    }

    #[test]
    fn test_per_child_exit_code_exited() {
        assert_eq!(run("exit 3"), ExitOutcome::Exited(3));
    }

    #[test]
    fn test_per_child_killed_signaled() {
        assert_eq!(run("kill -9 $$"), ExitOutcome::Signaled(9));
    }
}
