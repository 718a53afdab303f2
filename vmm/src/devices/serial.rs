//! The 8250 UART at COM1 (0x3f8, IRQ 4), the zone's console. Output goes to stdout or a log
//! file; a log file is capped so a guest printing forever cannot fill the host's disk.

use std::fs::File;
use std::io::{self, Write};

use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use super::bus::BusDevice;

/// COM1's port range.
pub const COM1_BASE: u64 = 0x3f8;
pub const COM1_LEN: u64 = 8;
/// Most bytes of console output written to a log file.
pub const CONSOLE_LOG_CAP: u64 = 16 << 20;

/// Raises the serial interrupt through an irqfd.
#[derive(Debug)]
pub struct SerialIrq(pub EventFd);

impl Trigger for SerialIrq {
    type E = io::Error;
    fn trigger(&self) -> io::Result<()> {
        self.0.write(1)
    }
}

/// Where console output goes.
pub enum ConsoleSink {
    Stdout(io::Stdout),
    File { file: File, written: u64 },
    Discard,
}

impl std::fmt::Debug for ConsoleSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Stdout(_) => "Stdout",
            Self::File { .. } => "File",
            Self::Discard => "Discard",
        })
    }
}

impl Write for ConsoleSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Stdout(out) => out.write(buf),
            Self::File { file, written } => {
                if *written >= CONSOLE_LOG_CAP {
                    return Ok(buf.len());
                }
                let room = usize::try_from(CONSOLE_LOG_CAP - *written).unwrap_or(usize::MAX);
                let n = file.write(&buf[..buf.len().min(room)])?;
                *written += n as u64;
                if *written >= CONSOLE_LOG_CAP {
                    let _ = file.write_all(b"\n[zone-vmm: console log reached its size cap]\n");
                }
                Ok(buf.len())
            }
            Self::Discard => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Stdout(out) => out.flush(),
            Self::File { file, .. } => file.flush(),
            Self::Discard => Ok(()),
        }
    }
}

/// COM1 on the port I/O bus.
pub struct SerialDevice {
    uart: Serial<SerialIrq, vm_superio::serial::NoEvents, ConsoleSink>,
}

impl std::fmt::Debug for SerialDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerialDevice").finish_non_exhaustive()
    }
}

impl SerialDevice {
    pub fn new(irq: EventFd, sink: ConsoleSink) -> Self {
        Self {
            uart: Serial::new(SerialIrq(irq), sink),
        }
    }
}

impl BusDevice for SerialDevice {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match (u8::try_from(offset), data.len()) {
            (Ok(offset), 1) => data[0] = self.uart.read(offset),
            _ => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Ok(offset), [value]) = (u8::try_from(offset), data) {
            // A failed console write must not stop the guest; the output is lost.
            let _ = self.uart.write(offset, *value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn test_serial_writes_thr_to_capped_log() {
        let mut log = tempfile::NamedTempFile::new().expect("tmp");
        let sink = ConsoleSink::File {
            file: log.reopen().expect("reopen"),
            written: CONSOLE_LOG_CAP - 2,
        };
        let mut dev = SerialDevice::new(EventFd::new(0).expect("evt"), sink);
        for b in b"abcd" {
            dev.write(0, &[*b]);
        }
        let mut out = String::new();
        log.read_to_string(&mut out).expect("read");
        assert!(
            out.starts_with("ab\n[zone-vmm: console log reached its size cap]"),
            "{out:?}"
        );
    }

    #[test]
    fn test_serial_odd_sizes_ignored() {
        let mut dev = SerialDevice::new(EventFd::new(0).expect("evt"), ConsoleSink::Discard);
        let mut two = [0u8; 2];
        dev.read(0, &mut two);
        assert_eq!(two, [0xff, 0xff]);
        dev.write(0, &[1, 2]);
    }
}
