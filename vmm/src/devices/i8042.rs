//! Just enough of the i8042 keyboard controller for the guest to reset the machine: Linux
//! reboots (`reboot=k`, and as a fallback) by writing command 0xFE to port 0x64.

use vmm_sys_util::eventfd::EventFd;

use super::bus::BusDevice;

/// Ports 0x60 (data) to 0x64 (command/status).
pub const I8042_BASE: u64 = 0x60;
pub const I8042_LEN: u64 = 5;
const COMMAND_OFFSET: u64 = 4;
const CMD_RESET_CPU: u8 = 0xfe;

#[derive(Debug)]
pub struct I8042 {
    reset: EventFd,
}

impl I8042 {
    /// `reset` is written when the guest pulses the reset line.
    pub fn new(reset: EventFd) -> Self {
        Self { reset }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        // Status 0: no data waiting, input buffer empty, so the guest never waits on us.
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == COMMAND_OFFSET && data == [CMD_RESET_CPU] {
            if let Err(e) = self.reset.write(1) {
                tracing::error!("cannot signal the guest's reset request: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    #[test]
    fn test_i8042_reset_command_signals() {
        let evt = EventFd::new(EFD_NONBLOCK).expect("evt");
        let mut dev = I8042::new(evt.try_clone().expect("clone"));
        dev.write(0, &[CMD_RESET_CPU]);
        assert!(evt.read().is_err(), "data port write must not reset");
        dev.write(COMMAND_OFFSET, &[CMD_RESET_CPU]);
        assert_eq!(evt.read().expect("signalled"), 1);
        let mut status = [0xffu8];
        dev.read(COMMAND_OFFSET, &mut status);
        assert_eq!(status, [0]);
    }
}
