//! `ReadRows`: a row set (sorted, merged ranges, all within one served tablet) read in row
//! order or reversed, each row passed through the compiled filter, streamed several rows per
//! message.
//!
//! Where it runs. The response is a `ScanStream`: each poll with no message ready runs one
//! *step* of the scan on the async worker that polls it, within a budget of rows looked at
//! and bytes gathered. Rows are sent while they are still in the cache, and a slow client
//! holds its scan back through HTTP/2 flow control. A step slow enough to have waited on the
//! disk moves the rest of that scan to the blocking pool (see `scan_stream`). A range of one row is a point read (`Tablet::read_row`: Bloom filters, no
//! iterator per SSTable).
//!
//! Why not the blocking pool for every long scan, as before: with 64 scans in flight that
//! was 64 threads taking turns on the cores, each message made on one thread and encoded on
//! another, after the three messages queued ahead of it had pushed it out of the cache. The
//! tablet server spent 2.5-2.9 ms of CPU per 1000 rows stepped against 3.1-3.6 ms moved, and
//! `tabula bench paper` scanned 18-20% more rows per second (docs/benchmarks.md, "eighth run").
//!
//! A message is sent once its rows reach `read_batch_bytes` or `read_batch_rows`; rows the
//! filter empties are not sent, but every message carries `last_scanned_row_key`, and after
//! `PROGRESS_ROWS` rows looked at with nothing to send a message with no rows reports the
//! progress. The engine pushdown (`Filter::pushdown`) narrows what is read; the filter itself
//! decides what is returned. `rows_limit` counts returned rows. Each range is read at one
//! snapshot (whole mutations only); the gate is asked again before every message, so a server
//! that stops being safe stops streaming.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tabula_common::Error;
use tabula_proto::tabula::tablet::v1 as api;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::Status;

use crate::engine::sstable::RowRange;
use crate::engine::{Row, RowIter, ScanOptions};
use crate::filter::{Filter, encode_row};

use super::row_set::{self, Rows};
use super::scan_stream::ScanStream;
use super::{Gate, ServedTablet, Shared, route};

/// Room a scan's first message reserves for its rows; each next one reserves an eighth more
/// than the one before took (a row that does not fit grows the buffer), so a point read does
/// not take the room of a long scan's message and a long scan's message is written without
/// growing.
const FIRST_MESSAGE_BYTES: usize = 8 * 1024;

/// The response stream of `ReadRows`.
pub(super) type ReadRowsStream =
    Pin<Box<dyn Stream<Item = Result<api::ReadRowsResponse, Status>> + Send + 'static>>;

/// Rows looked at without anything to send before a progress-only message.
const PROGRESS_ROWS: usize = 10_000;

/// `ReadRows`: checks and routes the request, then runs the scan (see the module doc).
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
    let Some(served) = served else {
        return Ok(Box::pin(tokio_stream::empty()));
    };
    served.count_read();
    if req.reversed {
        ranges.reverse();
    }
    let scan = Scan {
        served,
        ranges: ranges.into(),
        current: None,
        filter,
        reversed: req.reversed,
        limit: usize::try_from(req.rows_limit)
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or(usize::MAX),
        gate: shared.gate.clone(),
        batch_bytes: shared.options.read_batch_bytes.max(1),
        batch_rows: shared.options.read_batch_rows.max(1),
        batch: Batch::default(),
        encoded: BytesMut::new(),
        reserve: FIRST_MESSAGE_BYTES,
    };
    Ok(Box::pin(ScanStream::new(scan)))
}

