//! The CRB register page (PTP 1.05 §6.5.3, "CRB Interface Registers"; Linux
//! `drivers/char/tpm/tpm_crb.c` is the driver it must satisfy).
//!
//! ```text
//! 0x000 LOC_STATE   r   tpmRegValidSts(7) activeLocality(4:2)=0 locAssigned(1)
//! 0x008 LOC_CTRL    w   requestAccess(0) relinquish(1)
//! 0x00C LOC_STS     r   granted(0)
//! 0x030 INTF_ID     r   CRB interface, version 1, CRB selected and locked
//! 0x040 CTRL_REQ    rw  cmdReady(0) goIdle(1): done at once, reads 0
//! 0x044 CTRL_STS    r   tpmSts(0: fatal error, never) tpmIdle(1)
//! 0x048 CTRL_CANCEL rw
//! 0x04C CTRL_START  rw  write 1: run the command; reads 0 once done (always, here)
//! 0x050 INT_ENABLE  rw  (no interrupt is ever raised; Linux polls)
//! 0x054 INT_STS     rw1c
//! 0x058 CMD_SIZE    r   0x58..0x70: command and response buffer address and size
//! 0x080 DATA_BUFFER rw  command in, response out (one buffer for both)
//! ```
//!
//! Every access is bounds-checked: any length at any offset inside the page is served from
//! (or stored into) the page, nothing outside it is touched, and register writes only change
//! the writable registers.

use std::fmt;

use super::{error_response, TpmBackend, TPM_RC_FAILURE};
use crate::devices::bus::BusDevice;

/// Guest-physical base of the CRB page (locality 0), the PC Client TPM address.
pub const CRB_BASE: u64 = 0xFED4_0000;
/// One page: locality 0 only.
pub const CRB_SIZE: u64 = 0x1000;
/// The control area (`CTRL_REQ` onwards), which the ACPI TPM2 table points at.
pub const CRB_CTRL_AREA: u64 = CRB_BASE + REG_CTRL_REQ as u64;
/// The data buffer.
pub const CRB_DATA_BUFFER: u64 = CRB_BASE + DATA_BUFFER as u64;

const REG_LOC_STATE: usize = 0x00;
const REG_LOC_CTRL: usize = 0x08;
const REG_LOC_STS: usize = 0x0c;
const REG_INTF_ID: usize = 0x30;
const REG_CTRL_REQ: usize = 0x40;
const REG_CTRL_STS: usize = 0x44;
const REG_CTRL_CANCEL: usize = 0x48;
const REG_CTRL_START: usize = 0x4c;
const REG_INT_ENABLE: usize = 0x50;
const REG_INT_STS: usize = 0x54;
const REG_CMD_SIZE: usize = 0x58;
const REG_CMD_LADDR: usize = 0x5c;
const REG_CMD_HADDR: usize = 0x60;
const REG_RSP_SIZE: usize = 0x64;
const REG_RSP_ADDR: usize = 0x68;
const DATA_BUFFER: usize = 0x80;
const PAGE: usize = CRB_SIZE as usize;
/// Size of the data buffer: the rest of the page.
const BUFFER_SIZE: usize = PAGE - DATA_BUFFER;

const LOC_STATE_VALID: u32 = 1 << 7;
const LOC_STATE_ASSIGNED: u32 = 1 << 1;
const LOC_CTRL_REQUEST: u32 = 1 << 0;
const LOC_CTRL_RELINQUISH: u32 = 1 << 1;
const LOC_STS_GRANTED: u32 = 1 << 0;
const CTRL_REQ_CMD_READY: u32 = 1 << 0;
const CTRL_REQ_GO_IDLE: u32 = 1 << 1;
const CTRL_STS_IDLE: u32 = 1 << 1;
const CTRL_START_INVOKE: u32 = 1 << 0;
/// INTF_ID: InterfaceType 1 (CRB), InterfaceVersion 1, CapDataXferSizeSupport 3 (64 bytes),
/// CapCRB, InterfaceSelector 1 (CRB), IntfSelLock; no vendor or device id (0).
const INTF_ID: u64 = 0x1 | (0x1 << 4) | (0x3 << 11) | (1 << 14) | (1 << 17) | (1 << 19);

