//! Progress on stderr while a phase runs: a line every few seconds with the operations done so
//! far, then one line with the phase's result. Phases shorter than the interval print only the
//! result.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::bench::table::thousands;

/// Time between two progress lines.
const INTERVAL: Duration = Duration::from_secs(3);

/// Runs `work`, which counts its operations in the counter it is given, printing progress
/// against `total` on stderr if `enabled`. `work` returns the time the measured part took.
pub(super) fn track(
    label: &str,
    total: u64,
    enabled: bool,
    work: impl FnOnce(&AtomicU64) -> anyhow::Result<Duration>,
) -> anyhow::Result<Duration> {
    let done = AtomicU64::new(0);
    let (stop, stopped) = mpsc::sync_channel::<()>(1);
    let started = Instant::now();
    let outcome = std::thread::scope(|scope| {
        if enabled {
            let done = &done;
            scope.spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
                    let n = done.load(Ordering::Relaxed);
                    let secs = started.elapsed().as_secs_f64();
                    eprintln!(
                        "  {label}: {}/{} ops ({:.0}%), {} ops/s so far",
                        thousands(n as f64),
                        thousands(total as f64),
                        100.0 * n as f64 / total.max(1) as f64,
                        thousands(n as f64 / secs.max(1e-9)),
                    );
                }
            });
        }
        let outcome = work(&done);
        drop(stop);
        outcome
    });
    if let (true, Ok(elapsed)) = (enabled, &outcome) {
        eprintln!(
            "{label}: {} ops in {:.2} s, {} ops/s",
            thousands(total as f64),
            elapsed.as_secs_f64(),
            thousands(total as f64 / elapsed.as_secs_f64().max(1e-9)),
        );
    }
    outcome
}
