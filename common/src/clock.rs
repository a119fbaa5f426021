//! Injected time. Consensus, lease and placement logic take a `Clock` so tests control time.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::Timestamp;

/// A source of wall-clock time (for cell timestamps) and monotonic time (for leases).
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Wall-clock microseconds since the Unix epoch.
    fn now(&self) -> Timestamp;
    /// Monotonic time, for leases and timeouts.
    fn monotonic(&self) -> Instant;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        Timestamp(micros)
    }

    fn monotonic(&self) -> Instant {
        Instant::now()
    }
}

/// A clock tests move by hand; monotonic time advances with it from a fixed origin.
#[derive(Debug, Clone)]
pub struct ManualClock {
    micros: Arc<AtomicI64>,
    origin: Instant,
    origin_micros: i64,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: Timestamp) -> Self {
        ManualClock {
            micros: Arc::new(AtomicI64::new(start.0)),
            origin: Instant::now(),
            origin_micros: start.0,
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.micros
            .fetch_add(by.as_micros() as i64, Ordering::SeqCst);
    }

    /// Sets the wall clock (monotonic time never goes back).
    pub fn set(&self, to: Timestamp) {
        self.micros.store(to.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.micros.load(Ordering::SeqCst))
    }

    fn monotonic(&self) -> Instant {
        let elapsed = (self.micros.load(Ordering::SeqCst) - self.origin_micros).max(0);
        self.origin + Duration::from_micros(elapsed as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_both_times() {
        let c = ManualClock::new(Timestamp(1_000));
        let m0 = c.monotonic();
        c.advance(Duration::from_millis(5));
        assert_eq!(c.now(), Timestamp(6_000));
        assert_eq!(c.monotonic() - m0, Duration::from_millis(5));
    }
}
