//! `RowStream`: a scan across tablets, in row order or reversed, that resumes after the last
//! row it delivered.
//!
//! The row set becomes half-open spans `[start, end)` (a key `k` is `[k, k\0)`; an excluded
//! start `k` is `k\0`). The scan's position is a `Cursor`, pure and unit-tested: a *window*
//! of rows not yet passed — `[pos, +inf)` forward, `["", pos)` reversed — so every row outside
//! it was delivered or lies in no span. A step locates the next tablet — forward the one
//! holding the first remaining row; reversed the one holding the rows just *before* the end
//! of the last remaining span (`start < p <= end`: METADATA rows are keyed by end row, so it
//! is the first one at or after `p`'s key) — asks it for the remaining spans clipped to its
//! range (`TabletService.ReadRows` with its `TabletRef`, `reversed` set for a reversed scan;
//! the server then serves the ranges last to first, each descending), and delivers rows,
//! shrinking the window past each; when the tablet's stream ends the window shrinks past the
//! whole tablet (forward to its end, reversed to its start). On a retryable failure
//! (`WrongTablet` after a split or move, a dead server) the cached location is dropped and,
//! after a backoff, the scan starts again from the window — so no row is repeated or
//! skipped. A row outside the window (which a correct server never sends) is dropped. The
//! backoff's deadline restarts with every row delivered. `rows_limit` counts delivered rows;
//! reversed, those are the set's last rows.
//!
//! Rows the filter removed are never sent, but every message of the tablet server carries
//! `last_scanned_row_key`, the last row it looked at. When that key lies beyond the last row
//! delivered (forward: after it; reversed: before it), after the message's rows the window
//! moves past it too and `next_item` hands out `ScanItem::Scanned(key)`: a resume then skips
//! what the filter removed, and a caller (the gateway's `ReadRows`) can pass the progress on.
//! A `Scanned` key is never at or before a row already delivered; like a row, it restarts the
//! backoff's deadline. `next_row` and the `Stream` skip these items.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tabula_common::Error;
use tabula_proto::google::bigtable::v2 as bt;
use tabula_proto::tabula::tablet::v1 as tpb;
use tokio_stream::Stream;

use crate::builders::{RowRange, RowSet};
use crate::meta::{TabletRecord, from_status};
use crate::retry::Backoff;
use crate::row::Row;
use crate::row_wire;
use crate::table::{ReadOptions, Table};

/// Rows `[start, end)`; `end: None` is the table's end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: Bytes,
    pub(crate) end: Option<Bytes>,
}

/// The row right after `row`.
fn successor(row: &[u8]) -> Bytes {
    let mut next = Vec::with_capacity(row.len() + 1);
    next.extend_from_slice(row);
    next.push(0);
    Bytes::from(next)
}

impl Span {
    fn is_empty(&self) -> bool {
        self.end.as_ref().is_some_and(|e| *e <= self.start)
    }

    /// `self` ∩ `[start, end)`.
    fn clip(&self, start: &Bytes, end: Option<&Bytes>) -> Span {
        let s = if *start > self.start {
            start.clone()
        } else {
            self.start.clone()
        };
        let e = match (&self.end, end) {
            (Some(a), Some(b)) => Some(if a < b { a.clone() } else { b.clone() }),
            (Some(a), None) => Some(a.clone()),
            (None, b) => b.cloned(),
        };
        Span { start: s, end: e }
    }
}

/// The spans of `set`, empty ones dropped, sorted by start (they may overlap: the server
/// merges them).
pub(crate) fn spans(set: &RowSet) -> Vec<Span> {
    use std::ops::Bound;
    let mut out: Vec<Span> = set
        .keys
        .iter()
        .map(|k| Span {
            start: k.clone(),
            end: Some(successor(k)),
        })
        .collect();
    for r in &set.ranges {
        let start = match &r.start {
            Bound::Included(s) => s.clone(),
            Bound::Excluded(s) => successor(s),
            Bound::Unbounded => Bytes::new(),
        };
        let end = match &r.end {
            Bound::Included(e) => Some(successor(e)),
            Bound::Excluded(e) => Some(e.clone()),
            Bound::Unbounded => None,
        };
        out.push(Span { start, end });
    }
    out.retain(|s| !s.is_empty());
    out.sort_by(|a, b| a.start.cmp(&b.start));
    out
}

