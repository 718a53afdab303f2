//! PID 1's signals, taken synchronously on one thread with `sigwait`.
//!
//! The signals are blocked in the main thread before any other thread exists, so every thread
//! inherits the mask and the kernel queues them for `sigwait` (a blocked signal is never
//! discarded, even for init). busybox's `reboot`, `poweroff` and `halt` signal init with
//! SIGTERM, SIGUSR2 and SIGUSR1; a zone has no halted state, so halt powers off.

use std::io;
use std::sync::Arc;
use std::thread;

use nix::sys::signal::{SigSet, Signal};

use crate::power::{power, PowerAction};
use crate::reaper::Reaper;

fn handled() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        set.add(signal);
    }
    set
}

/// Blocks the handled signals in the calling thread. Call it before spawning any thread.
pub fn block() -> nix::Result<()> {
    handled().thread_block()
}

/// What PID 1 does on `signal`; `None` for SIGCHLD, which means reap.
pub fn power_action_for(signal: Signal) -> Option<PowerAction> {
    match signal {
        Signal::SIGTERM => Some(PowerAction::Reboot),
        Signal::SIGUSR1 | Signal::SIGUSR2 => Some(PowerAction::PowerOff),
        _ => None,
    }
}

/// Starts the thread that reaps children on SIGCHLD and stops the zone on the power signals.
pub fn spawn_handler(reaper: Arc<Reaper>) -> io::Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name("signals".to_string())
        .spawn(move || {
            let set = handled();
            loop {
                match set.wait() {
                    Ok(signal) => match power_action_for(signal) {
                        Some(action) => power(action),
                        None => reaper.reap(),
                    },
                    Err(e) => tracing::warn!(error = %e, "sigwait failed"),
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_power_action_for_busybox_signals_matches() {
        assert_eq!(power_action_for(Signal::SIGTERM), Some(PowerAction::Reboot));
        assert_eq!(
            power_action_for(Signal::SIGUSR2),
            Some(PowerAction::PowerOff)
        );
        assert_eq!(
            power_action_for(Signal::SIGUSR1),
            Some(PowerAction::PowerOff)
        );
        assert_eq!(power_action_for(Signal::SIGCHLD), None);
    }
}
