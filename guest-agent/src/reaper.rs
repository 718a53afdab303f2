//! Waiting for children without racing PID 1's zombie reaper.
//!
//! As PID 1 the agent inherits every orphan in the zone and must reap it, which means calling
//! `waitpid(-1)`; that call would also collect the exit status of a command the runner is
//! waiting for. [`Reaper`] settles this: commands are spawned while its lock is held and
//! registered by PID, the reaping loop takes the same lock, and a reaped registered PID has its
//! status handed to the waiting runner instead of being dropped. Off PID 1 (tests on the host)
//! [`DirectWaiter`] simply uses `Child::wait`.

use std::collections::HashMap;
use std::io;
use std::process::{Child, Command};
use std::sync::{Condvar, Mutex, MutexGuard};

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitOutcome {
    Exited(i32),
    Signaled(i32),
}

/// Spawns children and collects their exit status.
pub trait ChildWaiter: Send + Sync {
    fn spawn(&self, command: &mut Command) -> io::Result<Child>;
    fn wait(&self, child: Child) -> io::Result<ExitOutcome>;
}

/// Uses the standard library's `Child::wait`; right whenever nothing else calls `waitpid(-1)`.
#[derive(Debug, Default)]
pub struct DirectWaiter;

impl ChildWaiter for DirectWaiter {
    fn spawn(&self, command: &mut Command) -> io::Result<Child> {
        command.spawn()
    }

    fn wait(&self, mut child: Child) -> io::Result<ExitOutcome> {
        use std::os::unix::process::ExitStatusExt;
        let status = child.wait()?;
        match (status.code(), status.signal()) {
            (Some(code), _) => Ok(ExitOutcome::Exited(code)),
            (None, Some(signal)) => Ok(ExitOutcome::Signaled(signal)),
            (None, None) => Err(io::Error::other("child neither exited nor was signaled")),
        }
    }
}

/// PID 1's reaper: reaps every child and hands registered children's status to their waiter.
#[derive(Debug, Default)]
pub struct Reaper {
    /// Registered PIDs; `Some` once reaped and not yet collected by `wait`.
    watched: Mutex<HashMap<i32, Option<ExitOutcome>>>,
    reaped: Condvar,
}

impl Reaper {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reaps every child that has exited, without blocking. Call it on SIGCHLD.
    pub fn reap(&self) {
        let mut watched = self.lock();
        loop {
            let outcome = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, ExitOutcome::Exited(code)),
                Ok(WaitStatus::Signaled(pid, signal, _)) => {
                    (pid, ExitOutcome::Signaled(signal as i32))
                }
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "waitpid failed");
                    break;
                }
            };
            let (pid, outcome) = outcome;
            if let Some(slot) = watched.get_mut(&pid.as_raw()) {
                *slot = Some(outcome);
                self.reaped.notify_all();
            } else {
                tracing::debug!(pid = pid.as_raw(), ?outcome, "reaped orphan");
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<i32, Option<ExitOutcome>>> {
        // A panic while holding this lock leaves the map consistent; keep using it.
        self.watched
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ChildWaiter for Reaper {
    fn spawn(&self, command: &mut Command) -> io::Result<Child> {
        // Holding the lock keeps `reap` from collecting the child before it is registered
        // (and from collecting a child the standard library reaps itself when exec fails).
        let mut watched = self.lock();
        let child = command.spawn()?;
        let pid = i32::try_from(child.id()).map_err(io::Error::other)?;
        watched.insert(pid, None);
        Ok(child)
    }

    fn wait(&self, child: Child) -> io::Result<ExitOutcome> {
        let pid = i32::try_from(child.id()).map_err(io::Error::other)?;
        let mut watched = self.lock();
        loop {
            match watched.get(&pid) {
                Some(Some(outcome)) => {
                    let outcome = *outcome;
                    watched.remove(&pid);
                    return Ok(outcome);
                }
                Some(None) => {
                    watched = self
                        .reaped
                        .wait(watched)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                }
                None => {
                    return Err(io::Error::other(format!(
                        "pid {pid} was not spawned by the reaper"
                    )))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_direct_waiter_exit_code_exited() {
        let waiter = DirectWaiter;
        let child = waiter
            .spawn(Command::new("sh").args(["-c", "exit 3"]))
            .unwrap();

        let outcome = waiter.wait(child).unwrap();

        assert_eq!(outcome, ExitOutcome::Exited(3));
    }

    #[test]
    fn test_direct_waiter_killed_signaled() {
        let waiter = DirectWaiter;
        let child = waiter
            .spawn(Command::new("sh").args(["-c", "kill -9 $$"]))
            .unwrap();

        let outcome = waiter.wait(child).unwrap();

        assert_eq!(outcome, ExitOutcome::Signaled(9));
    }
}
