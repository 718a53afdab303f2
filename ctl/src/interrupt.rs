//! SIGINT, SIGTERM and SIGHUP while a zone runs.
//!
//! The signals are blocked in the main thread and taken by one thread with `sigwait`. While
//! nothing needs cleaning up the process exits at once (128+signal). Once armed, the signal
//! kills the VMM instead: every blocking step of `zonectl run` then fails (the agent
//! connection closes, the VMM is seen gone) and the ordinary error path removes the state
//! directory, so cleanup lives in one place, the destructors.

use std::io;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

use nix::sys::signal::{kill, SigSet, Signal};
use nix::unistd::Pid;

#[derive(Debug, Default)]
struct State {
    armed: bool,
    vmm: Option<Pid>,
}

/// How the VMM is stopped on a signal.
#[derive(Debug, Clone, Copy, Default)]
struct StopSignal(Option<Signal>);

impl StopSignal {
    fn get(self) -> Signal {
        self.0.unwrap_or(Signal::SIGKILL)
    }
}

#[derive(Debug, Default)]
struct Shared {
    /// The signal received, 0 if none.
    signal: AtomicI32,
    state: Mutex<State>,
    stop_with: StopSignal,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Handle on the interrupt handler; cheap to clone.
#[derive(Debug, Clone)]
pub struct Interrupt {
    shared: Arc<Shared>,
}

/// While alive, a signal kills the VMM instead of exiting the process.
#[derive(Debug)]
pub struct Armed {
    shared: Arc<Shared>,
}

impl Interrupt {
    /// Blocks the signals in the calling thread (call it before spawning threads) and starts
    /// the thread that takes them.
    pub fn install() -> io::Result<Self> {
        Self::install_stopping_with(Signal::SIGKILL)
    }

    /// Like [`Interrupt::install`], but a signal sends `stop` to the VMM instead of SIGKILL
    /// (SIGTERM makes zone-vmm power the guest off and exit).
    pub fn install_stopping_with(stop: Signal) -> io::Result<Self> {
        let mut set = SigSet::empty();
        for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
            set.add(signal);
        }
        set.thread_block().map_err(io::Error::from)?;
        let shared = Arc::new(Shared {
            stop_with: StopSignal(Some(stop)),
            ..Shared::default()
        });
        let handler = Arc::clone(&shared);
        thread::Builder::new()
            .name("signals".to_string())
            .spawn(move || loop {
                if let Ok(signal) = set.wait() {
                    handle(&handler, signal);
                }
            })?;
        Ok(Interrupt { shared })
    }

    /// From now until the guard drops, cleanup is needed: a signal must not exit at once.
    pub fn arm(&self) -> Armed {
        self.shared.lock().armed = true;
        Armed {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Records the VMM to kill on a signal (`None` once it has exited). If a signal already
    /// arrived, the VMM is killed now.
    pub fn set_vmm(&self, pid: Option<Pid>) {
        self.shared.lock().vmm = pid;
        if let (Some(pid), Some(_)) = (pid, self.received()) {
            let _ = kill(pid, self.shared.stop_with.get());
        }
    }

    /// The signal received, if any.
    pub fn received(&self) -> Option<Signal> {
        Signal::try_from(self.shared.signal.load(Ordering::SeqCst)).ok()
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        self.shared.lock().armed = false;
    }
}

fn handle(shared: &Shared, signal: Signal) {
    shared.signal.store(signal as i32, Ordering::SeqCst);
    let state = shared.lock();
    if let Some(pid) = state.vmm {
        tracing::debug!(?signal, pid = pid.as_raw(), "stopping the VMM");
        let _ = kill(pid, shared.stop_with.get());
    }
    if !state.armed {
        std::process::exit(128 + signal as i32);
    }
}
