//! Summaries of repeated measurements: the median over rounds, latency percentiles of sorted
//! samples, and for long runs an HDR histogram of latencies ([`Latencies`]) and a timeline of
//! one-second buckets ([`Timeline`], what `--plot` draws). Pure.

use std::time::Duration;

use hdrhistogram::Histogram;

/// The median of `values` (the mean of the middle two for an even count; 0 if empty).
pub(super) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[mid],
        _ => (values[mid - 1] + values[mid]) / 2.0,
    }
}

/// The `p`-th percentile (0 < p <= 100) of `sorted` by the nearest-rank method: the smallest
/// sample with at least `p`% of the samples at or below it. `None` if there are no samples.
pub(super) fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, n) - 1])
}

/// Longest latency a histogram records, in microseconds (longer ones are clamped to it).
const MAX_LATENCY_MICROS: u64 = 60_000_000;
/// Significant decimal digits the histograms keep.
const SIGNIFICANT_DIGITS: u8 = 3;
/// Significant decimal digits a timeline's one-second histograms keep: 1% is plenty for a
/// plot, and every client task starts one each second, which at 3 digits (~140 KB of zeroed
/// counts each) cost the benchmark process ~8% of its CPU in page faults.
const TIMELINE_SIGNIFICANT_DIGITS: u8 = 2;

/// A latency histogram in microseconds (HDR: 3 significant digits up to 60 s).
#[derive(Debug, Clone)]
pub(super) struct Latencies {
    histogram: Histogram<u64>,
}

/// What a report prints of a [`Latencies`], in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct LatencySummary {
    pub(super) count: u64,
    pub(super) mean_us: f64,
    pub(super) min_us: u64,
    pub(super) max_us: u64,
    pub(super) p50_us: u64,
    pub(super) p95_us: u64,
    pub(super) p99_us: u64,
    pub(super) p999_us: u64,
}

impl Latencies {
    /// An empty histogram.
    pub(super) fn new() -> Latencies {
        Latencies::with_digits(SIGNIFICANT_DIGITS)
    }

    /// An empty histogram of a timeline's second (see `TIMELINE_SIGNIFICANT_DIGITS`).
    fn coarse() -> Latencies {
        Latencies::with_digits(TIMELINE_SIGNIFICANT_DIGITS)
    }

    fn with_digits(digits: u8) -> Latencies {
        let histogram = Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, digits)
            .expect("1 us to 60 s at 2 or 3 significant digits is a valid histogram");
        Latencies { histogram }
    }

    /// Records one latency (at least 1 us, at most 60 s).
    pub(super) fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.histogram
            .saturating_record(micros.clamp(1, MAX_LATENCY_MICROS));
    }

    /// Adds every latency of `other`.
    pub(super) fn merge(&mut self, other: &Latencies) {
        // Same bounds on both sides, so adding cannot fail; a failure would only lose samples.
        let _ = self.histogram.add(&other.histogram);
    }

    /// Latencies recorded.
    pub(super) fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// Count, mean and percentiles; `None` if nothing was recorded.
    pub(super) fn summary(&self) -> Option<LatencySummary> {
        let h = &self.histogram;
        (!h.is_empty()).then(|| LatencySummary {
            count: h.len(),
            mean_us: h.mean(),
            min_us: h.min(),
            max_us: h.max(),
            p50_us: h.value_at_quantile(0.50),
            p95_us: h.value_at_quantile(0.95),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
        })
    }
}

/// Operations and latencies in one-second buckets from the start of a phase.
#[derive(Debug, Clone)]
pub(super) struct Timeline {
    buckets: Vec<Latencies>,
}

/// One second of a [`Timeline`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Second {
    /// Seconds since the start (the bucket `[second, second + 1)`).
    pub(super) second: u64,
    /// Operations completed in it.
    pub(super) ops: u64,
    /// Their latencies; `None` for a second without any.
    pub(super) latency: Option<LatencySummary>,
}

