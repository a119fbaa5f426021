//! The workloads, written once against `Store`: fills from one or many threads, random point
//! reads, a full forward scan, and short range scans. Each returns the time its operations
//! took and counts them in `done` for progress; each checks what it read, so a store that
//! loses or invents rows fails the benchmark instead of looking fast.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::data::{ValuePool, key};
use super::store::Store;

/// Writes every record of `order` (key and value derived from its number), split into
/// `threads` contiguous shares written concurrently.
pub(super) fn fill<S: Store + ?Sized>(
    store: &S,
    order: &[u64],
    values: &ValuePool,
    threads: usize,
    done: &AtomicU64,
) -> anyhow::Result<Duration> {
    let share = order.len().div_ceil(threads.max(1)).max(1);
    let failed = AtomicBool::new(false);
    let started = Instant::now();
    let outcomes: Vec<anyhow::Result<()>> = std::thread::scope(|scope| {
        let writers: Vec<_> = order
            .chunks(share)
            .map(|chunk| {
                let failed = &failed;
                scope.spawn(move || {
                    for &n in chunk {
                        if failed.load(Ordering::Relaxed) {
                            break;
                        }
                        if let Err(e) = store.put(&key(n), values.value(n)) {
                            failed.store(true, Ordering::Relaxed);
                            return Err(e.context(format!("writing record {n}")));
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        writers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a writer thread panicked")))
            })
            .collect()
    });
    let elapsed = started.elapsed();
    outcomes.into_iter().collect::<anyhow::Result<()>>()?;
    Ok(elapsed)
}

/// Reads the record of every number in `picks`, each of which must exist.
pub(super) fn read_random<S: Store + ?Sized>(
    store: &S,
    picks: &[u64],
    done: &AtomicU64,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    for &n in picks {
        if !store
            .get(&key(n))
            .with_context(|| format!("reading record {n}"))?
        {
            bail!("record {n} was written but a point read did not find it");
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(started.elapsed())
}

/// Scans every row in key order; there must be exactly `records`.
pub(super) fn read_seq<S: Store + ?Sized>(
    store: &S,
    records: u64,
    done: &AtomicU64,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let rows = store.scan(None, None).context("full scan")?;
    let elapsed = started.elapsed();
    if rows != records {
        bail!("a full scan read {rows} rows, but {records} were written");
    }
    done.store(rows, Ordering::Relaxed);
    Ok(elapsed)
}

/// One scan of up to `rows` rows from each record number in `starts`, among `records` rows.
pub(super) fn scan_ranges<S: Store + ?Sized>(
    store: &S,
    starts: &[u64],
    rows: usize,
    records: u64,
    done: &AtomicU64,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    for &n in starts {
        let read = store
            .scan(Some(&key(n)), Some(rows))
            .with_context(|| format!("scanning from record {n}"))?;
        let expected = records.saturating_sub(n).min(rows as u64);
        if read != expected {
            bail!("a scan from record {n} read {read} rows, expected {expected}");
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(started.elapsed())
}
