//! Phase timings of `zonectl run`, printed to stderr when `ZONES_TIMING` is set, for
//! `hack/bench/run-phases`: how long each step took since the previous one.

use std::sync::{Mutex, OnceLock};
use std::time::Instant;

static LAST: OnceLock<Option<Mutex<Instant>>> = OnceLock::new();

fn last() -> &'static Option<Mutex<Instant>> {
    LAST.get_or_init(|| std::env::var_os("ZONES_TIMING").map(|_| Mutex::new(Instant::now())))
}

/// Starts the clock (call first thing); a no-op unless `ZONES_TIMING` is set.
pub fn start() {
    let _ = last();
}

/// Prints how long `phase` took since the previous mark.
pub fn mark(phase: &str) {
    if let Some(last) = last() {
        let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        eprintln!("zonectl: timing: {phase}: {} ms", (now - *last).as_millis());
        *last = now;
    }
}
