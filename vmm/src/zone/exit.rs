//! How a zone ended, and the one place that records it: the first reason wins.

use std::sync::Mutex;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Why the zone stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ZoneExit {
    /// The guest powered off.
    PowerOff,
    /// The guest rebooted (or panicked with `panic=-1`). A zone does not restart: the VMM
    /// ends.
    Reboot,
    /// The host asked the VMM to stop (SIGTERM, SIGINT, SIGHUP).
    Stopped,
    /// A vCPU could not go on.
    Failed(String),
}

/// Shared by vCPU threads and the main loop.
#[derive(Debug)]
pub struct ExitSignal {
    evt: EventFd,
    reason: Mutex<Option<ZoneExit>>,
}

impl ExitSignal {
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            evt: EventFd::new(EFD_NONBLOCK)?,
            reason: Mutex::new(None),
        })
    }

    /// Records `reason` unless one is recorded already, and wakes the main loop.
    pub fn request(&self, reason: ZoneExit) {
        let mut slot = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(reason);
        }
        // The main loop also polls the reason after every wake-up, so a lost write is harmless.
        let _ = self.evt.write(1);
    }

    pub fn reason(&self) -> Option<ZoneExit> {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn event(&self) -> &EventFd {
        &self.evt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_exit_signal_first_reason_wins() {
        let exit = ExitSignal::new().expect("evt");
        assert_eq!(exit.reason(), None);
        exit.request(ZoneExit::PowerOff);
        exit.request(ZoneExit::Failed("later".into()));
        assert_eq!(exit.reason(), Some(ZoneExit::PowerOff));
        assert!(exit.event().read().is_ok());
    }
}
