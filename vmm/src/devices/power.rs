//! The HW-reduced ACPI power-management registers the FADT points at: the Sleep Control and
//! Sleep Status Registers (ACPI 6.0 §4.8.3.7, §4.8.3.8; they share one port here) and the
//! Reset Register (§4.8.3.6). Ports and bit layouts come from
//! [`crate::arch::x86_64::acpi::layout`].
//!
//! A guest `poweroff` ends with the kernel writing `SLP_TYP_S5 << 2 | SLP_EN` to the sleep
//! control register; a guest `reboot` with [`RESET_VALUE`] to the reset register. The device
//! records which happened in a [`PowerEvents`] and signals the VMM through an `EventFd`; the
//! VMM then stops the zone. Everything else the guest does here is ignored.
//!
//! Register at [`POWER_PORTS_BASE`] with length
//! [`POWER_PORTS_LEN`](crate::arch::x86_64::acpi::layout::POWER_PORTS_LEN) on the I/O bus.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use vmm_sys_util::eventfd::EventFd;

use crate::arch::x86_64::acpi::layout::{
    POWER_PORTS_BASE, RESET_PORT, RESET_VALUE, SLEEP_CONTROL_PORT, SLEEP_STATUS_PORT, SLP_EN,
    SLP_TYP_MASK, SLP_TYP_S5, SLP_TYP_SHIFT, WAK_STS,
};

use super::bus::BusDevice;

/// Offsets of the registers from [`POWER_PORTS_BASE`].
const SLEEP_CONTROL: u64 = SLEEP_CONTROL_PORT as u64 - POWER_PORTS_BASE;
const SLEEP_STATUS: u64 = SLEEP_STATUS_PORT as u64 - POWER_PORTS_BASE;
const RESET: u64 = RESET_PORT as u64 - POWER_PORTS_BASE;

/// What the guest asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerEvent {
    PowerOff,
    Reboot,
}

const NONE: u8 = 0;
const POWER_OFF: u8 = 1;
const REBOOT: u8 = 2;

impl PowerEvent {
    fn encode(self) -> u8 {
        match self {
            PowerEvent::PowerOff => POWER_OFF,
            PowerEvent::Reboot => REBOOT,
        }
    }

    fn decode(v: u8) -> Option<Self> {
        match v {
            POWER_OFF => Some(PowerEvent::PowerOff),
            REBOOT => Some(PowerEvent::Reboot),
            _ => None,
        }
    }
}

/// The pending power event, shared between the device and the VMM. The first event wins
/// until the VMM [`take`](PowerEvents::take)s it.
#[derive(Clone, Debug, Default)]
pub struct PowerEvents(Arc<AtomicU8>);

impl PowerEvents {
    /// The pending event, if any, left in place.
    pub fn get(&self) -> Option<PowerEvent> {
        PowerEvent::decode(self.0.load(Ordering::Acquire))
    }

    /// The pending event, if any, clearing it.
    pub fn take(&self) -> Option<PowerEvent> {
        PowerEvent::decode(self.0.swap(NONE, Ordering::AcqRel))
    }

