//! The read path's core: turning the merged entries of one row into the cells a reader sees, and
//! the entries a compaction keeps. Pure functions over sorted entries, no I/O.
//!
//! Within a row, entries arrive in key order, so every tombstone comes before the cells it may
//! hide (see `key`). A cell is visible when no row, family or column tombstone with a larger
//! sequence number covers it, and it is the newest write of its `(column, timestamp)`.

use bytes::Bytes;

use super::gc_policy::GcPolicy;
use super::key::{Entry, Seq, Value};

/// A visible cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    /// Column family.
    pub family: Bytes,
    /// Qualifier.
    pub qualifier: Bytes,
    /// Microseconds.
    pub timestamp: i64,
    /// Value.
    pub value: Bytes,
}

/// A row with its visible cells, ordered by family, qualifier, then timestamp newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Row key.
    pub key: Bytes,
    /// Cells.
    pub cells: Vec<Cell>,
}

/// Which cells of a row a reader wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CellFilter {
    /// Only these families (`None`: all).
    pub families: Option<Vec<Bytes>>,
    /// Only these columns `(family, qualifier)` (`None`: all); combined with `families` by AND.
    pub columns: Option<Vec<(Bytes, Bytes)>>,
    /// Only cells with `start <= timestamp < end`.
    pub time_range: Option<(i64, i64)>,
    /// At most this many newest cells per column (after the time range).
    pub max_versions: Option<usize>,
}

impl CellFilter {
    /// Whether any cell of `family` can pass.
    pub fn wants_family(&self, family: &[u8]) -> bool {
        self.families
            .as_ref()
            .is_none_or(|fs| fs.iter().any(|f| f == family))
            && self
                .columns
                .as_ref()
                .is_none_or(|cs| cs.iter().any(|(f, _)| f == family))
    }

    fn wants_column(&self, family: &[u8], qualifier: &[u8]) -> bool {
        self.wants_family(family)
            && self
                .columns
                .as_ref()
                .is_none_or(|cs| cs.iter().any(|(f, q)| f == family && q == qualifier))
    }

    fn wants_time(&self, ts: i64) -> bool {
        in_time_range(self.time_range, ts)
    }
}

/// Whether `ts` is in `start <= ts < end` (`None`: any time).
pub(crate) fn in_time_range(range: Option<(i64, i64)>, ts: i64) -> bool {
    range.is_none_or(|(s, e)| s <= ts && ts < e)
}

/// A put entry that survived tombstones and same-timestamp overwrites, with its version index
/// (0 = newest visible cell of its column).
struct Survivor<'a> {
    index: usize,
    entry: &'a Entry,
    qualifier: &'a Bytes,
    version: usize,
}

/// Walks one row's entries (sorted forward) and calls `f` for every visible put.
fn for_each_visible<'a>(entries: &'a [Entry], mut f: impl FnMut(Survivor<'a>)) {
    let mut row_deleted: Seq = 0;
    let mut family: Option<&Bytes> = None;
    let mut family_deleted: Seq = 0;
    let mut column: Option<&Bytes> = None;
    let mut column_tombstones: Vec<(i64, i64, Seq)> = Vec::new();
    let mut last_ts: Option<i64> = None;
    let mut version = 0;
    for (index, e) in entries.iter().enumerate() {
        let k = &e.key;
        if family != Some(&k.family) {
            family = Some(&k.family);
            family_deleted = row_deleted;
            column = None;
        }
        let Some(qualifier) = &k.qualifier else {
            match e.value {
                Value::DeleteRow => row_deleted = row_deleted.max(k.seq),
                Value::DeleteFamily => family_deleted = family_deleted.max(k.seq),
                _ => {}
            }
            family_deleted = family_deleted.max(row_deleted);
            continue;
        };
        if column != Some(qualifier) {
            column = Some(qualifier);
            column_tombstones.clear();
            last_ts = None;
            version = 0;
        }
        match &e.value {
            Value::DeleteColumn { start, end } => column_tombstones.push((*start, *end, k.seq)),
            Value::Put(_) => {
                if last_ts == Some(k.timestamp) {
                    continue; // an older write at the same timestamp: overwritten
                }
                last_ts = Some(k.timestamp);
                let hidden = k.seq < family_deleted
                    || column_tombstones
                        .iter()
                        .any(|&(s, en, seq)| seq > k.seq && s <= k.timestamp && k.timestamp < en);
                if !hidden {
                    f(Survivor {
                        index,
                        entry: e,
                        qualifier,
                        version,
                    });
                    version += 1;
                }
            }
            Value::DeleteFamily | Value::DeleteRow => {}
        }
    }
}