/// What is left of `spans` within `window`, empty parts dropped.
fn within(spans: &[Span], window: &Span) -> Vec<Span> {
    spans
        .iter()
        .map(|s| s.clip(&window.start, window.end.as_ref()))
        .filter(|s| !s.is_empty())
        .collect()
}

/// Which tablet a scan reads next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// The tablet holding this row (forward: the first row left).
    Holding(Bytes),
    /// The tablet holding the rows just before this row, `None`: the table's end (reversed:
    /// the end of the last span left).
    Before(Option<Bytes>),
}

/// Where a scan is, in either direction: the pure part of `RowStream`.
///
/// `window` is the part of the row space not yet passed: forward it is `[pos, +inf)` and
/// shrinks from the start, reversed it is `["", pos)` and shrinks from the end. Every row
/// outside it was delivered or lies in no span, so resuming from it after a failure neither
/// repeats nor skips a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cursor {
    spans: Vec<Span>,
    window: Span,
    reversed: bool,
    /// Forward only: a tablet reaching the table's end was read to its end.
    exhausted: bool,
}

impl Cursor {
    /// A cursor at the beginning of `spans` (at their end if `reversed`).
    pub(crate) fn new(spans: Vec<Span>, reversed: bool) -> Cursor {
        Cursor {
            spans,
            window: Span {
                start: Bytes::new(),
                end: None,
            },
            reversed,
            exhausted: false,
        }
    }

    /// What is left of the spans.
    pub(crate) fn remaining(&self) -> Vec<Span> {
        if self.exhausted {
            return Vec::new();
        }
        within(&self.spans, &self.window)
    }

    /// The tablet to read next; `None` when nothing is left.
    pub(crate) fn target(&self) -> Option<Target> {
        let left = self.remaining();
        if left.is_empty() {
            return None;
        }
        if self.reversed {
            let unbounded = left.iter().any(|s| s.end.is_none());
            let last = left.iter().filter_map(|s| s.end.clone()).max();
            Some(Target::Before(if unbounded { None } else { last }))
        } else {
            left.iter()
                .map(|s| s.start.clone())
                .min()
                .map(Target::Holding)
        }
    }

    /// What is left of the spans within a tablet `[start, end)`: what to ask it for.
    pub(crate) fn parts(&self, start: &Bytes, end: Option<&Bytes>) -> Vec<Span> {
        let tablet = Span {
            start: start.clone(),
            end: end.cloned(),
        };
        within(&self.remaining(), &tablet)
    }

    /// A row arrived: `true` (and the window moves past it) if it is still to be delivered,
    /// `false` if it was delivered already or lies outside the window (which a correct
    /// server never sends).
    pub(crate) fn accept(&mut self, row: &[u8]) -> bool {
        let inside = self.window.start.as_ref() <= row
            && self.window.end.as_ref().is_none_or(|e| row < e.as_ref());
        if !inside || self.exhausted {
            return false;
        }
        if self.reversed {
            self.window.end = Some(Bytes::copy_from_slice(row));
        } else {
            self.window.start = successor(row);
        }
        true
    }

    /// The server looked at rows up to `row` (its `last_scanned_row_key`), sending only what
    /// the filter kept: `true` (and the window moves past `row`, so a resume skips the rows
    /// the filter removed) if `row` lies beyond every row delivered — forward after it,
    /// reversed before it — `false` if it is at or before one (no progress to report).
    pub(crate) fn scanned(&mut self, row: &[u8]) -> bool {
        if self.exhausted {
            return false;
        }
        if self.reversed {
            if self.window.end.as_ref().is_some_and(|e| row >= e.as_ref()) {
                return false;
            }
            self.window.end = Some(Bytes::copy_from_slice(row));
        } else {
            if row < self.window.start.as_ref() {
                return false;
            }
            self.window.start = successor(row);
        }
        true
    }