    /// Records `event` unless one is already pending; true if it was recorded.
    fn record(&self, event: PowerEvent) -> bool {
        self.0
            .compare_exchange(NONE, event.encode(), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// The sleep control/status and reset registers.
#[derive(Debug)]
pub struct PowerDevice {
    exit: EventFd,
    events: PowerEvents,
}

impl PowerDevice {
    /// A device that signals `exit` when the guest powers off or resets.
    pub fn new(exit: EventFd) -> Self {
        Self {
            exit,
            events: PowerEvents::default(),
        }
    }

    /// A handle on the pending event, for the VMM to read after `exit` fires.
    pub fn events(&self) -> PowerEvents {
        self.events.clone()
    }

    fn write_register(&self, reg: u64, value: u8) {
        let event = match reg {
            SLEEP_CONTROL if is_s5_entry(value) => PowerEvent::PowerOff,
            RESET if value == RESET_VALUE => PowerEvent::Reboot,
            _ => return,
        };
        if self.events.record(event) {
            tracing::info!(?event, "guest power event");
            if let Err(e) = self.exit.write(1) {
                tracing::error!(%e, "signalling power event");
            }
        }
    }

    fn read_register(reg: u64) -> u8 {
        match reg {
            // Always awake: the kernel polls WAK_STS after writing SLP_EN and must not spin.
            SLEEP_STATUS => WAK_STS,
            _ => 0,
        }
    }
}

/// A Sleep Control Register value that starts the transition to S5.
fn is_s5_entry(value: u8) -> bool {
    value & SLP_EN != 0 && (value & SLP_TYP_MASK) >> SLP_TYP_SHIFT == SLP_TYP_S5
}

/// The register byte `i` of an access at `offset` lands on, if that does not overflow.
fn lane(offset: u64, i: usize) -> Option<u64> {
    offset.checked_add(u64::try_from(i).ok()?)
}

/// Port I/O is byte-addressed: byte `i` of a wider access hits register `offset + i`.
impl BusDevice for PowerDevice {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = lane(offset, i).map_or(0, Self::read_register);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        for (i, byte) in data.iter().enumerate() {
            if let Some(reg) = lane(offset, i) {
                self.write_register(reg, *byte);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    fn device() -> (PowerDevice, EventFd, PowerEvents) {
        let exit = EventFd::new(EFD_NONBLOCK).expect("eventfd");
        let dev = PowerDevice::new(exit.try_clone().expect("clone"));
        let events = dev.events();
        (dev, exit, events)
    }

    fn fired(exit: &EventFd) -> bool {
        exit.read().is_ok()
    }

    #[test]
    fn test_power_device_s5_with_slp_en_powers_off() {
        let (mut dev, exit, events) = device();
        dev.write(SLEEP_CONTROL, &[(5 << 2) | (1 << 5)]);
        assert_eq!(events.get(), Some(PowerEvent::PowerOff));
        assert!(fired(&exit));
    }

    #[test]
    fn test_power_device_reset_value_reboots() {
        let (mut dev, exit, events) = device();
        dev.write(RESET, &[RESET_VALUE]);
        assert_eq!(events.take(), Some(PowerEvent::Reboot));
        assert!(fired(&exit));
        assert_eq!(events.get(), None, "taken");
    }

    #[test]
    fn test_power_device_other_writes_ignored() {
        let (mut dev, exit, events) = device();
        dev.write(SLEEP_CONTROL, &[5 << 2]); // S5 without SLP_EN
        dev.write(SLEEP_CONTROL, &[(3 << 2) | (1 << 5)]); // S3 with SLP_EN
        dev.write(SLEEP_STATUS, &[WAK_STS]); // clearing WAK_STS
        dev.write(RESET, &[0x00]);
        dev.write(RESET, &[0xff]);
        dev.write(RESET, &[RESET_VALUE.wrapping_add(1)]);
        assert_eq!(events.get(), None);
        assert!(!fired(&exit));
    }

    #[test]
    fn test_power_device_sleep_status_reads_wak_sts() {
        let (mut dev, _exit, _events) = device();
        let mut b = [0u8; 1];
        dev.read(SLEEP_STATUS, &mut b);
        assert_eq!(b[0] & 0x80, 0x80);
        dev.read(RESET, &mut b);
        assert_eq!(b[0], 0);
    }

    #[test]
    fn test_power_device_first_event_wins_until_taken() {
        let (mut dev, exit, events) = device();
        dev.write(RESET, &[RESET_VALUE]);
        dev.write(SLEEP_CONTROL, &[(5 << 2) | (1 << 5)]);
        assert_eq!(exit.read().expect("signalled"), 1, "signalled once");
        assert_eq!(events.take(), Some(PowerEvent::Reboot));
        dev.write(SLEEP_CONTROL, &[(5 << 2) | (1 << 5)]);
        assert_eq!(events.get(), Some(PowerEvent::PowerOff));
    }

    #[test]
    fn test_power_device_wide_access_hits_each_byte_lane() {
        let (mut dev, _exit, events) = device();
        let mut b = [0u8; 2];
        dev.read(SLEEP_STATUS, &mut b);
        assert_eq!(b, [WAK_STS, 0]);
        // A 16-bit write at the base: low byte to sleep control, high byte to reset.
        dev.write(SLEEP_CONTROL, &[0, RESET_VALUE]);
        assert_eq!(events.get(), Some(PowerEvent::Reboot));
    }

    #[test]
    fn test_power_device_odd_offsets_and_sizes_no_panic() {
        let (mut dev, exit, events) = device();
        let mut big = [0xaau8; 16];
        for offset in [0, 1, 2, 3, 0xffff, u64::MAX - 1, u64::MAX] {
            for len in [0usize, 1, 2, 3, 4, 8, 16] {
                dev.read(offset, &mut big[..len]);
                dev.write(offset, &[0u8; 16][..len]);
            }
        }
        dev.read(u64::MAX, &mut big);
        assert_eq!(big[0], 0);
        assert_eq!(events.get(), None);
        assert!(!fired(&exit));
    }
}
