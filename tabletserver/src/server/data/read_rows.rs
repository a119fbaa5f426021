//! `ReadRows`: a row set (sorted, merged ranges, all within one served tablet) read in row
//! order or reversed, each row passed through the compiled filter, streamed several rows per
//! message.
//!
//! The engine's scans are synchronous iterators, so the scan runs on the blocking pool and
//! hands messages to the response stream through a bounded channel: a slow client holds the
//! scan back instead of letting messages pile up (flow control), and a client that goes away
//! closes the channel, which ends the scan. A message is sent once its rows reach
//! `read_batch_bytes` or `read_batch_rows`; rows the filter empties are not sent, but every
//! message carries `last_scanned_row_key`, and after `PROGRESS_ROWS` rows looked at with
//! nothing to send a message with no rows reports the progress. The engine pushdown
//! (`Filter::pushdown`) narrows what is read; the filter itself decides what is returned.
//! `rows_limit` counts returned rows. Each range is read at one snapshot (whole mutations
//! only); the gate is asked again before every message, so a server that stops being safe
//! stops streaming.

use std::sync::Arc;

use bytes::Bytes;
use prost::Message as _;
use tabula_common::Error;
use tabula_proto::google::bigtable::v2 as pb;
use tabula_proto::tabula::tablet::v1 as api;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::engine::ScanOptions;
use crate::engine::sstable::RowRange;
use crate::filter::{Filter, to_proto_row};

use super::row_set::{self, Rows};
use super::{Gate, ServedTablet, Shared, route};

/// The response stream of `ReadRows`.
pub(super) type ReadRowsStream = ReceiverStream<Result<api::ReadRowsResponse, Status>>;

/// Messages buffered between the scan and the client.
const CHANNEL_MESSAGES: usize = 4;

/// Rows looked at without anything to send before a progress-only message.
const PROGRESS_ROWS: usize = 10_000;

/// `ReadRows`: checks and routes the request, then starts the scan.
pub(super) async fn read_rows(
    shared: &Shared,
    req: api::ReadRowsRequest,
) -> Result<ReadRowsStream, Error> {
    shared.gate.check_serving()?;
    let route = route(req.tablet)?;
    if req.rows_limit < 0 {
        return Err(Error::invalid_argument(format!(
            "rows_limit: {} is negative (0 means no limit)",
            req.rows_limit
        )));
    }
    let filter = match &req.filter {
        Some(f) => {
            Filter::compile(f).map_err(|e| Error::invalid_argument(format!("filter: {e}")))?
        }
        None => Filter::pass_all(),
    };
    let (served, mut ranges) = match row_set::rows(req.rows, route.table)? {
        Rows::All => {
            let served = shared.route_whole_tablet(&route)?;
            let range = served.tablet.range().clone();
            (Some(served), vec![range])
        }
        Rows::Ranges(ranges) if ranges.is_empty() => (None, ranges),
        Rows::Ranges(ranges) => {
            let served = shared
                .registry
                .route_range(&route, &row_set::cover(&ranges))?;
            (Some(served), ranges)
        }
    };
    let (tx, rx) = mpsc::channel(CHANNEL_MESSAGES);
    let Some(served) = served else {
        return Ok(ReceiverStream::new(rx));
    };
    served.count_read();
    if req.reversed {
        ranges.reverse();
    }
    let scan = Scan {
        served,
        ranges,
        filter,
        reversed: req.reversed,
        limit: usize::try_from(req.rows_limit)
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or(usize::MAX),
        gate: shared.gate.clone(),
        batch_bytes: shared.options.read_batch_bytes.max(1),
        batch_rows: shared.options.read_batch_rows.max(1),
    };
    // The task ends when the scan does or when the client goes away (the channel closes):
    // the stream owns it through the channel.
    tokio::task::spawn_blocking(move || scan.run(tx));
    Ok(ReceiverStream::new(rx))
}

/// One `ReadRows` scan, run on the blocking pool.
struct Scan {
    served: Arc<ServedTablet>,
    /// In the order they are read.
    ranges: Vec<RowRange>,
    filter: Filter,
    reversed: bool,
    /// Rows still to return.
    limit: usize,
    gate: Arc<Gate>,
    batch_bytes: usize,
    batch_rows: usize,
}

/// Why a scan stopped early.
enum Stop {
    /// The client went away.
    Gone,
    /// An error to report to the client.
    Failed(Error),
}

/// The message being filled.
#[derive(Default)]
struct Batch {
    rows: Vec<pb::Row>,
    bytes: usize,
    last_scanned: Option<Bytes>,
    /// Rows looked at since the last message.
    scanned: usize,
}

impl Scan {
    fn run(mut self, tx: mpsc::Sender<Result<api::ReadRowsResponse, Status>>) {
        match self.scan_all(&tx) {
            Ok(()) | Err(Stop::Gone) => {}
            Err(Stop::Failed(e)) => {
                // The client may be gone already; nothing else to do then.
                let _ = tx.blocking_send(Err(e.into()));
            }
        }
    }

    fn scan_all(
        &mut self,
        tx: &mpsc::Sender<Result<api::ReadRowsResponse, Status>>,
    ) -> Result<(), Stop> {
        let mut batch = Batch::default();
        let ranges = std::mem::take(&mut self.ranges);
        let mut rng = rand::rng();
        'ranges: for range in ranges {
            if self.limit == 0 {
                break;
            }
            let rows = self
                .served
                .tablet
                .scan(ScanOptions {
                    range,
                    filter: self.filter.pushdown(),
                    reverse: self.reversed,
                    limit: None,
                })
                .map_err(|e| Stop::Failed(e.into()))?;
            for row in rows {
                let row = row.map_err(|e| Stop::Failed(e.into()))?;
                let out = self.filter.apply(&row.key, &row.cells, &mut rng);
                batch.scanned += 1;
                batch.last_scanned = Some(row.key.clone());
                if let Some(message) = to_proto_row(row.key, out) {
                    batch.bytes += message.encoded_len();
                    batch.rows.push(message);
                    self.limit -= 1;
                }
                let full = batch.rows.len() >= self.batch_rows
                    || batch.bytes >= self.batch_bytes
                    || (batch.rows.is_empty() && batch.scanned >= PROGRESS_ROWS);
                if full || self.limit == 0 {
                    self.send(tx, &mut batch)?;
                }
                if self.limit == 0 {
                    break 'ranges;
                }
            }
        }
        if batch.last_scanned.is_some() {
            self.send(tx, &mut batch)?;
        }
        Ok(())
    }

    /// Sends the batch (if the server may still serve) and starts a new one.
    fn send(
        &self,
        tx: &mpsc::Sender<Result<api::ReadRowsResponse, Status>>,
        batch: &mut Batch,
    ) -> Result<(), Stop> {
        self.gate.check_serving().map_err(Stop::Failed)?;
        let taken = std::mem::take(batch);
        let message = api::ReadRowsResponse {
            rows: taken.rows,
            last_scanned_row_key: taken.last_scanned.map(|k| k.to_vec()).unwrap_or_default(),
        };
        tx.blocking_send(Ok(message)).map_err(|_| Stop::Gone)
    }
}