/// The cells of one row (its entries sorted forward) that `filter` lets through. Drains the
/// entries, so the cells own their bytes without copying them and the caller can reuse the
/// vector's allocation for the next row.
pub fn resolve_row(entries: &mut Vec<Entry>, filter: &CellFilter) -> Vec<Cell> {
    // Fast path: a row of one cell (the common case in scans) needs no bookkeeping.
    if entries.len() == 1
        && let Some(Entry {
            key,
            value: Value::Put(_),
        }) = entries.first()
        && let Some(qualifier) = &key.qualifier
        && filter.wants_column(&key.family, qualifier)
        && filter.wants_time(key.timestamp)
        && filter.max_versions != Some(0)
        && let Some(Entry {
            key,
            value: Value::Put(value),
        }) = entries.pop()
    {
        return vec![Cell {
            family: key.family,
            qualifier: key.qualifier.unwrap_or_default(),
            timestamp: key.timestamp,
            value,
        }];
    }
    let mut picked: Vec<usize> = Vec::new();
    let mut counted: Option<(&Bytes, &Bytes, usize)> = None;
    for_each_visible(entries, |s| {
        let k = &s.entry.key;
        if !filter.wants_column(&k.family, s.qualifier) || !filter.wants_time(k.timestamp) {
            return;
        }
        let n = match counted {
            Some((f, q, n)) if f == &k.family && q == s.qualifier => n,
            _ => 0,
        };
        if filter.max_versions.is_some_and(|max| n >= max) {
            return;
        }
        counted = Some((&k.family, s.qualifier, n + 1));
        picked.push(s.index);
    });
    let mut cells = Vec::with_capacity(picked.len());
    let mut picked = picked.into_iter().peekable();
    for (i, e) in entries.drain(..).enumerate() {
        if picked.peek() != Some(&i) {
            continue;
        }
        picked.next();
        if let (Value::Put(value), Some(qualifier)) = (e.value, e.key.qualifier) {
            cells.push(Cell {
                family: e.key.family,
                qualifier,
                timestamp: e.key.timestamp,
                value,
            });
        }
    }
    cells
}

/// What a compaction needs to decide what to keep.
pub struct CompactionRules<'a> {
    /// Major compaction: drop hidden cells, cells past their GC policy, and tombstones.
    pub major: bool,
    /// Tombstones with a sequence number below this may be dropped (nothing outside the
    /// compaction's input has a smaller sequence number).
    pub tombstone_gc_below: Seq,
    /// The GC policy of a family.
    pub policy: &'a dyn Fn(&[u8]) -> GcPolicy,
    /// Now, for max-age rules.
    pub now_micros: i64,
}

/// The entries of one row (sorted forward) a compaction writes out, in order.
pub fn compact_row(entries: Vec<Entry>, rules: &CompactionRules<'_>) -> Vec<Entry> {
    if !rules.major {
        return entries;
    }
    let keep = kept(&entries, rules);
    entries
        .into_iter()
        .zip(keep)
        .filter(|(_, keep)| *keep)
        .map(|(e, _)| e)
        .collect()
}

/// How many of one row's entries (sorted forward) a major compaction under `rules` would drop:
/// what a read of the row merged and resolved away for nothing.
pub fn garbage_in_row(entries: &[Entry], rules: &CompactionRules<'_>) -> usize {
    kept(entries, rules).iter().filter(|k| !**k).count()
}

