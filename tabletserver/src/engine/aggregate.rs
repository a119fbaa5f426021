//! Aggregate column families, resolved before a write is logged: the pure core.
//!
//! An aggregate family (Cloud Bigtable's `Aggregate { input_type: Int64, aggregator: Sum }`)
//! holds 8-byte big-endian signed integers. `AddToCell { family, qualifier, timestamp, input }`
//! adds `input` into the cell at exactly that `(column, timestamp)`, an absent cell counting
//! as 0; cells at other timestamps of the column are other sums (Cloud Bigtable merges only
//! cells at the same timestamp).
//!
//! Rather than teach the memtable, SSTables, compaction and replay to merge cells, an add is
//! turned into the `SetCell` of the cell's new sum before the write is logged: the tablet reads
//! the cells the adds name ([`cells_to_read`]), [`resolve`] computes the sums, and the write
//! goes on as plain `SetCell`s. A same-timestamp `SetCell` overwrites the older cell by sequence
//! number, so reads, compaction and the commit log need nothing new. This is correct only if
//! nothing writes the row between the read and the write: the data service holds the row's lock
//! around both (`Tablet::resolve_aggregates` is called inside it).
//!
//! `resolve` is also where a row mutation meets its table's schema rules that the wire format
//! cannot state: `SetCell` on an aggregate family and `AddToCell` on a plain one are refused,
//! and on a millisecond table every timestamp a client names must be a multiple of 1000.
//!
//! Overflow wraps (two's complement), as the Go `int64` addition in Google's Bigtable emulator
//! does; a sum never fails for being large.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::mutation::{InvalidMutation, Mutation};
use super::options::{Granularity, Schema};

/// One aggregate cell: `(family, qualifier, timestamp)`.
pub type CellAt = (Bytes, Bytes, i64);

/// The cells whose stored values [`resolve`] needs: every cell an `AddToCell` of `mutations`
/// names, once each, in order.
pub fn cells_to_read(mutations: &[Mutation]) -> Vec<CellAt> {
    let mut cells: Vec<CellAt> = Vec::new();
    for m in mutations {
        if let Mutation::AddToCell {
            family,
            qualifier,
            timestamp,
            ..
        } = m
        {
            let cell = (family.clone(), qualifier.clone(), *timestamp);
            if !cells.contains(&cell) {
                cells.push(cell);
            }
        }
    }
    cells
}

/// Whether `mutations` need [`resolve`] at all under `schema`: an add, a write to an aggregate
/// family, or a millisecond table whose timestamps must be checked.
pub fn needs_resolving(mutations: &[Mutation], schema: &Schema) -> bool {
    schema.granularity != Granularity::Micros
        || mutations.iter().any(|m| match m {
            Mutation::AddToCell { .. } => true,
            Mutation::SetCell { family, .. } => schema.is_aggregate(family),
            _ => false,
        })
}

/// `mutations` with every `AddToCell` replaced by the `SetCell` of its cell's new sum, in
/// place, so deletes and other writes keep their order. `stored` holds the values of the
/// cells [`cells_to_read`] named that exist (a cell absent from it is absent from the row).
/// Mutations earlier in the list count: an add after a delete of its cell starts from 0, two
/// adds to one cell both land.
///
/// Refused (nothing is written): `SetCell` on an aggregate family, `AddToCell` on any other
/// family or at a negative timestamp, a stored aggregate cell that is not 8 bytes, and on a
/// millisecond table a timestamp (SetCell, AddToCell, a delete range's bounds) that is not a
/// multiple of 1000 (`-1`, server time, and an unbounded end are fine).
pub fn resolve(
    mutations: Vec<Mutation>,
    schema: &Schema,
    stored: &BTreeMap<CellAt, Bytes>,
) -> Result<Vec<Mutation>, InvalidMutation> {
    let step = schema.granularity.step_micros();
    let on_grain = |ts: i64| ts % step == 0;
    let name = |f: &Bytes| String::from_utf8_lossy(f).into_owned();
    // The sums this mutation list has written so far, by cell; `None`: deleted by it.
    let mut written: BTreeMap<CellAt, Option<i64>> = BTreeMap::new();
    // Deletes seen so far, to hide stored cells from later adds.
    let mut deletes: Vec<&Mutation> = Vec::new();
    let mut out = Vec::with_capacity(mutations.len());
    for m in &mutations {
        let resolved = match m {
            Mutation::SetCell {
                family, timestamp, ..
            } => {
                if schema.is_aggregate(family) {
                    return Err(InvalidMutation::SetCellOnAggregate(name(family)));
                }
                if *timestamp != -1 && !on_grain(*timestamp) {
                    return Err(InvalidMutation::Granularity(*timestamp));
                }
                m.clone()
            }
            Mutation::DeleteFromColumn { start, end, .. } => {
                if !on_grain(*start) {
                    return Err(InvalidMutation::Granularity(*start));
                }
                if *end != i64::MAX && !on_grain(*end) {
                    return Err(InvalidMutation::Granularity(*end));
                }
                for (cell, sum) in written.iter_mut() {
                    if covers(m, cell) {
                        *sum = None;
                    }
                }
                deletes.push(m);
                m.clone()
            }
            Mutation::DeleteFromFamily { .. } | Mutation::DeleteFromRow => {
                for (cell, sum) in written.iter_mut() {
                    if covers(m, cell) {
                        *sum = None;
                    }
                }
                deletes.push(m);
                m.clone()
            }
            Mutation::AddToCell {
                family,
                qualifier,
                timestamp,
                input,
            } => {
                if !schema.is_aggregate(family) {
                    return Err(InvalidMutation::NotAggregate(name(family)));
                }
                if *timestamp < 0 || *timestamp == i64::MAX {
                    return Err(InvalidMutation::Timestamp(*timestamp));
                }
                if !on_grain(*timestamp) {
                    return Err(InvalidMutation::Granularity(*timestamp));
                }
                let cell = (family.clone(), qualifier.clone(), *timestamp);
                let before = match written.get(&cell) {
                    Some(Some(sum)) => *sum,
                    Some(None) => 0,
                    None if deletes.iter().any(|d| covers(d, &cell)) => 0,
                    None => match stored.get(&cell) {
                        Some(value) => decode(value)?,
                        None => 0,
                    },
                };
                let sum = before.wrapping_add(*input);
                written.insert(cell, Some(sum));
                Mutation::SetCell {
                    family: family.clone(),
                    qualifier: qualifier.clone(),
                    timestamp: *timestamp,
                    value: encode(sum),
                }
            }
        };
        out.push(resolved);
    }
    Ok(out)
}

