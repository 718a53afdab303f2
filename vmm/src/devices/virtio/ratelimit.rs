//! Keeps log sites the guest can trigger from flooding the host's logs.

use std::time::{Duration, Instant};

/// Messages allowed per window.
const BURST: u32 = 10;
const WINDOW: Duration = Duration::from_secs(1);

/// Allows [`BURST`] messages per [`WINDOW`] and reports how many were held back.
#[derive(Debug)]
pub struct LogLimiter {
    /// Names the device in the summary of held-back messages.
    device: &'static str,
    window_start: Instant,
    emitted: u32,
    suppressed: u64,
}

impl LogLimiter {
    pub fn new(device: &'static str, now: Instant) -> Self {
        Self {
            device,
            window_start: now,
            emitted: 0,
            suppressed: 0,
        }
    }

    /// Whether a message may be logged now.
    pub fn allow(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.window_start) >= WINDOW {
            if self.suppressed > 0 {
                tracing::warn!(
                    suppressed = self.suppressed,
                    "{}: log messages were rate-limited",
                    self.device
                );
            }
            self.window_start = now;
            self.emitted = 0;
            self.suppressed = 0;
        }
        if self.emitted < BURST {
            self.emitted += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_log_limiter_burst_exceeded_suppresses_until_next_window() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new("test", t0);
        assert_eq!((0..100).filter(|_| l.allow(t0)).count(), BURST as usize);
        assert!(l.allow(t0 + WINDOW));
    }
}
