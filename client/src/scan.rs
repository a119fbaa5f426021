//! `RowStream`: a scan across tablets, in row order, that resumes after the last row it
//! delivered.
//!
//! The row set becomes half-open spans `[start, end)` (a key `k` is `[k, k\0)`; an excluded
//! start `k` is `k\0`). The scan keeps a position `pos`: every row before it was delivered or
//! lies in no span. A step locates the tablet holding the first remaining row, asks it for
//! the remaining spans clipped to its range (`TabletService.ReadRows` with its `TabletRef`),
//! and delivers rows, moving `pos` past each; when the tablet's stream ends, `pos` moves to
//! the tablet's end. On a retryable failure (`WrongTablet` after a split or move, a dead
//! server) the cached location is dropped and, after a backoff, the scan starts again from
//! `pos` — so no row is repeated or skipped. A row at or before the last delivered one (which
//! a correct server never sends) is dropped. The backoff's deadline restarts with every row
//! delivered. Forward scans only.

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

/// What is left of `spans` from row `pos` on, within `[start, end)`.
pub(crate) fn remaining(
    spans: &[Span],
    pos: &Bytes,
    start: &Bytes,
    end: Option<&Bytes>,
) -> Vec<Span> {
    spans
        .iter()
        .map(|s| s.clip(pos, None).clip(start, end))
        .filter(|s| !s.is_empty())
        .collect()
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

/// The tablet being read and its open stream.
struct Current {
    record: TabletRecord,
    stream: tonic::Streaming<tpb::ReadRowsResponse>,
}

/// The scan's state between rows.
struct Scan {
    table: Table,
    spans: Vec<Span>,
    pos: Bytes,
    rows_left: Option<u64>,
    filter: Option<bt::RowFilter>,
    current: Option<Current>,
    buffer: VecDeque<bt::Row>,
    backoff: Backoff,
    finished: bool,
}

impl Scan {
    /// The next row, an error (after which the scan is over), or `None` at the end.
    async fn next(&mut self) -> Option<Result<Row, Error>> {
        loop {
            if self.finished || self.rows_left == Some(0) {
                self.current = None;
                return None;
            }
            while let Some(row) = self.buffer.pop_front() {
                if row.key.as_slice() < self.pos.as_ref() {
                    continue;
                }
                self.pos = successor(&row.key);
                self.rows_left = self.rows_left.map(|n| n - 1);
                self.backoff.reset();
                return Some(Ok(Row::from_proto(row)));
            }
            let step = match self.current.as_mut() {
                Some(current) => Self::pull(&self.table, current).await,
                None => self.open().await,
            };
            match step {
                Ok(Step::Rows(rows)) => self.buffer.extend(rows),
                Ok(Step::Opened(current)) => self.current = Some(*current),
                Ok(Step::TabletDone) => {
                    let done = self.current.take().map(|c| c.record.end_row);
                    match done {
                        Some(Some(end)) if end > self.pos => self.pos = end,
                        Some(Some(_)) => {}
                        Some(None) | None => self.finished = true,
                    }
                }
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

    /// Opens a stream on the tablet holding the first remaining row.
    async fn open(&mut self) -> Result<Step, Error> {
        let all = remaining(&self.spans, &self.pos, &Bytes::new(), None);
        let Some(first) = all.iter().map(|s| s.start.clone()).min() else {
            return Ok(Step::Nothing);
        };
        let client = self.table.client();
        let record = client.locate(self.table.id(), &first).await?;
        let parts = remaining(&all, &first, &record.start_row, record.end_row.as_ref());
        let request = tpb::ReadRowsRequest {
            tablet: Some(record.tablet_ref()),
            rows: Some(to_row_set(&parts)),
            filter: self.filter.clone(),
            rows_limit: self
                .rows_left
                .map_or(0, |n| i64::try_from(n).unwrap_or(i64::MAX)),
            reversed: false,
        };
        let mut data = client.channels().data(&record.server_addr)?;
        let answer = self.table.timed(data.read_rows(request)).await;
        self.table.after_failure(&record, answer.as_ref().err());
        Ok(Step::Opened(Box::new(Current {
            record,
            stream: answer?.into_inner(),
        })))
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
            Ok(Ok(Some(message))) => Ok(Step::Rows(message.rows)),
        }
    }
}

enum Step {
    Opened(Box<Current>),
    Rows(Vec<bt::Row>),
    TabletDone,
    Nothing,
}

type Pending = Pin<Box<dyn Future<Output = (Scan, Option<Result<Row, Error>>)> + Send>>;

/// The rows of a `read_rows` call, in row order; also a `Stream`. After an error it ends.
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
                spans: spans(&rows),
                pos: Bytes::new(),
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

    /// Every remaining row; the first error ends it.
    pub async fn collect_rows(mut self) -> Result<Vec<Row>, Error> {
        let mut out = Vec::new();
        while let Some(row) = self.next_row().await {
            out.push(row?);
        }
        Ok(out)
    }
}

impl Stream for RowStream {
    type Item = Result<Row, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.pending.is_none() {
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
    fn remaining_clips_to_the_position_and_the_tablet() {
        let s = vec![span("a", Some("d")), span("f", None)];
        // A tablet ["c", "g") after row "b" was delivered (pos = "b\0").
        let pos = Bytes::from_static(b"b\0");
        let r = remaining(&s, &pos, &b("c"), Some(&b("g")));
        assert_eq!(r, vec![span("c", Some("d")), span("f", Some("g"))]);
        // Everything before "e" done: only the open span remains.
        assert_eq!(remaining(&s, &b("e"), &b(""), None), vec![span("f", None)]);
        assert!(remaining(&s, &b("e"), &b("d"), Some(&b("f"))).is_empty());
        let set = to_row_set(&r);
        assert_eq!(set.row_ranges.len(), 2);
    }
}
