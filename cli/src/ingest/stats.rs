//! What `tabula ingest` counts while it runs: acknowledged nodes, batches, closed loops, retried
//! entries, and batch latencies in a [`Histogram`] (the shared one from `tabula_common::metrics`,
//! over fine bounds reaching two minutes, since a batch may wait out a failover). Writers add to one
//! [`Stats`]; the progress line every few seconds reads the difference between two
//! [`Sample`]s, the final summary the whole run. Percentiles are interpolated within a
//! histogram bucket, as Prometheus's `histogram_quantile` does. Pure apart from the atomics.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tabula_common::metrics::{Histogram, HistogramSnapshot};

/// Upper bounds (seconds) of the batch-latency buckets: 1 ms to 2 min, ten per decade (each
/// about 1.26 times the one before), so an interpolated percentile is within ~13%.
static BATCH_BUCKETS_SECONDS: LazyLock<Vec<f64>> = LazyLock::new(|| {
    (0..=51)
        .map(|i| 0.001 * 10f64.powf(f64::from(i) / 10.0))
        .collect()
});

/// Counters shared by every writer of one run.
#[derive(Debug)]
pub(super) struct Stats {
    acked_nodes: AtomicU64,
    relinked_nodes: AtomicU64,
    batches: AtomicU64,
    loops_closed: AtomicU64,
    retries: AtomicU64,
    batch_latency: Histogram,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            acked_nodes: AtomicU64::new(0),
            relinked_nodes: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            loops_closed: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            batch_latency: Histogram::new(BATCH_BUCKETS_SECONDS.as_slice()),
        }
    }
}

/// The counters at one moment.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Sample {
    /// Fresh nodes acknowledged.
    pub(super) acked_nodes: u64,
    /// Nodes rewritten to close loops.
    pub(super) relinked_nodes: u64,
    /// Batches acknowledged (fresh and closing).
    pub(super) batches: u64,
    /// Loops closed.
    pub(super) loops_closed: u64,
    /// Entries the writers sent again after a failure.
    pub(super) retries: u64,
    /// Latencies of acknowledged batches (first send to last acknowledgement).
    pub(super) latency: HistogramSnapshot,
}

impl Stats {
    /// Records an acknowledged fresh batch of `nodes` that took `took`.
    pub(super) fn fresh_batch(&self, nodes: u64, took: Duration) {
        self.acked_nodes.fetch_add(nodes, Ordering::Relaxed);
        self.batch(took);
    }

    /// Records an acknowledged closing batch of `nodes` that took `took`.
    pub(super) fn closing_batch(&self, nodes: u64, took: Duration) {
        self.relinked_nodes.fetch_add(nodes, Ordering::Relaxed);
        self.loops_closed.fetch_add(1, Ordering::Relaxed);
        self.batch(took);
    }

    fn batch(&self, took: Duration) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batch_latency.observe(took);
    }

    /// Records `entries` entries sent again.
    pub(super) fn retried(&self, entries: u64) {
        self.retries.fetch_add(entries, Ordering::Relaxed);
    }

    /// The counters now.
    pub(super) fn sample(&self) -> Sample {
        Sample {
            acked_nodes: self.acked_nodes.load(Ordering::Relaxed),
            relinked_nodes: self.relinked_nodes.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            loops_closed: self.loops_closed.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            latency: self.batch_latency.snapshot(),
        }
    }
}

impl Sample {
    /// What happened between `earlier` and `self`.
    pub(super) fn since(&self, earlier: &Sample) -> Sample {
        Sample {
            acked_nodes: self.acked_nodes.saturating_sub(earlier.acked_nodes),
            relinked_nodes: self.relinked_nodes.saturating_sub(earlier.relinked_nodes),
            batches: self.batches.saturating_sub(earlier.batches),
            loops_closed: self.loops_closed.saturating_sub(earlier.loops_closed),
            retries: self.retries.saturating_sub(earlier.retries),
            latency: HistogramSnapshot {
                buckets: self
                    .latency
                    .buckets
                    .iter()
                    .zip(&earlier.latency.buckets)
                    .map(|((bound, now), (_, then))| (*bound, now.saturating_sub(*then)))
                    .collect(),
                sum_seconds: (self.latency.sum_seconds - earlier.latency.sum_seconds).max(0.0),
                count: self.latency.count.saturating_sub(earlier.latency.count),
            },
        }
    }

