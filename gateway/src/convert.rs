//! Cloud Bigtable v2 request parts -> the client library's builders, with the checks Cloud
//! Bigtable makes before anything is applied. Pure.
//!
//! - Row keys are never empty (`INVALID_ARGUMENT`).
//! - Timestamps are microseconds at millisecond granularity, as a Cloud Bigtable table of
//!   granularity `MILLIS` (the only one there is) demands: a `SetCell` timestamp must be -1
//!   (the server's time) or a non-negative multiple of 1000, and so must the bounds of a
//!   `DeleteFromColumn` range (0 = unbounded). The tablet server itself accepts any
//!   microsecond, so the gateway is where this is enforced.
//! - Aggregates: `AddToCell` (an `int_value` input, or 8 big-endian bytes as `raw_value`; a
//!   missing input adds 0, as Cloud Bigtable) passes through; `MergeToCell` into a Sum of
//!   Int64 family merges the 8-byte state in `bytes_value`, which is an add. Their qualifier
//!   is a `raw_value` and their timestamp a `raw_timestamp_micros` at millisecond
//!   granularity. Whether the family is an aggregate is the tablet server's check
//!   (`INVALID_ARGUMENT` otherwise).
//! - An absent or empty `RowSet` is every row (the client library's empty set is none).

use std::ops::Bound;

use bytes::Bytes;
use tabula_client::{Mutation, RowRange, RowSet, Rule};
use tabula_common::Error;
use tabula_proto::google::bigtable::v2 as bt;
use tabula_proto::google::bigtable::v2::value::Kind;
use tonic::Status;

use crate::status::to_status;

/// A row key from the wire: never empty.
pub(crate) fn row_key(field: &str, key: Vec<u8>) -> Result<Bytes, Status> {
    if key.is_empty() {
        return Err(to_status(Error::invalid_argument(format!(
            "{field}: a row key must not be empty"
        ))));
    }
    Ok(Bytes::from(key))
}

/// A timestamp in microseconds at millisecond granularity (or -1 where `server_time_ok`).
fn timestamp(field: &str, micros: i64, server_time_ok: bool) -> Result<i64, Status> {
    if server_time_ok && micros == -1 {
        return Ok(micros);
    }
    if micros < 0 || micros % 1000 != 0 {
        return Err(to_status(Error::invalid_argument(format!(
            "{field}: timestamp {micros} is invalid: the table's granularity is milliseconds, \
             so a timestamp must be a non-negative multiple of 1000 microseconds{}",
            if server_time_ok {
                " (or -1: the server's time)"
            } else {
                ""
            }
        ))));
    }
    Ok(micros)
}

/// A row's mutation list; `INVALID_ARGUMENT` if empty unless `allow_empty`.
pub(crate) fn mutations(
    field: &str,
    list: Vec<bt::Mutation>,
    allow_empty: bool,
) -> Result<Vec<Mutation>, Status> {
    if list.is_empty() && !allow_empty {
        return Err(to_status(Error::invalid_argument(format!(
            "{field}: at least one mutation is required"
        ))));
    }
    list.into_iter()
        .enumerate()
        .map(|(i, m)| mutation(&format!("{field}[{i}]"), m))
        .collect()
}

