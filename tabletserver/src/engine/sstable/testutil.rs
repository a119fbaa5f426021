//! Test helpers: in-memory files, entry constructors and a proptest strategy for sorted entries.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use proptest::prelude::*;
use tabula_common::{AppendFile, FileId};

use super::decode::MemRead;
use super::{BlockCache, Sstable, SstableError, SstableOptions, SstableWriter};
use crate::engine::key::{CellKey, Entry, Value};

/// An append file in memory; `contents` shares the bytes written.
#[derive(Clone, Default)]
pub(crate) struct MemFile(pub(crate) Arc<Mutex<Vec<u8>>>);

impl MemFile {
    pub(crate) fn contents(&self) -> Bytes {
        Bytes::from(self.0.lock().clone())
    }
}

impl AppendFile for MemFile {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.0.lock().extend_from_slice(data);
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn len(&self) -> u64 {
        self.0.lock().len() as u64
    }
}

pub(crate) fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

pub(crate) fn put(row: &str, fam: &str, q: &str, ts: i64, seq: u64, v: &str) -> Entry {
    Entry {
        key: CellKey {
            row: b(row),
            family: b(fam),
            qualifier: Some(b(q)),
            timestamp: ts,
            seq,
        },
        value: Value::Put(b(v)),
    }
}

/// `len` deterministic bytes zstd cannot shrink (xorshift64 from `seed`).
pub(crate) fn noise(seed: u64, len: usize) -> Bytes {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// `count` puts, one per row (`row00000`, ...; family `f`, no qualifier, timestamp 1), the
/// value of row `i` being `value(i)`; sorted.
pub(crate) fn rows_of(count: u64, mut value: impl FnMut(u64) -> Bytes) -> Vec<Entry> {
    (0..count)
        .map(|i| Entry {
            key: CellKey {
                row: Bytes::from(format!("row{i:05}")),
                family: Bytes::from_static(b"f"),
                qualifier: None,
                timestamp: 1,
                seq: i + 1,
            },
            value: Value::Put(value(i)),
        })
        .collect()
}

/// Writes `entries` (already sorted) to an in-memory SSTable and returns its bytes.
pub(crate) fn write_table(entries: &[Entry], opts: SstableOptions) -> Bytes {
    let file = MemFile::default();
    let mut w = SstableWriter::new(Box::new(file.clone()), opts);
    for e in entries {
        w.add(e).expect("add");
    }
    let meta = w.finish().expect("finish");
    let bytes = file.contents();
    assert_eq!(meta.file_size_bytes, bytes.len() as u64);
    bytes
}

pub(crate) fn open_bytes(
    bytes: Bytes,
    cache: Arc<BlockCache>,
) -> Result<Arc<Sstable>, SstableError> {
    Sstable::open(FileId(42), Arc::new(MemRead(bytes)), cache)
}

pub(crate) fn tiny_blocks() -> SstableOptions {
    SstableOptions {
        block_size_bytes: 256,
        zstd_level: 1,
        bloom_bits_per_key: 10,
        ..SstableOptions::default()
    }
}

/// A sample of every entry kind over a few rows, sorted.
pub(crate) fn sample_entries(rows: usize) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut seq = 1_000_000u64;
    for r in 0..rows {
        let row = format!("row{r:05}");
        let mut add = |key: CellKey, value: Value| {
            seq -= 1;
            out.push(Entry {
                key: CellKey { seq, ..key },
                value,
            });
        };
        let k = |fam: &str, q: Option<&str>, ts: i64| CellKey {
            row: b(&row),
            family: b(fam),
            qualifier: q.map(b),
            timestamp: ts,
            seq: 0,
        };
        if r % 7 == 0 {
            add(k("", None, i64::MAX), Value::DeleteRow);
        }
        if r % 5 == 0 {
            add(k("cf", None, i64::MAX), Value::DeleteFamily);
        }
        add(k("cf", Some(""), 10), Value::Put(Bytes::new()));
        if r % 3 == 0 {
            add(
                k("cf", Some("a"), i64::MAX),
                Value::DeleteColumn { start: 0, end: 5 },
            );
        }
        for ts in [30, 20] {
            add(
                k("cf", Some("a"), ts),
                Value::Put(b(&format!("value-{r}-{ts}"))),
            );
        }
        add(
            k("cf2", Some("b"), -1),
            Value::Put(Bytes::from(vec![b'x'; r % 50])),
        );
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

/// Sorted entries with distinct keys drawn from a small alphabet (so rows repeat and ranges
/// land between and on them).
pub(crate) fn sorted_entries(max: usize) -> impl Strategy<Value = Vec<Entry>> {
    let row = prop::collection::vec(
        prop::sample::select(vec![b'a', b'b', b'c', 0u8, 0xff]),
        1..4,
    );
    let family = prop::sample::select(vec!["", "f", "g"]);
    let qualifier = prop::option::of(prop::collection::vec(any::<u8>(), 0..3));
    let value = prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..40).prop_map(|v| Value::Put(Bytes::from(v))),
        1 => (any::<i64>(), any::<i64>()).prop_map(|(start, end)| Value::DeleteColumn { start, end }),
        1 => Just(Value::DeleteFamily),
        1 => Just(Value::DeleteRow),
    ];
    let ts = prop_oneof![any::<i64>(), Just(i64::MAX), 0i64..100];
    let entry =
        (row, family, qualifier, ts, 1u64..1000, value).prop_map(|(r, f, q, ts, seq, v)| {
            let key = CellKey {
                row: Bytes::from(r),
                family: b(f),
                qualifier: q.map(Bytes::from),
                timestamp: ts,
                seq,
            };
            (key, v)
        });
    prop::collection::vec(entry, 1..max).prop_map(|v| {
        let map: BTreeMap<CellKey, Value> = v.into_iter().collect();
        map.into_iter()
            .map(|(key, value)| Entry { key, value })
            .collect()
    })
}