/// Which entries of a row a major compaction keeps: visible cells its GC policy keeps, and
/// tombstones something outside the compaction may still need.
fn kept(entries: &[Entry], rules: &CompactionRules<'_>) -> Vec<bool> {
    let mut keep = vec![false; entries.len()];
    let mut policy: Option<(&Bytes, GcPolicy)> = None;
    for_each_visible(entries, |s| {
        let k = &s.entry.key;
        let gc = match &policy {
            Some((f, p)) if *f == &k.family => p,
            _ => &policy.insert((&k.family, (rules.policy)(&k.family))).1,
        };
        if !gc.drops(s.version, k.timestamp, rules.now_micros)
            && let Some(slot) = keep.get_mut(s.index)
        {
            *slot = true;
        }
    });
    for (slot, e) in keep.iter_mut().zip(entries) {
        if e.value.is_tombstone() && e.key.seq >= rules.tombstone_gc_below {
            *slot = true;
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::mutation::{Mutation, RowMutation};

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn set(f: &str, q: &str, ts: i64, v: &str) -> Mutation {
        Mutation::SetCell {
            family: b(f),
            qualifier: b(q),
            timestamp: ts,
            value: b(v),
        }
    }

    /// Entries of the given mutations, applied one row mutation after another, sorted.
    fn entries(batches: Vec<Vec<Mutation>>) -> Vec<Entry> {
        let mut seq = 1;
        let mut out = Vec::new();
        for ms in batches {
            let n = ms.len() as u64;
            out.extend(
                RowMutation {
                    row: b("r"),
                    mutations: ms,
                }
                .to_entries(seq),
            );
            seq += n;
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    fn cells(es: &[Entry], filter: &CellFilter) -> Vec<(String, String, i64, String)> {
        resolve_row(&mut es.to_vec(), filter)
            .into_iter()
            .map(|c| {
                let s = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
                (s(&c.family), s(&c.qualifier), c.timestamp, s(&c.value))
            })
            .collect()
    }

    fn c(f: &str, q: &str, ts: i64, v: &str) -> (String, String, i64, String) {
        (f.into(), q.into(), ts, v.into())
    }

    #[test]
    fn later_writes_at_the_same_timestamp_win() {
        let es = entries(vec![
            vec![set("f", "q", 5, "old")],
            vec![set("f", "q", 5, "new")],
        ]);
        assert_eq!(
            cells(&es, &CellFilter::default()),
            vec![c("f", "q", 5, "new")]
        );
    }

    #[test]
    fn tombstones_hide_only_older_writes_in_scope() {
        let es = entries(vec![
            vec![
                set("f", "a", 1, "1"),
                set("f", "a", 7, "7"),
                set("g", "a", 1, "g"),
            ],
            vec![Mutation::DeleteFromColumn {
                family: b("f"),
                qualifier: b("a"),
                start: 0,
                end: 5,
            }],
            vec![set("f", "a", 2, "2")],
            vec![Mutation::DeleteFromFamily { family: b("g") }],
            vec![set("f", "b", 3, "b")],
        ]);
        assert_eq!(
            cells(&es, &CellFilter::default()),
            vec![
                c("f", "a", 7, "7"),
                c("f", "a", 2, "2"),
                c("f", "b", 3, "b")
            ]
        );
        let mut with_row_delete = es.clone();
        with_row_delete.extend(
            RowMutation {
                row: b("r"),
                mutations: vec![Mutation::DeleteFromRow, set("g", "z", 1, "z")],
            }
            .to_entries(100),
        );
        with_row_delete.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(
            cells(&with_row_delete, &CellFilter::default()),
            vec![c("g", "z", 1, "z")]
        );
    }

    #[test]
    fn filters_select_columns_times_and_versions() {
        let es = entries(vec![vec![
            set("f", "a", 1, "1"),
            set("f", "a", 2, "2"),
            set("f", "a", 3, "3"),
            set("f", "b", 1, "b"),
            set("g", "a", 1, "g"),
        ]]);
        let versions = CellFilter {
            max_versions: Some(1),
            ..Default::default()
        };
        assert_eq!(
            cells(&es, &versions),
            vec![
                c("f", "a", 3, "3"),
                c("f", "b", 1, "b"),
                c("g", "a", 1, "g")
            ]
        );
        let time = CellFilter {
            time_range: Some((1, 3)),
            max_versions: Some(1),
            ..Default::default()
        };
        assert_eq!(cells(&es, &time)[0], c("f", "a", 2, "2"));
        let fam = CellFilter {
            families: Some(vec![b("g")]),
            ..Default::default()
        };
        assert_eq!(cells(&es, &fam), vec![c("g", "a", 1, "g")]);
        let col = CellFilter {
            columns: Some(vec![(b("f"), b("b"))]),
            ..Default::default()
        };
        assert_eq!(cells(&es, &col), vec![c("f", "b", 1, "b")]);
    }

    /// Family `f` keeps `n` versions, every other family everything.
    fn f_keeps_versions(n: u32) -> impl Fn(&[u8]) -> GcPolicy {
        move |f: &[u8]| {
            if f == b"f" {
                GcPolicy::MaxVersions(n)
            } else {
                GcPolicy::KeepAll
            }
        }
    }

    /// A major compaction under `policy` that may drop tombstones numbered below 100.
    fn major_rules(policy: &dyn Fn(&[u8]) -> GcPolicy) -> CompactionRules<'_> {
        CompactionRules {
            major: true,
            tombstone_gc_below: 100,
            policy,
            now_micros: 0,
        }
    }

    #[test]
    fn major_compaction_applies_gc_and_drops_old_tombstones() {
        let es = entries(vec![
            vec![
                set("f", "a", 1, "1"),
                set("f", "a", 2, "2"),
                set("f", "a", 3, "3"),
            ],
            vec![Mutation::DeleteFromFamily { family: b("g") }],
        ]);
        let policy = f_keeps_versions(2);
        let rules = major_rules(&policy);
        let kept = compact_row(es.clone(), &rules);
        assert_eq!(
            cells(&kept, &CellFilter::default()),
            vec![c("f", "a", 3, "3"), c("f", "a", 2, "2")]
        );
        assert_eq!(kept.len(), 2, "the family tombstone was dropped");
        let keep_tombstones = CompactionRules {
            tombstone_gc_below: 0,
            ..rules
        };
        assert_eq!(compact_row(es.clone(), &keep_tombstones).len(), 3);
        let minor = CompactionRules {
            major: false,
            ..keep_tombstones
        };
        assert_eq!(compact_row(es.clone(), &minor), es);
    }

    #[test]
    fn garbage_is_what_a_major_compaction_drops() {
        let es = entries(vec![
            vec![set("f", "a", 1, "old"), set("g", "a", 1, "g1")],
            vec![set("f", "a", 1, "new"), set("f", "a", 2, "2")],
            vec![Mutation::DeleteFromColumn {
                family: b("g"),
                qualifier: b("a"),
                start: 0,
                end: 10,
            }],
            vec![set("f", "b", 1, "b")],
        ]);
        let policy = f_keeps_versions(1);
        let rules = major_rules(&policy);
        // f:a@1 overwritten, f:a@1 (new) past one version, g:a@1 deleted, the tombstone
        // itself; f:a@2 and f:b@1 stay.
        assert_eq!(garbage_in_row(&es, &rules), 4);
        assert_eq!(
            garbage_in_row(&es, &rules),
            es.len() - compact_row(es.clone(), &rules).len()
        );
        let keep_tombstones = CompactionRules {
            tombstone_gc_below: 0,
            ..rules
        };
        assert_eq!(garbage_in_row(&es, &keep_tombstones), 3);
        let single = entries(vec![vec![set("f", "a", 1, "1")]]);
        assert_eq!(garbage_in_row(&single, &keep_tombstones), 0);
    }
}
