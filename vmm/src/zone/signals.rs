//! Signals the VMM handles: SIGTERM/SIGINT/SIGHUP ask the zone to stop; a real-time signal
//! kicks vCPU threads out of `KVM_RUN` so they can see that the zone is ending.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicI32, Ordering};

use libc::{c_int, c_void, siginfo_t};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::signal::{register_signal_handler, SIGRTMIN};

/// The eventfd the stop handler writes to; -1 until installed.
static STOP_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_stop_signal(_: c_int, _: *mut siginfo_t, _: *mut c_void) {
    let fd = STOP_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let one: u64 = 1;
        // SAFETY: write(2) is async-signal-safe; `one` is a valid 8-byte buffer and `fd` is an
        // eventfd kept open for the life of the process (leaked in `install_stop_handlers`).
        unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    }
}

extern "C" fn on_kick(_: c_int, _: *mut siginfo_t, _: *mut c_void) {}

/// The signal used to interrupt vCPU threads.
pub fn kick_signal() -> c_int {
    SIGRTMIN()
}

/// Routes SIGTERM, SIGINT and SIGHUP to `evt`, and installs the vCPU kick handler.
pub fn install(evt: &EventFd) -> std::io::Result<()> {
    let fd = evt.try_clone()?;
    STOP_FD.store(fd.as_raw_fd(), Ordering::SeqCst);
    // The handler may run at any time until exit, so its fd must never close.
    std::mem::forget(fd);
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        register_signal_handler(sig, on_stop_signal).map_err(std::io::Error::from)?;
    }
    register_signal_handler(kick_signal(), on_kick).map_err(std::io::Error::from)
}