    /// Nodes acknowledged per second over `elapsed`.
    pub(super) fn nodes_per_second(&self, elapsed: Duration) -> f64 {
        let seconds = elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.acked_nodes as f64 / seconds
        } else {
            0.0
        }
    }

    /// The progress line for a period of `elapsed` (`self` is the period's difference, rates
    /// and percentiles are over it), with the run's `total` so far.
    pub(super) fn progress_line(&self, elapsed: Duration, total: &Sample) -> String {
        format!(
            "ingest: {} nodes acked, {:.0} nodes/s, batch p50 {} p99 {}, {} retries, {} loops closed",
            total.acked_nodes,
            self.nodes_per_second(elapsed),
            millis(quantile(&self.latency, 0.50)),
            millis(quantile(&self.latency, 0.99)),
            total.retries,
            total.loops_closed,
        )
    }
}

/// `d` as milliseconds for a person ("-" when there is none).
pub(super) fn millis(d: Option<Duration>) -> String {
    match d {
        Some(d) => format!("{:.1} ms", d.as_secs_f64() * 1000.0),
        None => "-".to_owned(),
    }
}

/// The `q`-quantile (0 < q <= 1) of `snapshot`, interpolated linearly within its bucket (from
/// the previous bound, or 0); an observation above the last bound counts as the last bound.
/// `None` without observations.
pub(super) fn quantile(snapshot: &HistogramSnapshot, q: f64) -> Option<Duration> {
    if snapshot.count == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * snapshot.count as f64;
    let mut lower_bound = 0.0;
    let mut lower_count = 0u64;
    for &(bound, cumulative) in &snapshot.buckets {
        if cumulative as f64 >= rank && cumulative > lower_count {
            let in_bucket = (cumulative - lower_count) as f64;
            let fraction = (rank - lower_count as f64) / in_bucket;
            let seconds = lower_bound + (bound - lower_bound) * fraction.clamp(0.0, 1.0);
            return Some(Duration::from_secs_f64(seconds));
        }
        lower_bound = bound;
        lower_count = cumulative;
    }
    Some(Duration::from_secs_f64(lower_bound))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn quantiles_interpolate_within_a_bucket() {
        let stats = Stats::default();
        assert_eq!(quantile(&stats.sample().latency, 0.5), None);
        // 100 batches between 100 and 200 ms: all in the (0.1, 0.2] bucket.
        for i in 0..100 {
            stats.fresh_batch(10, ms(101 + i));
        }
        let s = stats.sample().latency;
        let p50 = quantile(&s, 0.5).unwrap();
        assert!(p50 > ms(130) && p50 < ms(170), "{p50:?}");
        let p99 = quantile(&s, 0.99).unwrap();
        assert!(p99 > ms(180) && p99 <= ms(220), "{p99:?}");
    }

    #[test]
    fn an_observation_past_the_last_bound_counts_as_the_last_bound() {
        let stats = Stats::default();
        stats.fresh_batch(1, Duration::from_secs(600));
        let p99 = quantile(&stats.sample().latency, 0.99).unwrap();
        assert!(
            p99 >= Duration::from_secs(120) && p99 < Duration::from_secs(130),
            "{p99:?}"
        );
    }

    #[test]
    fn a_period_counts_only_what_happened_in_it() {
        let stats = Stats::default();
        stats.fresh_batch(100, ms(3));
        stats.retried(2);
        let before = stats.sample();
        stats.fresh_batch(50, ms(700));
        stats.closing_batch(50, ms(700));
        let period = stats.sample().since(&before);
        assert_eq!(
            (
                period.acked_nodes,
                period.relinked_nodes,
                period.batches,
                period.loops_closed,
                period.retries
            ),
            (50, 50, 2, 1, 0)
        );
        assert_eq!(period.latency.count, 2);
        let p50 = quantile(&period.latency, 0.5).unwrap();
        assert!(p50 > ms(500) && p50 <= ms(1000), "{p50:?}");
        assert_eq!(period.nodes_per_second(Duration::from_secs(5)), 10.0);
        let line = period.progress_line(Duration::from_secs(5), &stats.sample());
        assert!(
            line.starts_with("ingest: 150 nodes acked, 10 nodes/s, batch p50 "),
            "{line}"
        );
        assert!(line.ends_with(", 2 retries, 1 loops closed"), "{line}");
    }
}
