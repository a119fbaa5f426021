//! The merging iterator: many sorted entry sources (memtables, SSTables) in, one sorted stream
//! out, seen at a snapshot sequence number.
//!
//! Entries above the snapshot are skipped; an entry found in several sources under the same key
//! (the same record replayed into a memtable after its SSTable was written) is yielded once.

use std::cmp::Ordering;

use super::error::EngineError;
use super::key::{Entry, RowPrefix, Seq};

/// A sorted source of entries.
pub type EntrySource = Box<dyn Iterator<Item = Result<Entry, EngineError>> + Send>;

/// Merges sorted sources into one sorted stream at a snapshot.
///
/// Each source's next entry waits in `heads`; the next to yield is found by a linear pass over
/// them. A tablet has few sources (a handful of memtables and SSTables), and unlike a binary
/// heap the pass never moves entries around, which the profile showed to matter. Each head
/// carries its row's `RowPrefix`, taken once when it is pulled: the pass compares those
/// integers and reads the keys' bytes only when two prefixes are equal (under long scans,
/// `memcmp` within key comparisons here was 15% of a tablet server's time).
pub struct MergeIter {
    sources: Vec<EntrySource>,
    heads: Vec<Option<Head>>,
    reverse: bool,
    snapshot: Seq,
    started: bool,
    pending_error: Option<EngineError>,
    duplicates: Vec<usize>,
}

/// A source's next entry and its row's prefix.
struct Head {
    prefix: RowPrefix,
    entry: Entry,
}

impl Head {
    fn cmp(&self, other: &Head) -> Ordering {
        self.prefix
            .cmp(&other.prefix)
            .then_with(|| self.entry.key.cmp(&other.entry.key))
    }
}

impl MergeIter {
    /// Merges `sources`, each sorted in the direction given by `reverse`, hiding entries with a
    /// sequence number above `snapshot`. Earlier sources win ties (they hold newer copies).
    pub fn new(sources: Vec<EntrySource>, reverse: bool, snapshot: Seq) -> Self {
        let heads = sources.iter().map(|_| None).collect();
        MergeIter {
            sources,
            heads,
            reverse,
            snapshot,
            started: false,
            pending_error: None,
            duplicates: Vec::new(),
        }
    }

    fn pull(&mut self, source: usize) -> Result<(), EngineError> {
        let (Some(src), Some(head)) = (self.sources.get_mut(source), self.heads.get_mut(source))
        else {
            return Ok(());
        };
        *head = None;
        for item in src.by_ref() {
            let entry = item?;
            if entry.key.seq <= self.snapshot {
                *head = Some(Head {
                    prefix: RowPrefix::of(&entry.key.row),
                    entry,
                });
                break;
            }
        }
        Ok(())
    }

    /// The source whose head comes next, and (in `self.duplicates`) the others holding the
    /// same key.
    fn best(&mut self) -> Option<usize> {
        self.duplicates.clear();
        let mut best: Option<(usize, &Head)> = None;
        for (i, head) in self.heads.iter().enumerate() {
            let Some(e) = head else { continue };
            match best {
                None => best = Some((i, e)),
                Some((_, b)) => {
                    let ord = e.cmp(b);
                    let ord = if self.reverse { ord.reverse() } else { ord };
                    match ord {
                        Ordering::Less => {
                            best = Some((i, e));
                            self.duplicates.clear();
                        }
                        Ordering::Equal => self.duplicates.push(i),
                        Ordering::Greater => {}
                    }
                }
            }
        }
        best.map(|(i, _)| i)
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
        let Some(best) = self.best() else {
            return Ok(None);
        };
        let entry = self
            .heads
            .get_mut(best)
            .and_then(Option::take)
            .map(|h| h.entry);
        // Drop copies of the same entry in other sources (a record replayed after its flush);
        // an error from a source is reported after the entry already in hand.
        let duplicates = std::mem::take(&mut self.duplicates);
        for i in duplicates.iter().copied().chain(std::iter::once(best)) {
            if let Err(e) = self.pull(i) {
                self.pending_error.get_or_insert(e);
            }
        }
        self.duplicates = duplicates;
        Ok(entry)
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
                self.heads.clear();
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
