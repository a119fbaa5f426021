//! The closed-loop driver of the cluster benchmarks: `concurrency` client tasks share a
//! budget of `total` operations and each runs the next one as soon as its last one finished.
//! Every operation's latency goes into its kind's HDR histogram and into a one-second
//! timeline (for `--plot`); failures are counted per kind, never retried by the driver (the
//! client library already retries what is retryable). Progress goes to stderr every few
//! seconds. Shared by `bench ycsb` and `bench paper`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tabula_client::Row;
use tabula_common::Error;
use tokio::task::JoinSet;

use crate::bench::stats::{Latencies, Timeline};
use crate::bench::table::thousands;

/// Time between two progress lines.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(3);

/// What one successful operation moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(in crate::bench) struct Moved {
    /// Rows read or written.
    pub(in crate::bench) rows: u64,
    /// Payload bytes read or written.
    pub(in crate::bench) bytes: u64,
}

impl Moved {
    /// Counts `row` in: one row and its values' bytes.
    pub(in crate::bench) fn add_row(&mut self, row: &Row) {
        self.rows += 1;
        self.bytes += row.cells.iter().map(|c| c.value.len() as u64).sum::<u64>();
    }

    /// Rows and value bytes of `rows`.
    pub(in crate::bench) fn of_rows(rows: &[Row]) -> Moved {
        let mut moved = Moved::default();
        for row in rows {
            moved.add_row(row);
        }
        moved
    }
}

/// One client task: runs operation number `i` (of the whole run) and says which kind it was.
pub(in crate::bench) trait Worker: Send + 'static {
    /// The kind of operation `i` and its outcome.
    fn op(&mut self, i: u64) -> impl Future<Output = (&'static str, Result<Moved, Error>)> + Send;
}

/// The measurements of one kind of operation.
#[derive(Debug, Clone)]
pub(in crate::bench) struct KindStats {
    pub(in crate::bench) latencies: Latencies,
    pub(in crate::bench) failed: u64,
    /// The first failure's message.
    pub(in crate::bench) first_error: Option<String>,
    pub(in crate::bench) moved: Moved,
}

impl KindStats {
    fn new() -> KindStats {
        KindStats {
            latencies: Latencies::new(),
            failed: 0,
            first_error: None,
            moved: Moved::default(),
        }
    }

    fn merge(&mut self, other: &KindStats) {
        self.latencies.merge(&other.latencies);
        self.failed += other.failed;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
        self.moved.rows += other.moved.rows;
        self.moved.bytes += other.moved.bytes;
    }

    /// Successful operations.
    pub(in crate::bench) fn ops(&self) -> u64 {
        self.latencies.count()
    }
}

/// What a driven phase measured.
#[derive(Debug, Clone)]
pub(in crate::bench) struct Phase {
    /// Per operation kind, by name.
    pub(in crate::bench) kinds: BTreeMap<&'static str, KindStats>,
    /// Every successful operation, by second.
    pub(in crate::bench) timeline: Timeline,
    /// From the start to the end of the last operation.
    pub(in crate::bench) elapsed: Duration,
}

impl Phase {
    /// A phase that has not run yet.
    pub(in crate::bench) fn empty() -> Phase {
        Phase {
            kinds: BTreeMap::new(),
            timeline: Timeline::new(),
            elapsed: Duration::ZERO,
        }
    }

    /// Operations that succeeded, every kind.
    pub(in crate::bench) fn ops(&self) -> u64 {
        self.kinds.values().map(KindStats::ops).sum()
    }

    /// Operations that failed, every kind.
    pub(in crate::bench) fn failed(&self) -> u64 {
        self.kinds.values().map(|k| k.failed).sum()
    }

