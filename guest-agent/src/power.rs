//! Ending the zone: sync, then `reboot(2)`.

use std::time::Duration;

use nix::sys::reboot::{reboot, RebootMode};
use zone_proto::agent::v1::shutdown_request::Action;

/// What the zone does when the agent is done with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    PowerOff,
    Reboot,
}

impl From<Action> for PowerAction {
    fn from(action: Action) -> Self {
        match action {
            Action::Reboot => PowerAction::Reboot,
            Action::PowerOff | Action::Unspecified => PowerAction::PowerOff,
        }
    }
}

/// Syncs file systems and powers off or reboots the zone. Never returns: if `reboot(2)` fails
/// the error goes to the console and the agent sleeps, since PID 1 must not exit.
pub fn power(action: PowerAction) -> ! {
    tracing::info!(?action, "zone stopping");
    nix::unistd::sync();
    let mode = match action {
        PowerAction::PowerOff => RebootMode::RB_POWER_OFF,
        PowerAction::Reboot => RebootMode::RB_AUTOBOOT,
    };
    let error = match reboot(mode) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    eprintln!("zone-agent: reboot({mode:?}) failed: {error}; halting here");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_power_action_from_unspecified_power_off() {
        assert_eq!(
            PowerAction::from(Action::Unspecified),
            PowerAction::PowerOff
        );
        assert_eq!(PowerAction::from(Action::PowerOff), PowerAction::PowerOff);
        assert_eq!(PowerAction::from(Action::Reboot), PowerAction::Reboot);
    }
}