/// Errors logged before the device stops logging backend failures (the guest can cause them).
const MAX_LOGGED_ERRORS: u32 = 16;

/// The CRB device: the register page and the backend that runs commands.
pub struct Crb {
    page: Box<[u8; PAGE]>,
    backend: Box<dyn TpmBackend>,
    errors_logged: u32,
}

impl fmt::Debug for Crb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Crb")
            .field("loc_state", &self.reg(REG_LOC_STATE))
            .field("ctrl_sts", &self.reg(REG_CTRL_STS))
            .finish_non_exhaustive()
    }
}

impl Crb {
    pub fn new(backend: Box<dyn TpmBackend>) -> Self {
        let mut crb = Self {
            page: Box::new([0u8; PAGE]),
            backend,
            errors_logged: 0,
        };
        crb.set_reg(REG_LOC_STATE, LOC_STATE_VALID);
        crb.set_reg(REG_CTRL_STS, CTRL_STS_IDLE);
        crb.page[REG_INTF_ID..REG_INTF_ID + 8].copy_from_slice(&INTF_ID.to_le_bytes());
        crb.set_reg(REG_CMD_SIZE, BUFFER_SIZE as u32);
        crb.set_reg(REG_CMD_LADDR, CRB_DATA_BUFFER as u32);
        crb.set_reg(REG_CMD_HADDR, (CRB_DATA_BUFFER >> 32) as u32);
        crb.set_reg(REG_RSP_SIZE, BUFFER_SIZE as u32);
        crb.page[REG_RSP_ADDR..REG_RSP_ADDR + 8].copy_from_slice(&CRB_DATA_BUFFER.to_le_bytes());
        crb
    }

    fn reg(&self, off: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.page[off..off + 4]);
        u32::from_le_bytes(b)
    }

    fn set_reg(&mut self, off: usize, value: u32) {
        self.page[off..off + 4].copy_from_slice(&value.to_le_bytes());
    }

    /// Applies a write of `data` at `offset` (inside the register area) to the 32-bit register
    /// at `reg`, returning the new value if the write touched it.
    fn merged(&self, reg: usize, offset: usize, data: &[u8]) -> Option<u32> {
        let end = offset + data.len();
        if end <= reg || offset >= reg + 4 {
            return None;
        }
        let mut bytes = self.reg(reg).to_le_bytes();
        for (i, b) in data.iter().enumerate() {
            let at = offset + i;
            if (reg..reg + 4).contains(&at) {
                bytes[at - reg] = *b;
            }
        }
        Some(u32::from_le_bytes(bytes))
    }

    fn write_registers(&mut self, offset: usize, data: &[u8]) {
        if let Some(v) = self.merged(REG_LOC_CTRL, offset, data) {
            if v & LOC_CTRL_RELINQUISH != 0 {
                self.set_reg(REG_LOC_STATE, LOC_STATE_VALID);
                self.set_reg(REG_LOC_STS, 0);
            } else if v & LOC_CTRL_REQUEST != 0 {
                self.set_reg(REG_LOC_STATE, LOC_STATE_VALID | LOC_STATE_ASSIGNED);
                self.set_reg(REG_LOC_STS, LOC_STS_GRANTED);
            }
        }
        if let Some(v) = self.merged(REG_CTRL_REQ, offset, data) {
            // Both requests complete at once: the register reads back 0.
            if v & CTRL_REQ_GO_IDLE != 0 {
                self.set_reg(REG_CTRL_STS, CTRL_STS_IDLE);
            } else if v & CTRL_REQ_CMD_READY != 0 {
                self.set_reg(REG_CTRL_STS, 0);
            }
        }
        if let Some(v) = self.merged(REG_CTRL_CANCEL, offset, data) {
            self.set_reg(REG_CTRL_CANCEL, v & 1);
        }
        if let Some(v) = self.merged(REG_CTRL_START, offset, data) {
            if v & CTRL_START_INVOKE != 0 {
                self.run_command();
            }
        }
        if let Some(v) = self.merged(REG_INT_ENABLE, offset, data) {
            self.set_reg(REG_INT_ENABLE, v);
        }
        if let Some(v) = self.merged(REG_INT_STS, offset, data) {
            let sts = self.reg(REG_INT_STS) & !v;
            self.set_reg(REG_INT_STS, sts);
        }
    }

    /// Runs the command in the data buffer and leaves the response there. A command whose
    /// size field is out of bounds, a backend failure and a malformed response all give the
    /// guest a `TPM_RC_FAILURE` response.
    fn run_command(&mut self) {
        // Leaving the idle state implicitly, as a start without cmdReady does on hardware.
        self.set_reg(REG_CTRL_STS, 0);
        let buffer = &self.page[DATA_BUFFER..];
        let size = u32::from_be_bytes([buffer[2], buffer[3], buffer[4], buffer[5]]) as usize;
        let response = if !(10..=BUFFER_SIZE).contains(&size) {
            self.log_error(format_args!("guest command size {size} is out of bounds"));
            error_response(TPM_RC_FAILURE).to_vec()
        } else {
            let command = buffer[..size].to_vec();
            match self.backend.execute(&command) {
                Ok(r) if response_is_sane(&r) => r,
                Ok(r) => {
                    self.log_error(format_args!(
                        "the TPM backend answered {} bytes that are not a response",
                        r.len()
                    ));
                    error_response(TPM_RC_FAILURE).to_vec()
                }
                Err(e) => {
                    self.log_error(format_args!("the TPM backend failed: {e}"));
                    error_response(TPM_RC_FAILURE).to_vec()
                }
            }
        };
        self.page[DATA_BUFFER..DATA_BUFFER + response.len()].copy_from_slice(&response);
        self.set_reg(REG_CTRL_START, 0);
    }

    fn log_error(&mut self, what: fmt::Arguments<'_>) {
        if self.errors_logged < MAX_LOGGED_ERRORS {
            self.errors_logged += 1;
            tracing::warn!("vTPM: {what}");
            if self.errors_logged == MAX_LOGGED_ERRORS {
                tracing::warn!("vTPM: further errors are not logged");
            }
        }
    }
}