    /// Successful operations per second.
    pub(in crate::bench) fn ops_per_sec(&self) -> f64 {
        self.ops() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Everything moved, every kind.
    pub(in crate::bench) fn moved(&self) -> Moved {
        self.kinds.values().fold(Moved::default(), |a, k| Moved {
            rows: a.rows + k.moved.rows,
            bytes: a.bytes + k.moved.bytes,
        })
    }
}

/// One task's share.
struct Share {
    kinds: BTreeMap<&'static str, KindStats>,
    timeline: Timeline,
}

/// Runs `total` operations on `workers` (one task each), printing progress as `label` if
/// `progress`. Fails if not a single operation succeeded.
pub(in crate::bench) async fn drive<W: Worker>(
    label: &str,
    total: u64,
    workers: Vec<W>,
    progress: bool,
) -> anyhow::Result<Phase> {
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for mut worker in workers {
        let next = next.clone();
        let done = done.clone();
        tasks.spawn(async move {
            let mut share = Share {
                kinds: BTreeMap::new(),
                timeline: Timeline::new(),
            };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let op_started = Instant::now();
                let (kind, outcome) = worker.op(i).await;
                let latency = op_started.elapsed();
                let stats = share.kinds.entry(kind).or_insert_with(KindStats::new);
                match outcome {
                    Ok(moved) => {
                        stats.latencies.record(latency);
                        stats.moved.rows += moved.rows;
                        stats.moved.bytes += moved.bytes;
                        share.timeline.record(started.elapsed(), latency);
                    }
                    Err(e) => {
                        stats.failed += 1;
                        if stats.first_error.is_none() {
                            stats.first_error = Some(e.to_string());
                        }
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            share
        });
    }
    let mut phase = Phase::empty();
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + PROGRESS_INTERVAL,
        PROGRESS_INTERVAL,
    );
    let mut last = (0u64, Instant::now());
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(joined) => {
                    let share = joined.context("a client task failed")?;
                    for (kind, stats) in &share.kinds {
                        phase.kinds.entry(kind).or_insert_with(KindStats::new).merge(stats);
                    }
                    phase.timeline.merge(&share.timeline);
                }
                None => break,
            },
            _ = ticker.tick(), if progress => {
                let n = done.load(Ordering::Relaxed);
                let now = Instant::now();
                let recent = (n - last.0) as f64 / (now - last.1).as_secs_f64().max(1e-9);
                last = (n, now);
                eprintln!(
                    "  {label}: {}/{} ops after {:.0} s, {} ops/s now",
                    thousands(n as f64),
                    thousands(total as f64),
                    started.elapsed().as_secs_f64(),
                    thousands(recent),
                );
            }
        }
    }
    phase.elapsed = started.elapsed();
    if phase.ops() == 0 && total > 0 {
        let first = phase.kinds.values().find_map(|k| k.first_error.clone());
        bail!(
            "{label}: no operation succeeded ({} failed; first: {})",
            phase.failed(),
            first.as_deref().unwrap_or("none")
        );
    }
    if progress {
        eprintln!(
            "{label}: {} ops in {:.2} s, {} ops/s{}",
            thousands(phase.ops() as f64),
            phase.elapsed.as_secs_f64(),
            thousands(phase.ops_per_sec()),
            match phase.failed() {
                0 => String::new(),
                n => format!(", {n} failed"),
            }
        );
    }
    Ok(phase)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every third operation fails; the others are reads of one 10-byte row.
    struct Every3rd;

    impl Worker for Every3rd {
        async fn op(&mut self, i: u64) -> (&'static str, Result<Moved, Error>) {
            tokio::task::yield_now().await;
            if i % 3 == 2 {
                ("WRITE", Err(Error::internal("nope")))
            } else {
                ("READ", Ok(Moved { rows: 1, bytes: 10 }))
            }
        }
    }

    #[test]
    fn rows_count_with_their_values_bytes() {
        let cell = |value: &'static str| tabula_client::Cell {
            family: "f".into(),
            qualifier: bytes::Bytes::from_static(b"q"),
            timestamp_micros: 1,
            value: bytes::Bytes::from_static(value.as_bytes()),
            labels: vec![],
        };
        let row = |cells| Row {
            key: bytes::Bytes::from_static(b"k"),
            cells,
        };
        let rows = [
            row(vec![cell("abc"), cell("de")]),
            row(vec![]),
            row(vec![cell("f")]),
        ];
        assert_eq!(Moved::of_rows(&rows), Moved { rows: 3, bytes: 6 });
        assert_eq!(Moved::of_rows(&[]), Moved::default());
    }

    #[tokio::test]
    async fn the_budget_is_shared_and_every_op_counted() {
        let phase = drive("t", 300, (0..7).map(|_| Every3rd).collect(), false)
            .await
            .unwrap();
        assert_eq!(phase.ops() + phase.failed(), 300);
        assert_eq!(phase.kinds["READ"].ops(), 200);
        assert_eq!(phase.kinds["WRITE"].failed, 100);
        assert_eq!(
            phase.kinds["WRITE"].first_error.as_deref(),
            Some("internal: nope")
        );
        assert_eq!(
            phase.moved(),
            Moved {
                rows: 200,
                bytes: 2000
            }
        );
        let timeline: u64 = phase.timeline.seconds().iter().map(|s| s.ops).sum();
        assert_eq!(timeline, 200);
    }

    #[tokio::test]
    async fn a_phase_where_nothing_succeeds_is_an_error() {
        struct Broken;
        impl Worker for Broken {
            async fn op(&mut self, _: u64) -> (&'static str, Result<Moved, Error>) {
                ("X", Err(Error::internal("broken")))
            }
        }
        let err = drive("b", 5, vec![Broken], false).await.unwrap_err();
        assert!(err.to_string().contains("internal: broken"), "{err}");
    }
}