    /// The tablet `[start, end)` that was read ended its stream: the window moves past it.
    pub(crate) fn tablet_done(&mut self, start: &Bytes, end: Option<&Bytes>) {
        if self.reversed {
            if self.window.end.as_ref().is_none_or(|e| start < e) {
                self.window.end = Some(start.clone());
            }
        } else {
            match end {
                None => self.exhausted = true,
                Some(e) if *e > self.window.start => self.window.start = e.clone(),
                Some(_) => {}
            }
        }
    }
}

fn to_row_set(spans: &[Span]) -> bt::RowSet {
    bt::RowSet {
        row_keys: Vec::new(),
        row_ranges: spans
            .iter()
            .map(|s| {
                let range = match &s.end {
                    Some(e) => RowRange::closed_open(s.start.clone(), e.clone()),
                    None => RowRange::starting_at(s.start.clone()),
                };
                range.to_proto()
            })
            .collect(),
    }
}

/// What a scan hands out: a row, or how far the scan got past rows the filter removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanItem {
    /// The next row.
    Row(Row),
    /// The scan looked at every row up to this key (forward; down to it reversed) and the
    /// filter removed those not delivered: a scan resumed after it skips them. Always beyond
    /// the last row delivered, in scan direction.
    Scanned(Bytes),
}

/// A message's contents waiting to be handed out, in order.
enum Received {
    Row(Row),
    /// The message's `last_scanned_row_key`, after its rows.
    Scanned(Bytes),
}

/// The tablet being read and its open stream.
struct Current {
    record: TabletRecord,
    stream: tonic::Streaming<tpb::ReadRowsResponse>,
}

/// The scan's state between rows.
struct Scan {
    table: Table,
    cursor: Cursor,
    rows_left: Option<u64>,
    filter: Option<bt::RowFilter>,
    current: Option<Current>,
    buffer: VecDeque<Received>,
    backoff: Backoff,
    finished: bool,
}

impl Scan {
    /// The next item, an error (after which the scan is over), or `None` at the end.
    async fn next(&mut self) -> Option<Result<ScanItem, Error>> {
        loop {
            if self.finished || self.rows_left == Some(0) {
                if let Some(mut current) = self.current.take()
                    && !self.finished
                {
                    Self::drain(&self.table, &mut current).await;
                }
                return None;
            }
            if let Some(item) = self.buffered() {
                return Some(Ok(item));
            }
            let step = match self.current.as_mut() {
                Some(current) => Self::pull(&self.table, current).await,
                None => self.open().await,
            };
            match step {
                Ok(Step::Rows { rows, scanned }) => {
                    self.buffer.extend(rows.into_iter().map(Received::Row));
                    if !scanned.is_empty() {
                        self.buffer
                            .push_back(Received::Scanned(Bytes::from(scanned)));
                    }
                }
                Ok(Step::Opened(current)) => self.current = Some(*current),
                Ok(Step::TabletDone) => {
                    if let Some(c) = self.current.take() {
                        self.cursor
                            .tablet_done(&c.record.start_row, c.record.end_row.as_ref());
                    }
                }
                Ok(Step::Skipped) => {}
                Ok(Step::Nothing) => self.finished = true,
                Err(e) => {
                    if let Some(c) = self.current.take() {
                        self.table.after_failure(&c.record, Some(&e));
                    }
                    if let Err(e) = self.backoff.wait("read rows", e).await {
                        self.finished = true;
                        return Some(Err(e));
                    }
                }
            }
        }
    }

    /// The next item already received, if any is left to deliver (the cursor moves past it):
    /// a row not delivered yet, or a scanned key beyond the last row delivered. Synchronous,
    /// so `RowStream` hands out the rest of a message without a future per row.
    fn buffered(&mut self) -> Option<ScanItem> {
        if self.finished || self.rows_left == Some(0) {
            return None;
        }
        while let Some(received) = self.buffer.pop_front() {
            let item = match received {
                Received::Row(row) if self.cursor.accept(&row.key) => {
                    self.rows_left = self.rows_left.map(|n| n - 1);
                    ScanItem::Row(row)
                }
                Received::Scanned(key) if self.cursor.scanned(&key) => ScanItem::Scanned(key),
                Received::Row(_) | Received::Scanned(_) => continue,
            };
            self.backoff.reset();
            return Some(item);
        }
        None
    }