fn mutation(field: &str, m: bt::Mutation) -> Result<Mutation, Status> {
    use bt::mutation::Mutation as M;
    match m.mutation {
        None => Err(to_status(Error::invalid_argument(format!(
            "{field}: no mutation set"
        )))),
        Some(M::SetCell(s)) => Ok(Mutation::SetCell {
            timestamp_micros: timestamp(
                &format!("{field}.set_cell.timestamp_micros"),
                s.timestamp_micros,
                true,
            )?,
            family: s.family_name,
            qualifier: Bytes::from(s.column_qualifier),
            value: Bytes::from(s.value),
        }),
        Some(M::DeleteFromColumn(d)) => {
            let (start, end) = match d.time_range {
                None => (None, None),
                Some(r) => {
                    let f = format!("{field}.delete_from_column.time_range");
                    let start = timestamp(&f, r.start_timestamp_micros, false)?;
                    let end = timestamp(&f, r.end_timestamp_micros, false)?;
                    if end != 0 && end <= start {
                        return Err(to_status(Error::invalid_argument(format!(
                            "{f}: [{start}, {end}) is empty: want start < end (end 0: no end)"
                        ))));
                    }
                    ((start != 0).then_some(start), (end != 0).then_some(end))
                }
            };
            Ok(Mutation::DeleteColumn {
                family: d.family_name,
                qualifier: Bytes::from(d.column_qualifier),
                start_micros: start,
                end_micros: end,
            })
        }
        Some(M::DeleteFromFamily(d)) => Ok(Mutation::DeleteFamily {
            family: d.family_name,
        }),
        Some(M::DeleteFromRow(_)) => Ok(Mutation::DeleteRow),
        Some(M::AddToCell(a)) => {
            let field = format!("{field}.add_to_cell");
            let input = match kind(a.input) {
                None => 0,
                Some(Kind::IntValue(n)) => n,
                Some(Kind::RawValue(raw)) => int64_bytes(&format!("{field}.input"), &raw)?,
                Some(_) => {
                    return Err(invalid(format!(
                        "{field}.input: a Sum of Int64 family adds an int_value"
                    )));
                }
            };
            Ok(Mutation::AddToCell {
                qualifier: aggregate_qualifier(&field, a.column_qualifier)?,
                timestamp_micros: aggregate_timestamp(&field, a.timestamp)?,
                family: a.family_name,
                input,
            })
        }
        Some(M::MergeToCell(m)) => {
            let field = format!("{field}.merge_to_cell");
            let input = match kind(m.input) {
                Some(Kind::BytesValue(state)) => int64_bytes(&format!("{field}.input"), &state)?,
                _ => {
                    return Err(invalid(format!(
                        "{field}.input: a Sum of Int64 family merges a bytes_value of 8 \
                         big-endian bytes"
                    )));
                }
            };
            Ok(Mutation::AddToCell {
                qualifier: aggregate_qualifier(&field, m.column_qualifier)?,
                timestamp_micros: aggregate_timestamp(&field, m.timestamp)?,
                family: m.family_name,
                input,
            })
        }
    }
}

fn invalid(message: String) -> Status {
    to_status(Error::invalid_argument(message))
}

fn kind(value: Option<bt::Value>) -> Option<Kind> {
    value.and_then(|v| v.kind)
}

/// An aggregate mutation's qualifier: a `raw_value` (unset: the empty qualifier).
fn aggregate_qualifier(field: &str, q: Option<bt::Value>) -> Result<Bytes, Status> {
    match kind(q) {
        None => Ok(Bytes::new()),
        Some(Kind::RawValue(q)) => Ok(Bytes::from(q)),
        Some(_) => Err(invalid(format!(
            "{field}.column_qualifier: must be a raw_value"
        ))),
    }
}

/// An aggregate mutation's timestamp: a `raw_timestamp_micros` (unset: 0) at millisecond
/// granularity; no server time, as the cell to add into is named by it.
fn aggregate_timestamp(field: &str, ts: Option<bt::Value>) -> Result<i64, Status> {
    let field = format!("{field}.timestamp");
    match kind(ts) {
        None => Ok(0),
        Some(Kind::RawTimestampMicros(ts)) => timestamp(&field, ts, false),
        Some(_) => Err(invalid(format!("{field}: must be a raw_timestamp_micros"))),
    }
}

/// An int64 sent as 8 big-endian bytes.
fn int64_bytes(field: &str, raw: &[u8]) -> Result<i64, Status> {
    let bytes: [u8; 8] = raw.try_into().map_err(|_| {
        invalid(format!(
            "{field}: {} bytes, want an 8-byte big-endian int64",
            raw.len()
        ))
    })?;
    Ok(i64::from_be_bytes(bytes))
}

