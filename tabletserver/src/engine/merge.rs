//! The merging iterator: many sorted entry sources (memtables, SSTables) in, one sorted stream
//! out, seen at a snapshot sequence number.
//!
//! Entries above the snapshot are skipped; an entry found in several sources under the same key
//! (the same record replayed into a memtable after its SSTable was written) is yielded once.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::error::EngineError;
use super::key::{Entry, Seq};

/// A sorted source of entries.
pub type EntrySource = Box<dyn Iterator<Item = Result<Entry, EngineError>> + Send>;

struct Head {
    entry: Entry,
    source: usize,
    reverse: bool,
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Head {}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Head {
    /// `BinaryHeap` pops the greatest: the greatest head is the one to yield next.
    fn cmp(&self, other: &Self) -> Ordering {
        let by_key = self.entry.key.cmp(&other.entry.key);
        let by_key = if self.reverse {
            by_key
        } else {
            by_key.reverse()
        };
        by_key.then_with(|| other.source.cmp(&self.source))
    }
}

/// Merges sorted sources into one sorted stream at a snapshot.
pub struct MergeIter {
    sources: Vec<EntrySource>,
    heap: BinaryHeap<Head>,
    reverse: bool,
    snapshot: Seq,
    started: bool,
    pending_error: Option<EngineError>,
}

impl MergeIter {
    /// Merges `sources`, each sorted in the direction given by `reverse`, hiding entries with a
    /// sequence number above `snapshot`.
    pub fn new(sources: Vec<EntrySource>, reverse: bool, snapshot: Seq) -> Self {
        MergeIter {
            sources,
            heap: BinaryHeap::new(),
            reverse,
            snapshot,
            started: false,
            pending_error: None,
        }
    }

    fn pull(&mut self, source: usize) -> Result<(), EngineError> {
        let Some(src) = self.sources.get_mut(source) else {
            return Ok(());
        };
        for item in src.by_ref() {
            let entry = item?;
            if entry.key.seq <= self.snapshot {
                self.heap.push(Head {
                    entry,
                    source,
                    reverse: self.reverse,
                });
                break;
            }
        }
        Ok(())
    }

    fn next_entry(&mut self) -> Result<Option<Entry>, EngineError> {
        if !self.started {
            self.started = true;
            for i in 0..self.sources.len() {
                self.pull(i)?;
            }
        }
        if let Some(e) = self.pending_error.take() {
            return Err(e);
        }
        let Some(head) = self.heap.pop() else {
            return Ok(None);
        };
        // An error from the source is reported after the entry already in hand.
        if let Err(e) = self.pull(head.source) {
            self.pending_error = Some(e);
        }
        // Drop copies of the same entry in other sources (a record replayed after its flush).
        while self.pending_error.is_none()
            && self
                .heap
                .peek()
                .is_some_and(|top| top.entry.key == head.entry.key)
        {
            if let Some(dup) = self.heap.pop()
                && let Err(e) = self.pull(dup.source)
            {
                self.pending_error = Some(e);
            }
        }
        Ok(Some(head.entry))
    }
}

impl Iterator for MergeIter {
    type Item = Result<Entry, EngineError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_entry() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => None,
            Err(e) => {
                // After an error the stream ends: nothing after it could be trusted to be sorted.
                self.heap.clear();
                self.sources.clear();
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::engine::key::{CellKey, Value};

    fn e(row: &str, seq: Seq) -> Entry {
        Entry {
            key: CellKey {
                row: Bytes::copy_from_slice(row.as_bytes()),
                family: Bytes::from_static(b"f"),
                qualifier: Some(Bytes::new()),
                timestamp: 1,
                seq,
            },
            value: Value::Put(Bytes::new()),
        }
    }

    fn src(mut v: Vec<Entry>, reverse: bool) -> EntrySource {
        v.sort_by(|a, b| {
            if reverse {
                b.key.cmp(&a.key)
            } else {
                a.key.cmp(&b.key)
            }
        });
        Box::new(v.into_iter().map(Ok))
    }

    #[test]
    fn merges_dedups_and_respects_snapshot_both_ways() {
        for reverse in [false, true] {
            let a = vec![e("a", 1), e("c", 3), e("e", 9)];
            let b = vec![e("b", 2), e("c", 3), e("d", 4)];
            let got: Vec<_> = MergeIter::new(vec![src(a, reverse), src(b, reverse)], reverse, 4)
                .map(|r| r.unwrap().key.row)
                .collect();
            let mut want: Vec<Bytes> = ["a", "b", "c", "d"]
                .iter()
                .map(|s| Bytes::copy_from_slice(s.as_bytes()))
                .collect();
            if reverse {
                want.reverse();
            }
            assert_eq!(got, want);
        }
    }

    #[test]
    fn an_error_ends_the_stream() {
        let bad: EntrySource =
            Box::new(vec![Ok(e("a", 1)), Err(EngineError::Closed), Ok(e("z", 2))].into_iter());
        let got: Vec<_> = MergeIter::new(vec![bad], false, 10).collect();
        assert_eq!(got.len(), 2);
        assert!(got[1].is_err());
    }
}