/// One `ReadRows` scan: stepped on the async worker, finished there or on the blocking pool.
pub(super) struct Scan {
    served: Arc<ServedTablet>,
    /// Ranges not started yet, in the order they are read.
    ranges: VecDeque<RowRange>,
    /// The range being read: its iterator holds the range's snapshot.
    current: Option<RowIter>,
    filter: Filter,
    reversed: bool,
    /// Rows still to return.
    limit: usize,
    gate: Arc<Gate>,
    batch_bytes: usize,
    batch_rows: usize,
    /// The message being filled.
    batch: Batch,
    /// The rows of the message being filled, encoded one after the other as an
    /// `EncodedRows` (split off whole when it is sent: one buffer per message).
    encoded: BytesMut,
    /// Room the next message reserves for its rows.
    reserve: usize,
}

/// How much a call of `Scan::advance` may do before it pauses.
#[derive(Debug, Clone, Copy)]
pub(super) struct Budget {
    /// Rows looked at (returned or not).
    pub(super) rows: u64,
    /// Bytes of rows returned.
    pub(super) bytes: usize,
}

/// Where `Scan::advance` left the scan.
pub(super) enum Progress {
    /// Every message was made.
    Done,
    /// The budget ran out; rows may be left.
    Paused,
}

/// Why a scan stopped early.
pub(super) enum Stop {
    /// The client went away.
    Gone,
    /// An error to report to the client.
    Failed(Error),
}

/// The message being filled.
#[derive(Default)]
struct Batch {
    /// Rows in `Scan::encoded`.
    rows: usize,
    last_scanned: Option<Bytes>,
    /// Rows looked at since the last message.
    scanned: usize,
}

/// Where a scan's messages go: collected inline, or into the channel.
type Out<'a> = dyn FnMut(api::ReadRowsResponse) -> Result<(), Stop> + 'a;

impl Scan {
    /// The rest of the scan, on the blocking pool.
    pub(super) fn run(
        mut self: Box<Self>,
        tx: mpsc::Sender<Result<api::ReadRowsResponse, Status>>,
    ) {
        let sent = self.advance(None, &mut |message| {
            tx.blocking_send(Ok(message)).map_err(|_| Stop::Gone)
        });
        if let Err(Stop::Failed(e)) = sent {
            // The client may be gone already; nothing else to do then.
            let _ = tx.blocking_send(Err(e.into()));
        }
    }

    /// Reads rows and hands out messages until the scan is done or, with a budget, the budget
    /// is spent. Resumable: the position (ranges left, the open iterator, the message being
    /// filled) lives in `self`.
    pub(super) fn advance(
        &mut self,
        budget: Option<Budget>,
        out: &mut Out<'_>,
    ) -> Result<Progress, Stop> {
        let mut rng = rand::rng();
        let mut looked: u64 = 0;
        let mut bytes: usize = 0;
        loop {
            if self.limit == 0 {
                break;
            }
            if let Some(b) = budget
                && (looked >= b.rows || bytes >= b.bytes)
            {
                return Ok(Progress::Paused);
            }
            let allowed = budget.map_or(u64::MAX, |b| b.rows - looked);
            let found = match self.current.as_mut() {
                Some(rows) => {
                    let before = rows.rows_examined();
                    let found = rows
                        .next_within(allowed)
                        .map_err(|e| Stop::Failed(e.into()))?;
                    looked += rows.rows_examined() - before;
                    if found.is_none() && rows.is_finished() {
                        self.current = None;
                    }
                    found
                }
                None => {
                    let Some(range) = self.ranges.pop_front() else {
                        break;
                    };
                    looked += 1;
                    match range.single_row() {
                        Some(row) => self
                            .served
                            .tablet
                            .read_row(row, &self.filter.pushdown())
                            .map_err(|e| Stop::Failed(e.into()))?,
                        None => {
                            self.current = Some(
                                self.served
                                    .tablet
                                    .scan(ScanOptions {
                                        range,
                                        filter: self.filter.pushdown(),
                                        reverse: self.reversed,
                                        limit: None,
                                    })
                                    .map_err(|e| Stop::Failed(e.into()))?,
                            );
                            None
                        }
                    }
                }
            };
            if let Some(row) = found {
                bytes += self.take(row, &mut rng, out)?;
            }
        }
        if self.batch.last_scanned.is_some() {
            self.send(out)?;
        }
        Ok(Progress::Done)
    }