/// Read-modify-write rules: at least one, each an append or an increment.
pub(crate) fn rules(list: Vec<bt::ReadModifyWriteRule>) -> Result<Vec<Rule>, Status> {
    use bt::read_modify_write_rule::Rule as R;
    if list.is_empty() {
        return Err(to_status(Error::invalid_argument(
            "rules: at least one rule is required",
        )));
    }
    list.into_iter()
        .enumerate()
        .map(|(i, r)| match r.rule {
            Some(R::AppendValue(v)) => Ok(Rule::append(r.family_name, r.column_qualifier, v)),
            Some(R::IncrementAmount(n)) => {
                Ok(Rule::increment(r.family_name, r.column_qualifier, n))
            }
            None => Err(to_status(Error::invalid_argument(format!(
                "rules[{i}]: neither append_value nor increment_amount is set"
            )))),
        })
        .collect()
}

/// A request's row set: its keys and ranges; absent or empty = every row.
pub(crate) fn row_set(rows: Option<bt::RowSet>) -> RowSet {
    let rows = rows.unwrap_or_default();
    if rows.row_keys.is_empty() && rows.row_ranges.is_empty() {
        return RowSet::all();
    }
    let mut set = RowSet::new();
    for k in rows.row_keys {
        set = set.key(k);
    }
    for r in rows.row_ranges {
        set = set.range(row_range(r));
    }
    set
}

/// An empty key on either side is unbounded, as Cloud Bigtable reads it.
fn row_range(r: bt::RowRange) -> RowRange {
    use bt::row_range::{EndKey, StartKey};
    let start = match r.start_key {
        Some(StartKey::StartKeyClosed(k)) if !k.is_empty() => Bound::Included(Bytes::from(k)),
        Some(StartKey::StartKeyOpen(k)) if !k.is_empty() => Bound::Excluded(Bytes::from(k)),
        _ => Bound::Unbounded,
    };
    let end = match r.end_key {
        Some(EndKey::EndKeyClosed(k)) if !k.is_empty() => Bound::Included(Bytes::from(k)),
        Some(EndKey::EndKeyOpen(k)) if !k.is_empty() => Bound::Excluded(Bytes::from(k)),
        _ => Bound::Unbounded,
    };
    RowRange { start, end }
}