    /// Opens a stream on the tablet holding the next rows of the scan.
    async fn open(&mut self) -> Result<Step, Error> {
        let Some(target) = self.cursor.target() else {
            return Ok(Step::Nothing);
        };
        let client = self.table.client();
        let record = match &target {
            Target::Holding(row) => client.locate(self.table.id(), row).await?,
            Target::Before(row) => {
                client
                    .locate_before(self.table.id(), row.as_deref())
                    .await?
            }
        };
        let parts = self
            .cursor
            .parts(&record.start_row, record.end_row.as_ref());
        if parts.is_empty() {
            // Not reached with a record that holds the target; never ask for a whole tablet,
            // never loop without progress.
            let before = self.cursor.clone();
            self.cursor
                .tablet_done(&record.start_row, record.end_row.as_ref());
            if self.cursor == before {
                return Err(Error::internal(format!(
                    "read rows: tablet {} does not hold the scan's next rows",
                    record.tablet
                )));
            }
            return Ok(Step::Skipped);
        }
        let request = tpb::ReadRowsRequest {
            tablet: Some(record.tablet_ref()),
            rows: Some(to_row_set(&parts)),
            filter: self.filter.clone(),
            rows_limit: self
                .rows_left
                .map_or(0, |n| i64::try_from(n).unwrap_or(i64::MAX)),
            reversed: self.cursor.reversed,
        };
        let mut data = client.channels().data(&record.server_addr)?;
        let answer = self.table.timed(data.read_rows(request)).await;
        self.table.after_failure(&record, answer.as_ref().err());
        Ok(Step::Opened(Box::new(Current {
            record,
            stream: answer?.into_inner(),
        })))
    }

    /// Reads a stream whose rows were all delivered (the limit was reached) to its end. The
    /// server was asked for at most those rows, so only its trailers are left; dropping the
    /// stream instead would reset it, and the server's frames that follow then land on a
    /// stream h2 has forgotten (it remembers 50 recent resets). h2 counts each such frame as
    /// a protocol error and, at 1024 on one connection, closes the connection with
    /// `ENHANCE_YOUR_CALM`, failing every call in flight on it (writes then fail with
    /// `ResourceExhausted`). Bounded: a few messages, each within the RPC timeout; errors
    /// are ignored (every row was delivered).
    async fn drain(table: &Table, current: &mut Current) {
        const MAX_MESSAGES: usize = 4;
        let limit = table.client().options().rpc_timeout;
        for _ in 0..MAX_MESSAGES {
            match tokio::time::timeout(limit, current.stream.message()).await {
                Ok(Ok(Some(_))) => {}
                Err(_) | Ok(Err(_) | Ok(None)) => return,
            }
        }
    }

    /// The next message of the open stream.
    async fn pull(table: &Table, current: &mut Current) -> Result<Step, Error> {
        let limit = table.client().options().rpc_timeout;
        match tokio::time::timeout(limit, current.stream.message()).await {
            Err(_) => Err(Error::new(
                tabula_common::Code::DeadlineExceeded,
                format!("no rows within {limit:?}"),
            )),
            Ok(Err(status)) => Err(from_status(status)),
            Ok(Ok(None)) => Ok(Step::TabletDone),
            Ok(Ok(Some(message))) => Ok(Step::Rows {
                rows: decode_rows(&message)?,
                scanned: message.last_scanned_row_key,
            }),
        }
    }
}

/// The rows of a `ReadRowsResponse`, sent encoded (decoded in place: their keys and values
/// point into the received message).
pub(crate) fn decode_rows(message: &tpb::ReadRowsResponse) -> Result<Vec<Row>, Error> {
    row_wire::decode_rows(&message.rows).map_err(|e| {
        Error::internal(format!(
            "read rows: the server sent rows that do not decode: {e}"
        ))
    })
}

enum Step {
    Opened(Box<Current>),
    Rows {
        rows: Vec<Row>,
        /// The message's `last_scanned_row_key`; empty if unset.
        scanned: Vec<u8>,
    },
    TabletDone,
    Skipped,
    Nothing,
}

/// Most rows `collect_rows` makes room for up front.
const COLLECT_PRESIZE_ROWS: u64 = 10_000;

type Pending = Pin<Box<dyn Future<Output = (Scan, Option<Result<ScanItem, Error>>)> + Send>>;