/// Most one-second buckets a timeline keeps (a day); later operations land in the last.
const MAX_SECONDS: usize = 86_400;

impl Timeline {
    /// An empty timeline.
    pub(super) fn new() -> Timeline {
        Timeline {
            buckets: Vec::new(),
        }
    }

    /// Records an operation that completed `at` after the start and took `latency`.
    pub(super) fn record(&mut self, at: Duration, latency: Duration) {
        let second = usize::try_from(at.as_secs())
            .unwrap_or(usize::MAX)
            .min(MAX_SECONDS - 1);
        if self.buckets.len() <= second {
            self.buckets.resize_with(second + 1, Latencies::coarse);
        }
        self.buckets[second].record(latency);
    }

    /// Adds every operation of `other`, second by second.
    pub(super) fn merge(&mut self, other: &Timeline) {
        if self.buckets.len() < other.buckets.len() {
            self.buckets
                .resize_with(other.buckets.len(), Latencies::coarse);
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            mine.merge(theirs);
        }
    }

    /// Every second from the start to the last one with an operation.
    pub(super) fn seconds(&self) -> Vec<Second> {
        self.buckets
            .iter()
            .enumerate()
            .map(|(i, b)| Second {
                second: i as u64,
                ops: b.count(),
                latency: b.summary(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_summarise_in_microseconds() {
        let mut a = Latencies::new();
        assert_eq!(a.summary(), None);
        for us in 1..=1000 {
            a.record(Duration::from_micros(us));
        }
        let mut b = Latencies::new();
        b.record(Duration::from_secs(3600));
        b.record(Duration::ZERO);
        a.merge(&b);
        let s = a.summary().unwrap();
        assert_eq!(s.count, 1002);
        assert_eq!(s.min_us, 1);
        assert!((s.max_us as f64 - 60e6).abs() / 60e6 < 0.001, "{s:?}");
        assert!((499..=502).contains(&s.p50_us), "{s:?}");
        assert!((947..=952).contains(&s.p95_us), "{s:?}");
        assert!((989..=992).contains(&s.p99_us), "{s:?}");
        assert!(s.p50_us <= s.p95_us && s.p95_us <= s.p99_us && s.p99_us <= s.p999_us);
    }

    #[test]
    fn a_timeline_buckets_by_second() {
        let ms = Duration::from_millis;
        let mut t = Timeline::new();
        t.record(ms(100), ms(2));
        t.record(ms(999), ms(4));
        t.record(ms(2500), ms(8));
        let mut u = Timeline::new();
        u.record(ms(3100), ms(1));
        u.record(ms(1), ms(1));
        t.merge(&u);
        let seconds = t.seconds();
        let ops: Vec<u64> = seconds.iter().map(|s| s.ops).collect();
        assert_eq!(ops, [3, 0, 1, 1]);
        assert_eq!(seconds[1].latency, None);
        let p50 = seconds[2].latency.unwrap().p50_us;
        assert!((8000..=8080).contains(&p50), "2 significant digits: {p50}");
        assert_eq!(seconds[3].second, 3);
    }

    #[test]
    fn median_takes_the_middle() {
        assert_eq!(median(vec![]), 0.0);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let ms = |n: u64| Duration::from_millis(n);
        let samples: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&samples, 50.0), Some(ms(50)));
        assert_eq!(percentile(&samples, 99.0), Some(ms(99)));
        assert_eq!(percentile(&samples, 100.0), Some(ms(100)));
        assert_eq!(percentile(&samples, 0.1), Some(ms(1)));
        assert_eq!(percentile(&[ms(7)], 99.0), Some(ms(7)));
        assert_eq!(percentile(&[ms(1), ms(2)], 50.0), Some(ms(1)));
        assert_eq!(percentile(&[ms(1), ms(2)], 99.0), Some(ms(2)));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
