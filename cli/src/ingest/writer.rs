//! One ingest writer: a task that asks its [`Chain`] for the next batch, writes it with
//! `Table::mutate_rows` until every entry is acknowledged, tells the chain, and appends the
//! batch to the ack log. Only then does it ask for the next batch, so a node never points at a
//! node that was not acknowledged.
//!
//! Retries: the client retries retryable entries until its deadline; an entry still failing
//! after that is sent again by the writer with backoff (100 ms doubling to 5 s), counted in
//! `retries`. Writes are idempotent (every cell at a fixed timestamp), so sending again is
//! always safe. A code that is not retryable is tried [`MAX_REFUSALS`] times in a row, then the
//! writer fails the run.
//!
//! Stopping ([`Stop`], from the run): `Close` closes the open loop early and stops, `Finish`
//! stops after the batch in flight, `Abandon` gives the batch in flight up at once (it is not
//! logged; nothing will point at it).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use tabula_client::{Mutation, Table};
use tokio::sync::watch;
use tokio::time::Instant;

use super::acks::{AckRecord, AckSender};
use super::chain::{Batch, BatchKind, Chain};
use super::stats::Stats;

/// First pause before the writer sends failed entries again.
const RETRY_MIN: Duration = Duration::from_millis(100);
/// Longest pause between the writer's attempts.
const RETRY_MAX: Duration = Duration::from_secs(5);
/// Consecutive attempts answered with a code that is not retryable before the writer fails.
const MAX_REFUSALS: u32 = 5;

/// How far the run wants its writers to stop; later levels are stronger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Stop {
    /// Keep writing.
    Running,
    /// `--duration` is over: close the open loop, then stop.
    Close,
    /// A signal: stop after the batch in flight.
    Finish,
    /// A second signal: give the batch in flight up.
    Abandon,
}

/// One writer's settings and shared handles.
#[derive(Debug)]
pub(super) struct Writer {
    /// The ingest table.
    pub(super) table: Table,
    /// This writer's seed.
    pub(super) seed: u64,
    /// Nodes per batch.
    pub(super) width: u64,
    /// Loops to close before stopping (`None`: until told to stop).
    pub(super) loops: Option<u64>,
    /// The run's stop level.
    pub(super) stop: watch::Receiver<Stop>,
    /// Where acknowledged batches go.
    pub(super) acks: AckSender,
    /// The run's counters.
    pub(super) stats: Arc<Stats>,
}

/// What a writer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct WriterOutcome {
    /// Its seed.
    pub(super) seed: u64,
    /// Loops it closed.
    pub(super) loops_closed: u64,
    /// Whether it gave a batch in flight up.
    pub(super) abandoned: bool,
}

impl Writer {
    /// Writes batches until its loops are done or it is told to stop.
    pub(super) async fn run(mut self) -> anyhow::Result<WriterOutcome> {
        let mut chain = Chain::new(self.seed, self.width);
        let mut abandoned = false;
        loop {
            let stop = *self.stop.borrow();
            let batch = match stop {
                Stop::Running => {
                    if self.loops.is_some_and(|l| chain.loops_closed() >= l) {
                        break;
                    }
                    chain.next_batch()
                }
                Stop::Close => match chain.closing_batch() {
                    Some(batch) => batch,
                    None => break,
                },
                Stop::Finish | Stop::Abandon => break,
            };
            let Some(took) = self.write(&batch).await? else {
                abandoned = true;
                break;
            };
            chain.acked(&batch);
            let nodes = u64::try_from(batch.nodes.len()).unwrap_or(u64::MAX);
            match batch.kind {
                BatchKind::Fresh => {
                    self.stats.fresh_batch(nodes, took);
                    let record = AckRecord {
                        writer: self.seed,
                        from: batch.first_count,
                        to: batch.first_count + nodes,
                        time_ms: unix_ms(),
                        latency_us: u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
                    };
                    self.acks
                        .send(record)
                        .await
                        .context("the ack log stopped taking records")?;
                }
                BatchKind::Close => self.stats.closing_batch(nodes, took),
            }
        }
        Ok(WriterOutcome {
            seed: self.seed,
            loops_closed: chain.loops_closed(),
            abandoned,
        })
    }

    /// Writes `batch` until every entry is acknowledged; answers how long that took, or `None`
    /// if the run said to abandon it first.
    async fn write(&mut self, batch: &Batch) -> anyhow::Result<Option<Duration>> {
        let started = Instant::now();
        let mut pending: Vec<(Bytes, Vec<Mutation>)> =
            batch.nodes.iter().map(|n| n.entry(batch.micros)).collect();
        let mut delay = RETRY_MIN;
        let mut refusals = 0;
        loop {
            let results = tokio::select! {
                results = self.table.mutate_rows(pending.clone()) => results,
                () = reached(&mut self.stop, Stop::Abandon) => return Ok(None),
            };
            let total = pending.len();
            let mut failed = Vec::new();
            let mut last_error = None;
            for (entry, result) in pending.into_iter().zip(results) {
                if let Err(e) = result {
                    failed.push(entry);
                    last_error = Some(e);
                }
            }
            let Some(error) = last_error else {
                return Ok(Some(started.elapsed()));
            };
            if error.code.is_retryable() {
                refusals = 0;
            } else {
                refusals += 1;
                if refusals >= MAX_REFUSALS {
                    bail!(
                        "writer {:016x}: {} of {total} entries refused {refusals} times in a row: {error}",
                        self.seed,
                        failed.len()
                    );
                }
            }
            self.stats
                .retried(u64::try_from(failed.len()).unwrap_or(u64::MAX));
            eprintln!(
                "ingest: writer {:016x}: {} of {total} entries failed ({error}); sending them again in {delay:?}",
                self.seed,
                failed.len()
            );
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = reached(&mut self.stop, Stop::Abandon) => return Ok(None),
            }
            delay = (delay * 2).min(RETRY_MAX);
            pending = failed;
        }
    }
}

/// Resolves once the stop level is at least `level` (never, if the run is gone).
async fn reached(stop: &mut watch::Receiver<Stop>, level: Stop) {
    if stop.wait_for(|s| *s >= level).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The wall clock in unix milliseconds (0 if it is before 1970).
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