/// The rows of a `read_rows` call, in row order (descending if `ReadOptions::reversed`);
/// also a `Stream`. After an error it ends.
/// Dropping it cancels the scan.
pub struct RowStream {
    scan: Option<Scan>,
    pending: Option<Pending>,
}

impl std::fmt::Debug for RowStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowStream").finish_non_exhaustive()
    }
}

impl RowStream {
    pub(crate) fn new(table: Table, rows: RowSet, options: ReadOptions) -> RowStream {
        let backoff = Backoff::new(table.client().options());
        RowStream {
            scan: Some(Scan {
                table,
                cursor: Cursor::new(spans(&rows), options.reversed),
                rows_left: options.rows_limit,
                filter: options.filter.map(crate::builders::Filter::into_proto),
                current: None,
                buffer: VecDeque::new(),
                backoff,
                finished: false,
            }),
            pending: None,
        }
    }

    /// The next row; `None` at the end.
    pub async fn next_row(&mut self) -> Option<Result<Row, Error>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// The next row or `ScanItem::Scanned` progress past rows the filter removed; `None` at
    /// the end.
    pub async fn next_item(&mut self) -> Option<Result<ScanItem, Error>> {
        std::future::poll_fn(|cx| self.poll_next_item(cx)).await
    }

    /// `next_item` as a poll, for callers that are streams themselves.
    pub fn poll_next_item(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<ScanItem, Error>>> {
        if self.pending.is_none() {
            // Items of a message already received need no future (and no move of the scan).
            if let Some(item) = self.scan.as_mut().and_then(Scan::buffered) {
                return Poll::Ready(Some(Ok(item)));
            }
            let Some(mut scan) = self.scan.take() else {
                return Poll::Ready(None);
            };
            self.pending = Some(Box::pin(async move {
                let item = scan.next().await;
                (scan, item)
            }));
        }
        let Some(pending) = self.pending.as_mut() else {
            return Poll::Ready(None);
        };
        match pending.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready((scan, item)) => {
                self.pending = None;
                if item.is_some() {
                    self.scan = Some(scan);
                }
                Poll::Ready(item)
            }
        }
    }

    /// Every remaining row; the first error ends it.
    pub async fn collect_rows(mut self) -> Result<Vec<Row>, Error> {
        // Room for the rows a limit allows (within reason), so a long scan does not grow
        // the vector row by row.
        let expected = self
            .scan
            .as_ref()
            .and_then(|s| s.rows_left)
            .map_or(0, |n| n.min(COLLECT_PRESIZE_ROWS));
        let mut out = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
        while let Some(row) = self.next_row().await {
            out.push(row?);
        }
        Ok(out)
    }
}

impl Stream for RowStream {
    type Item = Result<Row, Error>;