/// The stored form of a sum: 8 bytes, big-endian (Cloud Bigtable's Int64 `BigEndianBytes`).
pub fn encode(sum: i64) -> Bytes {
    Bytes::copy_from_slice(&sum.to_be_bytes())
}

/// A stored sum; refused unless it is 8 bytes.
pub fn decode(value: &[u8]) -> Result<i64, InvalidMutation> {
    let bytes: [u8; 8] = value
        .try_into()
        .map_err(|_| InvalidMutation::AggregateCellSize(value.len()))?;
    Ok(i64::from_be_bytes(bytes))
}

/// Whether the delete `m` removes `cell`.
fn covers(m: &Mutation, (family, qualifier, timestamp): &CellAt) -> bool {
    match m {
        Mutation::DeleteFromColumn {
            family: f,
            qualifier: q,
            start,
            end,
        } => f == family && q == qualifier && *start <= *timestamp && *timestamp < *end,
        Mutation::DeleteFromFamily { family: f } => f == family,
        Mutation::DeleteFromRow => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn schema(granularity: Granularity) -> Schema {
        let mut schema = Schema::with_families(["cf", "sum"]);
        schema.aggregates.insert(b("sum"));
        schema.granularity = granularity;
        schema
    }

    fn add(q: &str, timestamp: i64, input: i64) -> Mutation {
        Mutation::AddToCell {
            family: b("sum"),
            qualifier: b(q),
            timestamp,
            input,
        }
    }

    fn set_sum(q: &str, timestamp: i64, sum: i64) -> Mutation {
        Mutation::SetCell {
            family: b("sum"),
            qualifier: b(q),
            timestamp,
            value: encode(sum),
        }
    }

    fn stored(cells: &[(&str, i64, i64)]) -> BTreeMap<CellAt, Bytes> {
        cells
            .iter()
            .map(|(q, ts, v)| ((b("sum"), b(q), *ts), encode(*v)))
            .collect()
    }

    #[test]
    fn adds_land_on_the_stored_cell_at_their_timestamp() {
        let s = schema(Granularity::Micros);
        let m = vec![add("q", 5, 10), add("q", 6, 1), add("q", 5, -3)];
        assert_eq!(
            cells_to_read(&m),
            vec![(b("sum"), b("q"), 5), (b("sum"), b("q"), 6)]
        );
        let out = resolve(m, &s, &stored(&[("q", 5, 100), ("q", 7, 1000)])).unwrap();
        assert_eq!(
            out,
            vec![
                set_sum("q", 5, 110),
                set_sum("q", 6, 1),
                set_sum("q", 5, 107)
            ]
        );
    }

    #[test]
    fn deletes_earlier_in_the_list_zero_the_cell() {
        let s = schema(Granularity::Micros);
        let cells = stored(&[("q", 5, 100), ("r", 5, 7)]);
        let m = vec![
            add("q", 5, 1),
            Mutation::DeleteFromColumn {
                family: b("sum"),
                qualifier: b("q"),
                start: 0,
                end: 6,
            },
            add("q", 5, 2),
            add("r", 5, 1),
            Mutation::DeleteFromFamily { family: b("sum") },
            add("r", 5, 4),
            Mutation::DeleteFromRow,
            add("q", 5, 9),
        ];
        let out = resolve(m.clone(), &s, &cells).unwrap();
        assert_eq!(out[0], set_sum("q", 5, 101));
        assert_eq!(out[1], m[1]);
        assert_eq!(out[2], set_sum("q", 5, 2));
        assert_eq!(out[3], set_sum("r", 5, 8));
        assert_eq!(out[5], set_sum("r", 5, 4));
        assert_eq!(out[7], set_sum("q", 5, 9));
        // A delete range that misses the cell leaves it.
        let miss = vec![
            Mutation::DeleteFromColumn {
                family: b("sum"),
                qualifier: b("q"),
                start: 6,
                end: i64::MAX,
            },
            add("q", 5, 1),
        ];
        assert_eq!(resolve(miss, &s, &cells).unwrap()[1], set_sum("q", 5, 101));
    }

    #[test]
    fn families_must_match_the_mutation() {
        let s = schema(Granularity::Micros);
        let plain_add = Mutation::AddToCell {
            family: b("cf"),
            qualifier: b("q"),
            timestamp: 0,
            input: 1,
        };
        assert_eq!(
            resolve(vec![plain_add], &s, &BTreeMap::new()).unwrap_err(),
            InvalidMutation::NotAggregate("cf".into())
        );
        let set = set_sum("q", 0, 1);
        assert_eq!(
            resolve(vec![set], &s, &BTreeMap::new()).unwrap_err(),
            InvalidMutation::SetCellOnAggregate("sum".into())
        );
        assert_eq!(
            resolve(vec![add("q", -1, 1)], &s, &BTreeMap::new()).unwrap_err(),
            InvalidMutation::Timestamp(-1)
        );
        let bad: BTreeMap<CellAt, Bytes> = [((b("sum"), b("q"), 0), b("short"))].into();
        assert_eq!(
            resolve(vec![add("q", 0, 1)], &s, &bad).unwrap_err(),
            InvalidMutation::AggregateCellSize(5)
        );
    }

    #[test]
    fn millisecond_tables_refuse_other_timestamps() {
        let s = schema(Granularity::Millis);
        let plain = |ts| Mutation::SetCell {
            family: b("cf"),
            qualifier: b("q"),
            timestamp: ts,
            value: b("v"),
        };
        let none = BTreeMap::new();
        resolve(vec![plain(-1), plain(3000), add("q", 2000, 1)], &s, &none).unwrap();
        assert_eq!(
            resolve(vec![plain(1001)], &s, &none).unwrap_err(),
            InvalidMutation::Granularity(1001)
        );
        assert_eq!(
            resolve(vec![add("q", 1, 1)], &s, &none).unwrap_err(),
            InvalidMutation::Granularity(1)
        );
        let del = |start, end| Mutation::DeleteFromColumn {
            family: b("cf"),
            qualifier: b("q"),
            start,
            end,
        };
        resolve(vec![del(1000, i64::MAX)], &s, &none).unwrap();
        assert_eq!(
            resolve(vec![del(0, 1500)], &s, &none).unwrap_err(),
            InvalidMutation::Granularity(1500)
        );
        assert!(needs_resolving(&[plain(5)], &s));
        assert!(!needs_resolving(&[plain(5)], &schema(Granularity::Micros)));
    }

    #[test]
    fn sums_wrap_on_overflow() {
        let s = schema(Granularity::Micros);
        let out = resolve(vec![add("q", 0, 1)], &s, &stored(&[("q", 0, i64::MAX)])).unwrap();
        assert_eq!(out, vec![set_sum("q", 0, i64::MIN)]);
    }

    proptest! {
        /// N adds, applied one row mutation at a time against what the previous ones stored
        /// (as the tablet does under the row lock), sum to the wrapping sum of the inputs; and
        /// the same adds in one row mutation end on the same sum.
        #[test]
        fn n_adds_sum(inputs in proptest::collection::vec(any::<i64>(), 1..64), start in any::<i64>()) {
            let s = schema(Granularity::Millis);
            let mut cells = stored(&[("q", 1000, start)]);
            for input in &inputs {
                let out = resolve(vec![add("q", 1000, *input)], &s, &cells).unwrap();
                let Mutation::SetCell { value, .. } = &out[0] else { panic!("not a SetCell") };
                cells.insert((b("sum"), b("q"), 1000), value.clone());
            }
            let want = inputs.iter().fold(start, |acc, i| acc.wrapping_add(*i));
            prop_assert_eq!(decode(&cells[&(b("sum"), b("q"), 1000)]).unwrap(), want);
            let batch: Vec<Mutation> = inputs.iter().map(|i| add("q", 1000, *i)).collect();
            let out = resolve(batch, &s, &stored(&[("q", 1000, start)])).unwrap();
            prop_assert_eq!(out.last().unwrap(), &set_sum("q", 1000, want));
        }
    }
}