/// `rows_limit`: 0 = none; negative is refused.
pub(crate) fn rows_limit(limit: i64) -> Result<Option<u64>, Status> {
    match limit {
        0 => Ok(None),
        n => u64::try_from(n).map(Some).map_err(|_| {
            to_status(Error::invalid_argument(format!(
                "rows_limit: {n} is negative"
            )))
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use bt::mutation::Mutation as M;

    fn set_cell(ts: i64) -> bt::Mutation {
        bt::Mutation {
            mutation: Some(M::SetCell(bt::mutation::SetCell {
                family_name: "cf".into(),
                column_qualifier: b"q".to_vec(),
                timestamp_micros: ts,
                value: b"v".to_vec(),
            })),
        }
    }

    fn delete_range(start: i64, end: i64) -> bt::Mutation {
        bt::Mutation {
            mutation: Some(M::DeleteFromColumn(bt::mutation::DeleteFromColumn {
                family_name: "cf".into(),
                column_qualifier: b"q".to_vec(),
                time_range: Some(bt::TimestampRange {
                    start_timestamp_micros: start,
                    end_timestamp_micros: end,
                }),
            })),
        }
    }

    #[test]
    fn timestamps_must_be_milliseconds_or_server_time() {
        let ok = mutations(
            "mutations",
            vec![set_cell(-1), set_cell(0), set_cell(5_000)],
            false,
        )
        .unwrap();
        assert_eq!(
            ok[2],
            Mutation::SetCell {
                family: "cf".into(),
                qualifier: Bytes::from("q"),
                timestamp_micros: 5_000,
                value: Bytes::from("v")
            }
        );
        for bad in [1, 1_001, -2, i64::MIN] {
            let e = mutations("mutations", vec![set_cell(0), set_cell(bad)], false).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad}");
            assert!(
                e.message()
                    .starts_with("mutations[1].set_cell.timestamp_micros"),
                "{}",
                e.message()
            );
        }
    }

    #[test]
    fn delete_ranges_are_checked_and_zero_is_unbounded() {
        let m = mutations(
            "m",
            vec![delete_range(0, 0), delete_range(1_000, 3_000)],
            false,
        )
        .unwrap();
        assert_eq!(
            m[0],
            Mutation::DeleteColumn {
                family: "cf".into(),
                qualifier: Bytes::from("q"),
                start_micros: None,
                end_micros: None
            }
        );
        assert!(matches!(
            &m[1],
            Mutation::DeleteColumn {
                start_micros: Some(1_000),
                end_micros: Some(3_000),
                ..
            }
        ));
        for (s, e) in [(3_000, 1_000), (2_000, 2_000), (1, 0), (0, 5), (-1, 0)] {
            let err = mutations("m", vec![delete_range(s, e)], false).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "[{s}, {e})");
        }
    }

    #[test]
    fn empty_lists_and_keys_are_refused() {
        assert_eq!(
            mutations("mutations", vec![], false).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        assert!(
            mutations("true_mutations", vec![], true)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            row_key("row_key", vec![]).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            mutations("m", vec![bt::Mutation { mutation: None }], false)
                .unwrap_err()
                .code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            rules(vec![]).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            rows_limit(-1).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(rows_limit(0).unwrap(), None);
        assert_eq!(rows_limit(7).unwrap(), Some(7));
    }

    #[test]
    fn aggregate_mutations_become_adds() {
        use bt::value::Kind;
        let value = |kind| {
            Some(bt::Value {
                kind: Some(kind),
                ..bt::Value::default()
            })
        };
        let add = |input, ts| bt::Mutation {
            mutation: Some(M::AddToCell(bt::mutation::AddToCell {
                family_name: "sum".into(),
                column_qualifier: value(Kind::RawValue(b"q".to_vec())),
                timestamp: ts,
                input,
            })),
        };
        let ts = |t| value(Kind::RawTimestampMicros(t));
        let merge = bt::Mutation {
            mutation: Some(M::MergeToCell(bt::mutation::MergeToCell {
                family_name: "sum".into(),
                column_qualifier: value(Kind::RawValue(b"q".to_vec())),
                timestamp: ts(1000),
                input: value(Kind::BytesValue(5i64.to_be_bytes().to_vec())),
            })),
        };
        let m = mutations(
            "m",
            vec![
                add(value(Kind::IntValue(3)), ts(2000)),
                add(None, None),
                merge,
            ],
            false,
        )
        .unwrap();
        assert_eq!(
            m,
            vec![
                Mutation::add_to_cell("sum", "q", 2000, 3),
                Mutation::add_to_cell("sum", "q", 0, 0),
                Mutation::add_to_cell("sum", "q", 1000, 5),
            ]
        );
        for bad in [
            add(value(Kind::IntValue(1)), ts(1500)),
            add(value(Kind::IntValue(1)), ts(-1)),
            add(value(Kind::StringValue("1".into())), None),
            add(value(Kind::RawValue(vec![1, 2])), None),
        ] {
            let e = mutations("m", vec![bad.clone()], false).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad:?}");
            assert!(e.message().starts_with("m[0].add_to_cell"), "{e:?}");
        }
    }

    #[test]
    fn row_sets_map_keys_and_every_kind_of_bound() {
        use bt::row_range::{EndKey, StartKey};
        assert_eq!(row_set(None), RowSet::all());
        assert_eq!(row_set(Some(bt::RowSet::default())), RowSet::all());
        let set = row_set(Some(bt::RowSet {
            row_keys: vec![b"k".to_vec()],
            row_ranges: vec![
                bt::RowRange {
                    start_key: Some(StartKey::StartKeyOpen(b"a".to_vec())),
                    end_key: Some(EndKey::EndKeyClosed(b"c".to_vec())),
                },
                bt::RowRange {
                    start_key: Some(StartKey::StartKeyClosed(vec![])),
                    end_key: Some(EndKey::EndKeyOpen(vec![])),
                },
            ],
        }));
        assert_eq!(set.keys, vec![Bytes::from("k")]);
        assert_eq!(
            set.ranges[0],
            RowRange {
                start: Bound::Excluded(Bytes::from("a")),
                end: Bound::Included(Bytes::from("c"))
            }
        );
        assert_eq!(set.ranges[1], RowRange::all());
    }
}