    /// Rows only: `ScanItem::Scanned` progress is skipped.
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            return match self.poll_next_item(cx) {
                Poll::Ready(Some(Ok(ScanItem::Scanned(_)))) => continue,
                Poll::Ready(Some(Ok(ScanItem::Row(row)))) => Poll::Ready(Some(Ok(row))),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn span(start: &str, end: Option<&str>) -> Span {
        Span {
            start: b(start),
            end: end.map(b),
        }
    }

    #[test]
    fn row_sets_become_sorted_half_open_spans() {
        let set = RowSet::new()
            .key("m")
            .range(RowRange::closed_open("c", "f"))
            .range(RowRange::closed("x", "y"))
            .range(RowRange::closed_open("q", "q"));
        let s = spans(&set);
        assert_eq!(
            s,
            vec![
                span("c", Some("f")),
                Span {
                    start: b("m"),
                    end: Some(Bytes::from_static(b"m\0"))
                },
                Span {
                    start: b("x"),
                    end: Some(Bytes::from_static(b"y\0"))
                },
            ]
        );
        assert_eq!(spans(&RowSet::all()), vec![span("", None)]);
        assert!(spans(&RowSet::new()).is_empty());
    }

    #[test]
    fn a_forward_cursor_clips_to_the_window_and_the_tablet() {
        let mut c = Cursor::new(vec![span("a", Some("d")), span("f", None)], false);
        assert_eq!(c.target(), Some(Target::Holding(b("a"))));
        assert!(c.accept(b"b"));
        assert!(!c.accept(b"b"), "a row is delivered once");
        assert!(!c.accept(b"a"), "an earlier row is dropped");
        // A tablet ["c", "g") after row "b" was delivered (window from "b\0").
        let parts = c.parts(&b("c"), Some(&b("g")));
        assert_eq!(parts, vec![span("c", Some("d")), span("f", Some("g"))]);
        assert_eq!(to_row_set(&parts).row_ranges.len(), 2);
        c.tablet_done(&b("c"), Some(&b("e")));
        // Everything before "e" done: only the open span remains.
        assert_eq!(c.remaining(), vec![span("f", None)]);
        assert_eq!(c.target(), Some(Target::Holding(b("f"))));
        assert!(c.parts(&b("d"), Some(&b("f"))).is_empty());
        c.tablet_done(&b("e"), None);
        assert_eq!(c.target(), None);
        assert!(!c.accept(b"z"), "nothing after the table's end");
    }

    #[test]
    fn a_reversed_cursor_walks_from_the_end_of_the_last_span() {
        let mut c = Cursor::new(vec![span("a", Some("d")), span("f", Some("k"))], true);
        assert_eq!(c.target(), Some(Target::Before(Some(b("k")))));
        // The tablet ["g", "k") holds the rows before "k".
        assert_eq!(c.parts(&b("g"), Some(&b("k"))), vec![span("g", Some("k"))]);
        assert!(c.accept(b"j"));
        assert!(!c.accept(b"j"), "a row is delivered once");
        assert!(!c.accept(b"j\0"), "a later row is dropped");
        assert!(c.accept(b"h"));
        assert_eq!(c.target(), Some(Target::Before(Some(b("h")))));
        c.tablet_done(&b("g"), Some(&b("k")));
        assert_eq!(
            c.remaining(),
            vec![span("a", Some("d")), span("f", Some("g"))]
        );
        assert_eq!(c.target(), Some(Target::Before(Some(b("g")))));
        // The tablet ["", "g") holds the rest; its end passes the window: clipped.
        assert_eq!(
            c.parts(&b(""), Some(&b("z"))),
            vec![span("a", Some("d")), span("f", Some("g"))]
        );
        c.tablet_done(&b(""), Some(&b("z")));
        assert_eq!(c.target(), None);
        assert!(!c.accept(b"a"));
        // An open span makes the table's end the first target.
        let c = Cursor::new(vec![span("a", Some("d")), span("f", None)], true);
        assert_eq!(c.target(), Some(Target::Before(None)));
    }

    #[test]
    fn scanned_keys_beyond_the_last_row_move_the_window_past_them() {
        // Forward: rows "b" delivered, then the server looked at rows up to "m".
        let mut c = Cursor::new(vec![span("a", Some("x"))], false);
        assert!(c.accept(b"b"));
        assert!(!c.scanned(b"b"), "the last row delivered is no progress");
        assert!(!c.scanned(b"a"), "a key before it neither");
        assert!(c.scanned(b"m"));
        assert_eq!(
            c.remaining(),
            vec![Span {
                start: Bytes::from_static(b"m\0"),
                end: Some(b("x"))
            }]
        );
        assert!(!c.scanned(b"m"), "reported once");
        assert!(!c.accept(b"k"), "a row the scan passed is dropped");
        assert!(c.accept(b"m\0"), "the row right after is still to come");
        // A resume asks only for the rest.
        assert_eq!(
            c.parts(&b(""), None),
            vec![Span {
                start: Bytes::from_static(b"m\0\0"),
                end: Some(b("x"))
            }]
        );

        // Reversed: row "t" delivered, then rows down to "f" looked at.
        let mut c = Cursor::new(vec![span("a", Some("x"))], true);
        assert!(c.accept(b"t"));
        assert!(!c.scanned(b"t"), "the last row delivered is no progress");
        assert!(!c.scanned(b"u"), "a key after it neither");
        assert!(c.scanned(b"f"));
        assert_eq!(c.remaining(), vec![span("a", Some("f"))]);
        assert_eq!(c.target(), Some(Target::Before(Some(b("f")))));
        assert!(!c.scanned(b"f"), "reported once");
        assert!(!c.accept(b"f"), "the scanned row itself was looked at");
        assert!(c.accept(b"e"));

        // Before any row: any key in the window is progress.
        let mut c = Cursor::new(vec![span("", None)], false);
        assert!(c.scanned(b"k"));
        assert_eq!(
            c.target(),
            Some(Target::Holding(Bytes::from_static(b"k\0")))
        );
        c.tablet_done(&b(""), None);
        assert!(!c.scanned(b"z"), "nothing after the table's end");
    }

    /// A simulated table for the model test: rows, tablets cut at `cuts`, and a server that
    /// answers `ReadRows` for the remaining spans of one tablet.
    mod model {
        use std::collections::BTreeSet;
        use std::ops::Bound;

        use proptest::prelude::*;

        use super::*;

        fn key() -> impl Strategy<Value = Vec<u8>> {
            prop::collection::vec(prop::sample::select(vec![b'a', b'b', b'c', 0u8]), 1..4)
        }

        fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
            prop_oneof![
                key().prop_map(Bound::Included),
                key().prop_map(Bound::Excluded),
                Just(Bound::Unbounded),
            ]
        }

        fn row_set() -> impl Strategy<Value = RowSet> {
            (
                prop::collection::vec(key(), 0..4),
                prop::collection::vec((bound(), bound()), 0..4),
                any::<bool>(),
            )
                .prop_map(|(keys, ranges, all)| {
                    if all {
                        return RowSet::all();
                    }
                    let mut set = RowSet::new();
                    for k in keys {
                        set = set.key(k);
                    }
                    for (s, e) in ranges {
                        let map = |b: Bound<Vec<u8>>| match b {
                            Bound::Included(k) => Bound::Included(Bytes::from(k)),
                            Bound::Excluded(k) => Bound::Excluded(Bytes::from(k)),
                            Bound::Unbounded => Bound::Unbounded,
                        };
                        set.ranges.push(RowRange {
                            start: map(s),
                            end: map(e),
                        });
                    }
                    set
                })
        }

        fn in_set(set: &RowSet, row: &[u8]) -> bool {
            set.keys.iter().any(|k| k.as_ref() == row)
                || set.ranges.iter().any(|r| {
                    let after_start = match &r.start {
                        Bound::Included(s) => s.as_ref() <= row,
                        Bound::Excluded(s) => s.as_ref() < row,
                        Bound::Unbounded => true,
                    };
                    let before_end = match &r.end {
                        Bound::Included(e) => row <= e.as_ref(),
                        Bound::Excluded(e) => row < e.as_ref(),
                        Bound::Unbounded => true,
                    };
                    after_start && before_end
                })
        }

        /// The tablet `[start, end)` of the table cut at `cuts` that `target` names.
        fn tablet(cuts: &BTreeSet<Vec<u8>>, target: &Target) -> (Bytes, Option<Bytes>) {
            let mut start = Vec::new();
            for cut in cuts {
                let holds = match target {
                    Target::Holding(row) => row.as_ref() < cut.as_slice(),
                    Target::Before(Some(p)) => p.as_ref() <= cut.as_slice(),
                    Target::Before(None) => false,
                };
                if holds {
                    return (Bytes::from(start), Some(Bytes::from(cut.clone())));
                }
                start = cut.clone();
            }
            (Bytes::from(start), None)
        }

        /// One scan against the simulated cluster: at step `i` the tablets are cut at
        /// `layouts[i % len]` (splits and merges between steps), the server fails after
        /// looking at `stops[i % len]` rows if that is `Some` and fewer than it had (the scan
        /// resumes from its cursor), and each answer starts with the last row already
        /// delivered (a duplicate the cursor must drop). The filter removes the `hidden`
        /// rows: the server looks at them but does not send them, and reports the last row
        /// it looked at (`last_scanned_row_key`) before it fails or ends, and a stale one (the
        /// last row delivered) first.
        fn scan(
            rows: &BTreeSet<Vec<u8>>,
            hidden: &BTreeSet<Vec<u8>>,
            set: &RowSet,
            reversed: bool,
            limit: Option<usize>,
            layouts: &[BTreeSet<Vec<u8>>],
            stops: &[Option<usize>],
        ) -> Result<Vec<Vec<u8>>, String> {
            let mut cursor = Cursor::new(spans(set), reversed);
            let mut out: Vec<Vec<u8>> = Vec::new();
            for step in 0..10_000 {
                if limit.is_some_and(|l| out.len() >= l) {
                    return Ok(out);
                }
                let Some(target) = cursor.target() else {
                    return Ok(out);
                };
                let (start, end) = tablet(&layouts[step % layouts.len()], &target);
                let parts = cursor.parts(&start, end.as_ref());
                if parts.is_empty() {
                    return Err(format!("no parts for {target:?} in [{start:?}, {end:?})"));
                }
                // The rows the server looks at, up to the one that reaches the limit.
                let mut answer: Vec<&Vec<u8>> = rows
                    .iter()
                    .filter(|r| parts.iter().any(|p| contains(p, r)))
                    .collect();
                if reversed {
                    answer.reverse();
                }
                if let Some(l) = limit {
                    let mut kept = 0;
                    if let Some(at) = answer.iter().position(|r| {
                        kept += usize::from(!hidden.contains(*r));
                        kept == l - out.len()
                    }) {
                        answer.truncate(at + 1);
                    }
                }
                // A failure only after some rows (else a scan could fail forever).
                let stop = stops[step % stops.len()].filter(|s| *s < answer.len());
                let looked = stop.unwrap_or(answer.len());
                if let Some(first) = out.last().cloned() {
                    // A duplicate of an already delivered row, and stale progress.
                    if cursor.accept(&first) {
                        return Err(format!("{first:?} accepted twice"));
                    }
                    if cursor.scanned(&first) {
                        return Err(format!("{first:?} delivered, then reported as progress"));
                    }
                }
                for row in &answer[..looked] {
                    if !hidden.contains(*row) && cursor.accept(row) {
                        out.push((*row).clone());
                    }
                }
                if let Some(last) = looked.checked_sub(1).map(|i| answer[i]) {
                    let beyond = out
                        .last()
                        .is_none_or(|d| if reversed { last < d } else { last > d });
                    if cursor.scanned(last) != beyond {
                        return Err(format!("progress {last:?} after {:?}", out.last()));
                    }
                }
                if stop.is_none() {
                    cursor.tablet_done(&start, end.as_ref());
                }
            }
            Err("the scan did not finish".into())
        }

        fn contains(span: &Span, row: &[u8]) -> bool {
            span.start.as_ref() <= row && span.end.as_ref().is_none_or(|e| row < e.as_ref())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]
            #[test]
            fn a_reversed_scan_is_exactly_the_reverse_of_the_forward_scan(
                rows in prop::collection::btree_set(key(), 0..24),
                hidden in prop::collection::btree_set(key(), 0..12),
                set in row_set(),
                layouts in prop::collection::vec(prop::collection::btree_set(key(), 0..5), 1..4),
                stops in prop::collection::vec(prop::option::weighted(0.3, 1usize..3), 1..4),
                limit in prop::option::weighted(0.3, 0usize..10),
            ) {
                let want: Vec<Vec<u8>> = rows
                    .iter()
                    .filter(|r| in_set(&set, r) && !hidden.contains(*r))
                    .cloned()
                    .collect();
                let forward = scan(&rows, &hidden, &set, false, None, &layouts, &stops)
                    .map_err(TestCaseError::fail)?;
                prop_assert_eq!(&forward, &want);
                let mut reversed = scan(&rows, &hidden, &set, true, None, &layouts, &stops)
                    .map_err(TestCaseError::fail)?;
                reversed.reverse();
                prop_assert_eq!(&reversed, &want);
                if let Some(l) = limit {
                    let first = scan(&rows, &hidden, &set, false, Some(l), &layouts, &stops)
                        .map_err(TestCaseError::fail)?;
                    prop_assert_eq!(&first[..], &want[..l.min(want.len())]);
                    let mut last = scan(&rows, &hidden, &set, true, Some(l), &layouts, &stops)
                        .map_err(TestCaseError::fail)?;
                    last.reverse();
                    prop_assert_eq!(&last[..], &want[want.len() - l.min(want.len())..]);
                }
            }
        }
    }
}
