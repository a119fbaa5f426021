//! A lock-free histogram of durations over fixed bucket bounds (`Histogram`), read as a
//! cumulative snapshot in the shape Prometheus exposes (`HistogramSnapshot`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Upper bounds (seconds) suited to fdatasync and RPC latencies: 50 µs to 10 s.
pub const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// A histogram of durations over fixed bucket bounds, recorded with atomics.
#[derive(Debug)]
pub struct Histogram {
    bounds_seconds: &'static [f64],
    /// One count per bound (not cumulative), then one for above the last bound.
    counts: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
}

/// A histogram read at one moment, in the shape Prometheus exposes it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound in seconds, observations at or below it)`, cumulative, ascending; the
    /// `+Inf` bucket is `count`.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of every observation, in seconds.
    pub sum_seconds: f64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    /// An empty histogram over `bounds_seconds` (ascending).
    pub fn new(bounds_seconds: &'static [f64]) -> Histogram {
        Histogram {
            bounds_seconds,
            counts: (0..=bounds_seconds.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// A histogram over `LATENCY_BUCKETS_SECONDS`.
    pub fn latency() -> Histogram {
        Histogram::new(LATENCY_BUCKETS_SECONDS)
    }

    /// Records one observation.
    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let i = self.bounds_seconds.partition_point(|&b| b < seconds);
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_nanos
            .fetch_add(duration_nanos(took), Ordering::Relaxed);
    }

    /// The histogram now.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0u64;
        let mut buckets = Vec::with_capacity(self.bounds_seconds.len());
        for (bound, count) in self.bounds_seconds.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            buckets.push((*bound, cumulative));
        }
        let above = self.counts.last().map_or(0, |c| c.load(Ordering::Relaxed));
        HistogramSnapshot {
            buckets,
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            count: cumulative + above,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_with_bounds_inclusive() {
        const BOUNDS: &[f64] = &[0.001, 0.01, 0.1];
        let h = Histogram::new(BOUNDS);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(1));
        h.observe(Duration::from_millis(50));
        h.observe(Duration::from_secs(2));
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![(0.001, 2), (0.01, 2), (0.1, 3)]);
        assert_eq!(s.count, 4);
        assert!((s.sum_seconds - 2.0515).abs() < 1e-9, "{}", s.sum_seconds);
    }
}