/// A response fits the buffer and its header's size field is its length.
fn response_is_sane(r: &[u8]) -> bool {
    (10..=BUFFER_SIZE).contains(&r.len())
        && u32::from_be_bytes([r[2], r[3], r[4], r[5]]) as usize == r.len()
}

impl BusDevice for Crb {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        match start.checked_add(data.len()).filter(|end| *end <= PAGE) {
            Some(end) => data.copy_from_slice(&self.page[start..end]),
            None => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let Some(end) = start.checked_add(data.len()).filter(|end| *end <= PAGE) else {
            return;
        };
        if start >= DATA_BUFFER {
            self.page[start..end].copy_from_slice(data);
            return;
        }
        // A write straddling the registers and the buffer: the buffer part is stored too.
        if end > DATA_BUFFER {
            let split = DATA_BUFFER - start;
            self.page[DATA_BUFFER..end].copy_from_slice(&data[split..]);
        }
        self.write_registers(start, &data[..data.len().min(DATA_BUFFER - start)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    type Boxed = Box<dyn std::error::Error + Send + Sync>;

    /// Records commands and answers with whatever `reply` returns.
    struct Fake {
        seen: Arc<Mutex<Vec<Vec<u8>>>>,
        reply: fn(&[u8]) -> Result<Vec<u8>, Boxed>,
    }

    impl TpmBackend for Fake {
        fn execute(&mut self, command: &[u8]) -> Result<Vec<u8>, Boxed> {
            self.seen.lock().expect("lock").push(command.to_vec());
            (self.reply)(command)
        }
    }

    fn ok_reply(_: &[u8]) -> Result<Vec<u8>, Boxed> {
        let mut r = vec![0x80, 0x01, 0, 0, 0, 14, 0, 0, 0, 0];
        r.extend([1, 2, 3, 4]);
        Ok(r)
    }

    fn crb(reply: fn(&[u8]) -> Result<Vec<u8>, Boxed>) -> (Crb, Arc<Mutex<Vec<Vec<u8>>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let dev = Crb::new(Box::new(Fake {
            seen: seen.clone(),
            reply,
        }));
        (dev, seen)
    }

    fn r32(dev: &mut Crb, off: u64) -> u32 {
        let mut b = [0u8; 4];
        dev.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    fn w32(dev: &mut Crb, off: u64, v: u32) {
        dev.write(off, &v.to_le_bytes());
    }

    const STARTUP: [u8; 12] = [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x44, 0, 0];

    /// The sequence Linux's tpm_crb runs for one command.
    fn linux_transmit(dev: &mut Crb, command: &[u8]) -> Vec<u8> {
        w32(dev, REG_LOC_CTRL as u64, LOC_CTRL_REQUEST);
        assert_eq!(
            r32(dev, REG_LOC_STATE as u64) & (LOC_STATE_ASSIGNED | LOC_STATE_VALID),
            LOC_STATE_ASSIGNED | LOC_STATE_VALID
        );
        w32(dev, REG_CTRL_REQ as u64, CTRL_REQ_CMD_READY);
        assert_eq!(r32(dev, REG_CTRL_REQ as u64), 0);
        assert_eq!(r32(dev, REG_CTRL_STS as u64) & CTRL_STS_IDLE, 0);
        w32(dev, REG_CTRL_CANCEL as u64, 0);
        for (i, chunk) in command.chunks(4).enumerate() {
            dev.write((DATA_BUFFER + 4 * i) as u64, chunk);
        }
        w32(dev, REG_CTRL_START as u64, CTRL_START_INVOKE);
        assert_eq!(r32(dev, REG_CTRL_START as u64), 0, "done");
        assert_eq!(r32(dev, REG_CTRL_STS as u64) & 1, 0, "no fatal error");
        let mut head = [0u8; 8];
        dev.read(DATA_BUFFER as u64, &mut head);
        let len = u32::from_be_bytes([head[2], head[3], head[4], head[5]]) as usize;
        let mut rsp = vec![0u8; len];
        dev.read(DATA_BUFFER as u64, &mut rsp);
        w32(dev, REG_CTRL_REQ as u64, CTRL_REQ_GO_IDLE);
        assert_eq!(r32(dev, REG_CTRL_STS as u64) & CTRL_STS_IDLE, CTRL_STS_IDLE);
        w32(dev, REG_LOC_CTRL as u64, LOC_CTRL_RELINQUISH);
        assert_eq!(r32(dev, REG_LOC_STATE as u64), LOC_STATE_VALID);
        rsp
    }

    #[test]
    fn test_crb_reset_state_describes_buffer_and_crb_interface() {
        let (mut dev, _) = crb(ok_reply);
        assert_eq!(r32(&mut dev, REG_LOC_STATE as u64), LOC_STATE_VALID);
        assert_eq!(r32(&mut dev, REG_CTRL_STS as u64), CTRL_STS_IDLE);
        assert_eq!(r32(&mut dev, REG_CMD_SIZE as u64), 0xf80);
        assert_eq!(r32(&mut dev, REG_CMD_LADDR as u64), 0xfed4_0080);
        assert_eq!(r32(&mut dev, REG_CMD_HADDR as u64), 0);
        let mut rsp = [0u8; 8];
        dev.read(REG_RSP_ADDR as u64, &mut rsp);
        assert_eq!(u64::from_le_bytes(rsp), 0xfed4_0080);
        assert_eq!(r32(&mut dev, REG_INTF_ID as u64) & 0xf, 1, "CRB interface");
    }

    #[test]
    fn test_crb_linux_sequence_runs_command_and_returns_response() {
        let (mut dev, seen) = crb(ok_reply);
        let rsp = linux_transmit(&mut dev, &STARTUP);
        assert_eq!(seen.lock().expect("lock").as_slice(), &[STARTUP.to_vec()]);
        assert_eq!(rsp, ok_reply(&[]).expect("reply"));
        // A second command works the same way.
        linux_transmit(&mut dev, &STARTUP);
        assert_eq!(seen.lock().expect("lock").len(), 2);
    }

    #[test]
    fn test_crb_backend_garbage_gives_tpm_failure() {
        fn short(_: &[u8]) -> Result<Vec<u8>, Boxed> {
            Ok(vec![0x80, 0x01, 0])
        }
        fn oversized(_: &[u8]) -> Result<Vec<u8>, Boxed> {
            let mut r = vec![0x80, 0x01, 0, 0, 0x10, 0, 0, 0, 0, 0];
            r.resize(0x1000, 0xaa);
            Ok(r)
        }
        fn lying_size(_: &[u8]) -> Result<Vec<u8>, Boxed> {
            Ok(vec![0x80, 0x01, 0, 0, 0, 200, 0, 0, 0, 0, 1, 2])
        }
        fn failing(_: &[u8]) -> Result<Vec<u8>, Boxed> {
            Err("swtpm went away".into())
        }
        for reply in [short, oversized, lying_size, failing] {
            let (mut dev, _) = crb(reply);
            let rsp = linux_transmit(&mut dev, &STARTUP);
            assert_eq!(rsp, error_response(TPM_RC_FAILURE));
        }
    }

    #[test]
    fn test_crb_hostile_command_size_not_sent_to_backend() {
        let (mut dev, seen) = crb(ok_reply);
        for size in [0u32, 9, 0xf81, u32::MAX] {
            let mut cmd = STARTUP.to_vec();
            cmd[2..6].copy_from_slice(&size.to_be_bytes());
            let rsp = linux_transmit(&mut dev, &cmd);
            assert_eq!(rsp, error_response(TPM_RC_FAILURE), "size {size}");
        }
        assert!(seen.lock().expect("lock").is_empty());
        // The largest command that fits is sent whole.
        let mut cmd = vec![0u8; 0xf80];
        cmd[2..6].copy_from_slice(&0xf80u32.to_be_bytes());
        linux_transmit(&mut dev, &cmd);
        assert_eq!(seen.lock().expect("lock")[0].len(), 0xf80);
    }

    #[test]
    fn test_crb_out_of_page_and_read_only_accesses_harmless() {
        let (mut dev, seen) = crb(ok_reply);
        let mut b = [0u8; 8];
        dev.read(0xffc, &mut b);
        assert_eq!(b, [0xff; 8], "straddles the page end");
        dev.read(u64::MAX, &mut b);
        assert_eq!(b, [0xff; 8]);
        dev.write(0xffc, &[1; 8]);
        dev.write(u64::MAX - 2, &[1; 8]);
        // Read-only registers keep their values.
        w32(&mut dev, REG_CMD_SIZE as u64, 0xffff_ffff);
        w32(&mut dev, REG_CMD_LADDR as u64, 0);
        dev.write(REG_RSP_ADDR as u64, &[0; 8]);
        w32(&mut dev, REG_LOC_STATE as u64, 0);
        assert_eq!(r32(&mut dev, REG_CMD_SIZE as u64), 0xf80);
        assert_eq!(r32(&mut dev, REG_CMD_LADDR as u64), 0xfed4_0080);
        assert_eq!(r32(&mut dev, REG_RSP_ADDR as u64), 0xfed4_0080);
        assert_eq!(r32(&mut dev, REG_LOC_STATE as u64), LOC_STATE_VALID);
        // Byte-wide and straddling writes: the start bit in the second byte of a 2-byte
        // write at 0x4b runs the command.
        dev.write(DATA_BUFFER as u64, &STARTUP);
        dev.write(REG_CTRL_START as u64 - 1, &[0, 1]);
        assert_eq!(seen.lock().expect("lock").len(), 1);
        // A write starting in the registers and running into the buffer stores the buffer part.
        dev.write(DATA_BUFFER as u64 - 2, &[9, 9, 7, 7]);
        let mut buf = [0u8; 2];
        dev.read(DATA_BUFFER as u64, &mut buf);
        assert_eq!(buf, [7, 7]);
    }
}
