//! Address-range dispatch for port I/O and MMIO exits.
//!
//! Devices are registered at a base and length; an access is routed to the device whose range
//! holds it, with the offset from the base. Accesses that hit no device read as all ones and
//! are dropped on write, as on real hardware with nothing decoding the address.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

/// A device on a bus. `offset` is relative to the device's base.
pub trait BusDevice: Send {
    fn read(&mut self, offset: u64, data: &mut [u8]);
    fn write(&mut self, offset: u64, data: &[u8]);
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    #[error("range {base:#x}+{len:#x} is empty or overflows")]
    BadRange { base: u64, len: u64 },
    #[error("range {base:#x}+{len:#x} overlaps a registered device")]
    Overlap { base: u64, len: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Range {
    base: u64,
    len: u64,
}

/// A set of non-overlapping device ranges.
#[derive(Clone, Default)]
pub struct Bus {
    devices: BTreeMap<Range, Arc<Mutex<dyn BusDevice>>>,
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.devices.keys()).finish()
    }
}

impl Bus {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(
        &mut self,
        device: Arc<Mutex<dyn BusDevice>>,
        base: u64,
        len: u64,
    ) -> Result<(), BusError> {
        let end = base.checked_add(len).filter(|_| len > 0);
        let Some(end) = end else {
            return Err(BusError::BadRange { base, len });
        };
        let overlaps = self
            .devices
            .keys()
            .any(|r| base < r.base + r.len && r.base < end);
        if overlaps {
            return Err(BusError::Overlap { base, len });
        }
        self.devices.insert(Range { base, len }, device);
        Ok(())
    }

    fn resolve(&self, addr: u64) -> Option<(u64, &Arc<Mutex<dyn BusDevice>>)> {
        let probe = Range {
            base: addr,
            len: u64::MAX,
        };
        let (range, dev) = self.devices.range(..=probe).next_back()?;
        (addr - range.base < range.len).then(|| (addr - range.base, dev))
    }

    /// Reads from the device at `addr`; returns false (and all-ones data) if none is there.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.resolve(addr) {
            Some((offset, dev)) => {
                lock(dev).read(offset, data);
                true
            }
            None => {
                data.fill(0xff);
                false
            }
        }
    }

    /// Writes to the device at `addr`; returns false if none is there.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.resolve(addr) {
            Some((offset, dev)) => {
                lock(dev).write(offset, data);
                true
            }
            None => false,
        }
    }
}

/// A device whose thread panicked holding its lock keeps serving: its state is plain data.
fn lock(dev: &Arc<Mutex<dyn BusDevice>>) -> std::sync::MutexGuard<'_, dyn BusDevice + 'static> {
    dev.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Echo {
        last: Vec<(u64, Vec<u8>)>,
    }

    impl BusDevice for Echo {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.last.push((offset, data.to_vec()));
        }
    }

    #[test]
    fn test_bus_routes_by_offset_and_misses_read_ones() {
        let mut bus = Bus::new();
        let dev = Arc::new(Mutex::new(Echo::default()));
        bus.insert(dev.clone(), 0x100, 0x10).expect("insert");
        let mut b = [0u8; 2];
        assert!(bus.read(0x105, &mut b));
        assert_eq!(b, [5, 5]);
        assert!(!bus.read(0x110, &mut b));
        assert_eq!(b, [0xff, 0xff]);
        assert!(bus.write(0x10f, &[7]));
        assert_eq!(dev.lock().expect("lock").last, vec![(0xf, vec![7])]);
    }

    #[test]
    fn test_bus_insert_overlap_or_empty_rejected() {
        let mut bus = Bus::new();
        bus.insert(Arc::new(Mutex::new(Echo::default())), 0x100, 0x10)
            .expect("insert");
        let err = bus.insert(Arc::new(Mutex::new(Echo::default())), 0x10f, 1);
        assert_eq!(
            err,
            Err(BusError::Overlap {
                base: 0x10f,
                len: 1
            })
        );
        let err = bus.insert(Arc::new(Mutex::new(Echo::default())), 0x200, 0);
        assert_eq!(
            err,
            Err(BusError::BadRange {
                base: 0x200,
                len: 0
            })
        );
    }
}