    /// Passes a row through the filter into the message (sending it when full); the bytes
    /// the row added.
    fn take(
        &mut self,
        row: Row,
        rng: &mut dyn rand::RngCore,
        out: &mut Out<'_>,
    ) -> Result<usize, Stop> {
        let Row { key, cells } = row;
        let filtered = self.filter.apply(&key, cells, rng);
        let batch = &mut self.batch;
        batch.scanned += 1;
        if self.encoded.is_empty() {
            self.encoded.reserve(self.reserve);
        }
        let before = self.encoded.len();
        let encoded = encode_row(&key, &filtered, &mut self.encoded);
        batch.last_scanned = Some(key);
        if encoded {
            batch.rows += 1;
            self.limit -= 1;
        }
        let added = self.encoded.len() - before;
        let full = batch.rows >= self.batch_rows
            || self.encoded.len() >= self.batch_bytes
            || (batch.rows == 0 && batch.scanned >= PROGRESS_ROWS);
        if full || self.limit == 0 {
            self.send(out)?;
        }
        Ok(added)
    }

    /// Sends the message being filled (if the server may still serve) and starts a new one.
    fn send(&mut self, out: &mut Out<'_>) -> Result<(), Stop> {
        self.gate.check_serving().map_err(Stop::Failed)?;
        let taken = std::mem::take(&mut self.batch);
        let rows = self.encoded.split().freeze();
        if !rows.is_empty() {
            // An eighth more than this one took, so a next message of slightly larger rows
            // still fits without growing (and copying) its buffer.
            self.reserve = (rows.len() + rows.len() / 8).max(FIRST_MESSAGE_BYTES);
        }
        out(api::ReadRowsResponse {
            rows,
            last_scanned_row_key: taken.last_scanned.map(|k| k.to_vec()).unwrap_or_default(),
        })
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use tabula_common::{Epoch, TableId};

    use prost::Message as _;
    use tabula_proto::google::bigtable::v2 as pb;

    use super::*;
    use crate::engine::tablet::scratch::scratch_tablet;
    use crate::engine::{Mutation, RowMutation, Schema};

    /// A served tablet holding rows `r000..` (one 100-byte cell each), the first `deleted`
    /// of them deleted.
    pub(in crate::server::data) fn served(
        rows: usize,
        deleted: usize,
    ) -> (tempfile::TempDir, Arc<ServedTablet>) {
        let (dir, tablet) = scratch_tablet(Schema::with_families(["cf"]));
        for i in 0..rows {
            let mutation = if i < deleted {
                Mutation::DeleteFromRow
            } else {
                Mutation::SetCell {
                    family: Bytes::from_static(b"cf"),
                    qualifier: Bytes::from_static(b"q"),
                    timestamp: 1,
                    value: Bytes::from(vec![b'v'; 100]),
                }
            };
            tablet
                .apply(RowMutation {
                    row: Bytes::from(format!("r{i:04}")),
                    mutations: vec![mutation],
                })
                .unwrap();
        }
        let served = Arc::new(ServedTablet::new(TableId(1), Epoch(1), tablet));
        (dir, served)
    }

    pub(in crate::server::data) fn scan(served: Arc<ServedTablet>, gate: Arc<Gate>) -> Scan {
        let range = served.tablet.range().clone();
        Scan {
            served,
            ranges: VecDeque::from([range]),
            current: None,
            filter: Filter::pass_all(),
            reversed: false,
            limit: usize::MAX,
            gate,
            batch_bytes: 1 << 20,
            batch_rows: 100,
            batch: Batch::default(),
            encoded: BytesMut::new(),
            reserve: FIRST_MESSAGE_BYTES,
        }
    }

    const STEP: Option<Budget> = Some(super::super::scan_stream::STEP);

    pub(in crate::server::data) fn keys(messages: &[api::ReadRowsResponse]) -> Vec<String> {
        messages
            .iter()
            .flat_map(|m| m.encoded_rows().unwrap())
            .map(|r| {
                let row = pb::Row::decode(r).unwrap();
                String::from_utf8(row.key.to_vec()).unwrap()
            })
            .collect()
    }

    #[test]
    fn a_long_scan_pauses_at_the_inline_budget_and_resumes_where_it_stopped() {
        let (_dir, served) = served(600, 0);
        let mut scan = scan(served, Arc::new(Gate::new(Arc::new(|| true))));
        let mut made = Vec::new();
        let inline = scan.advance(STEP, &mut |m| {
            made.push(m);
            Ok(())
        });
        assert!(
            matches!(inline, Ok(Progress::Paused)),
            "600 rows fit inline"
        );
        // Two full messages; the rows of the third wait in the batch.
        assert_eq!(made.len(), 2);
        let rest = scan.advance(None, &mut |m| {
            made.push(m);
            Ok(())
        });
        assert!(matches!(rest, Ok(Progress::Done)));
        let want: Vec<String> = (0..600).map(|i| format!("r{i:04}")).collect();
        assert_eq!(keys(&made), want, "rows repeated, lost or out of order");
        assert!(made.iter().all(|m| m.encoded_rows().unwrap().len() == 100));
    }

    #[test]
    fn deleted_rows_count_against_the_inline_budget() {
        let (_dir, served) = served(5_000, 4_900);
        let mut scan = scan(served, Arc::new(Gate::new(Arc::new(|| true))));
        let mut made = Vec::new();
        let inline = scan.advance(STEP, &mut |m| {
            made.push(m);
            Ok(())
        });
        assert!(
            matches!(inline, Ok(Progress::Paused)),
            "4,900 deleted rows were looked at inline"
        );
        assert!(made.is_empty());
        let rest = scan.advance(None, &mut |m| {
            made.push(m);
            Ok(())
        });
        assert!(matches!(rest, Ok(Progress::Done)));
        assert_eq!(keys(&made).len(), 100);
        assert_eq!(keys(&made)[0], "r4900");
    }

    #[test]
    fn a_closed_gate_stops_the_scan_before_the_next_message() {
        let (_dir, served) = served(300, 0);
        let open = Arc::new(AtomicBool::new(true));
        let check = open.clone();
        let gate = Arc::new(Gate::new(Arc::new(move || check.load(Ordering::SeqCst))));
        let mut scan = scan(served, gate);
        let mut made = Vec::new();
        let sent = scan.advance(None, &mut |m| {
            made.push(m);
            open.store(false, Ordering::SeqCst);
            Ok(())
        });
        assert!(
            matches!(sent, Err(Stop::Failed(_))),
            "the scan went on with the gate closed"
        );
        assert_eq!(made.len(), 1);
    }

    #[test]
    fn a_point_read_and_a_limit_finish_inline() {
        let (_dir, served) = served(300, 0);
        let mut scan = scan(served, Arc::new(Gate::new(Arc::new(|| true))));
        scan.ranges = VecDeque::from([
            RowRange::half_open(Bytes::from_static(b"r0007"), Bytes::from_static(b"r0007\0")),
            RowRange::single(Bytes::from_static(b"r0009")),
            RowRange::half_open(Bytes::from_static(b"r0100"), Bytes::from_static(b"r0200")),
        ]);
        scan.limit = 50;
        let mut made = Vec::new();
        let inline = scan.advance(STEP, &mut |m| {
            made.push(m);
            Ok(())
        });
        assert!(matches!(inline, Ok(Progress::Done)));
        let got = keys(&made);
        assert_eq!(got.len(), 50);
        assert_eq!(&got[..3], ["r0007", "r0009", "r0100"]);
        assert_eq!(got[49], "r0147");
    }
}
