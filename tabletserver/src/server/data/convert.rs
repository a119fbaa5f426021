//! Bigtable v2 data-model messages -> engine values, with the limits of DESIGN.md section 2
//! checked before anything is applied: row keys 1 B..4 KiB, qualifiers <= 16 KiB, values
//! <= 100 MiB, at most 100k mutations per row, family names `[_a-zA-Z0-9][-_.a-zA-Z0-9]*` up
//! to 64 bytes. Every violation is `InvalidArgument` naming the field and its index
//! (`entries[3].mutations[7].set_cell.value`); a family the tablet's schema lacks is
//! `NotFound`, as Cloud Bigtable answers ("Requested column family not found") and as the
//! engine does. Pure code: bytes move out of the request, nothing is copied.
//!
//! `AddToCell` (and `MergeToCell`, which for a Sum of Int64 family is an add of the 8-byte
//! state) becomes the engine's `AddToCell`; whether its family is an aggregate, and the
//! table's timestamp granularity, are checked against the schema when the tablet resolves it
//! (`Tablet::resolve_aggregates`).

use bytes::Bytes;
use tabula_common::{Code, Error, TableId};
use tabula_proto::google::bigtable::v2 as pb;
use tabula_proto::google::bigtable::v2::mutation::Mutation as PbMutation;
use tabula_proto::google::bigtable::v2::read_modify_write_rule::Rule as PbRule;
use tabula_proto::google::bigtable::v2::value::Kind;

use super::field::Field;
use crate::engine::Schema;
use crate::engine::mutation::{
    MAX_MUTATIONS, MAX_QUALIFIER_BYTES, MAX_ROW_BYTES, MAX_SYSTEM_ROW_BYTES, MAX_VALUE_BYTES,
    Mutation, valid_family_name,
};

/// The longest row key of `table`: 4 KiB, a little more for the root and METADATA tables.
pub(super) fn max_row_bytes(table: TableId) -> usize {
    if table < TableId::FIRST_USER {
        MAX_SYSTEM_ROW_BYTES
    } else {
        MAX_ROW_BYTES
    }
}

/// A row key of `table` from the wire, checked: 1..=4 KiB (see [`max_row_bytes`]).
pub(super) fn row_key(field: &Field<'_>, key: Vec<u8>, table: TableId) -> Result<Bytes, Error> {
    let max = max_row_bytes(table);
    if key.is_empty() || key.len() > max {
        return Err(Error::invalid_argument(format!(
            "{field}: a row key must be 1..={max} bytes, got {}",
            key.len()
        )));
    }
    Ok(Bytes::from(key))
}

/// A row's mutation list, checked and converted. `field` names the list
/// (`mutations`, `entries[2].mutations`, `true_mutations`); an empty list is refused unless
/// `allow_empty`.
pub(super) fn mutations(
    field: &Field<'_>,
    list: Vec<pb::Mutation>,
    allow_empty: bool,
) -> Result<Vec<Mutation>, Error> {
    if list.is_empty() && !allow_empty {
        return Err(Error::invalid_argument(format!(
            "{field}: at least one mutation is required"
        )));
    }
    if list.len() > MAX_MUTATIONS {
        return Err(Error::invalid_argument(format!(
            "{field}: at most {MAX_MUTATIONS} mutations per row, got {}",
            list.len()
        )));
    }
    list.into_iter()
        .enumerate()
        .map(|(i, m)| mutation(&field.at(i), m))
        .collect()
}

fn mutation(field: &Field<'_>, m: pb::Mutation) -> Result<Mutation, Error> {
    let Some(m) = m.mutation else {
        return Err(Error::invalid_argument(format!(
            "{field}: no mutation set (want set_cell, delete_from_column, delete_from_family, \
             delete_from_row, add_to_cell or merge_to_cell)"
        )));
    };
    match m {
        PbMutation::SetCell(s) => {
            let field = field.member("set_cell");
            let family = family_name(&field, s.family_name)?;
            let qualifier = qualifier(&field, s.column_qualifier)?;
            if s.value.len() > MAX_VALUE_BYTES {
                return Err(Error::invalid_argument(format!(
                    "{field}.value: {} bytes, more than the limit of {MAX_VALUE_BYTES}",
                    s.value.len()
                )));
            }
            if s.timestamp_micros < -1 || s.timestamp_micros == i64::MAX {
                return Err(Error::invalid_argument(format!(
                    "{field}.timestamp_micros: {} is invalid: want -1 (server time) or \
                     0..{}",
                    s.timestamp_micros,
                    i64::MAX
                )));
            }
            Ok(Mutation::SetCell {
                family,
                qualifier,
                timestamp: s.timestamp_micros,
                value: Bytes::from(s.value),
            })
        }
        PbMutation::DeleteFromColumn(d) => {
            let field = field.member("delete_from_column");
            let family = family_name(&field, d.family_name)?;
            let qualifier = qualifier(&field, d.column_qualifier)?;
            let (start, end) = match d.time_range {
                None => (0, i64::MAX),
                Some(r) => {
                    // Bigtable: an end of 0 means no end.
                    let end = if r.end_timestamp_micros == 0 {
                        i64::MAX
                    } else {
                        r.end_timestamp_micros
                    };
                    (r.start_timestamp_micros, end)
                }
            };
            if start < 0 || end <= start {
                return Err(Error::invalid_argument(format!(
                    "{field}.time_range: [{start}, {end}) is not a valid range: want \
                     0 <= start < end (end 0: no end)"
                )));
            }
            Ok(Mutation::DeleteFromColumn {
                family,
                qualifier,
                start,
                end,
            })
        }
        PbMutation::DeleteFromFamily(d) => Ok(Mutation::DeleteFromFamily {
            family: family_name(&field.member("delete_from_family"), d.family_name)?,
        }),
        PbMutation::DeleteFromRow(_) => Ok(Mutation::DeleteFromRow),
        PbMutation::AddToCell(a) => {
            let field = field.member("add_to_cell");
            let family = family_name(&field, a.family_name)?;
            let qualifier = aggregate_qualifier(&field, a.column_qualifier)?;
            let timestamp = aggregate_timestamp(&field, a.timestamp)?;
            // Cloud Bigtable adds a missing input as 0 (the cell is still created).
            let input = match a.input.and_then(|v| v.kind) {
                None => 0,
                Some(Kind::IntValue(n)) => n,
                Some(Kind::RawValue(raw)) => int64_bytes(&field.member("input"), &raw)?,
                Some(_) => {
                    return Err(Error::invalid_argument(format!(
                        "{field}.input: a Sum of Int64 family adds an int_value (or an 8-byte \
                         big-endian raw_value)"
                    )));
                }
            };
            Ok(Mutation::AddToCell {
                family,
                qualifier,
                timestamp,
                input,
            })
        }
        // Merging a Sum's state into a cell is adding it: the state of Sum of Int64 is the
        // sum itself, sent as 8 big-endian bytes in `bytes_value`.
        PbMutation::MergeToCell(m) => {
            let field = field.member("merge_to_cell");
            let family = family_name(&field, m.family_name)?;
            let qualifier = aggregate_qualifier(&field, m.column_qualifier)?;
            let timestamp = aggregate_timestamp(&field, m.timestamp)?;
            let input = match m.input.and_then(|v| v.kind) {
                Some(Kind::BytesValue(state)) => int64_bytes(&field.member("input"), &state)?,
                _ => {
                    return Err(Error::invalid_argument(format!(
                        "{field}.input: a Sum of Int64 family merges a bytes_value of 8 \
                         big-endian bytes"
                    )));
                }
            };
            Ok(Mutation::AddToCell {
                family,
                qualifier,
                timestamp,
                input,
            })
        }
    }
}

/// An aggregate mutation's qualifier: a `raw_value` (Cloud Bigtable allows nothing else).
fn aggregate_qualifier(field: &Field<'_>, q: Option<pb::Value>) -> Result<Bytes, Error> {
    match q.and_then(|v| v.kind) {
        Some(Kind::RawValue(q)) => qualifier(field, q),
        None => Ok(Bytes::new()),
        Some(_) => Err(Error::invalid_argument(format!(
            "{field}.column_qualifier: must be a raw_value"
        ))),
    }
}

/// An aggregate mutation's timestamp: a `raw_timestamp_micros` naming its cell, 0 or more
/// (unset is 0); server time (-1) is not offered, as the cell to add into must be named.
fn aggregate_timestamp(field: &Field<'_>, ts: Option<pb::Value>) -> Result<i64, Error> {
    let ts = match ts.and_then(|v| v.kind) {
        None => 0,
        Some(Kind::RawTimestampMicros(ts)) => ts,
        Some(_) => {
            return Err(Error::invalid_argument(format!(
                "{field}.timestamp: must be a raw_timestamp_micros"
            )));
        }
    };
    if ts < 0 || ts == i64::MAX {
        return Err(Error::invalid_argument(format!(
            "{field}.timestamp: {ts} is invalid: want 0..{} (an aggregate cell is named by \
             its timestamp; there is no server time)",
            i64::MAX
        )));
    }
    Ok(ts)
}

/// An int64 sent as 8 big-endian bytes.
fn int64_bytes(field: &Field<'_>, raw: &[u8]) -> Result<i64, Error> {
    let bytes: [u8; 8] = raw.try_into().map_err(|_| {
        Error::invalid_argument(format!(
            "{field}: {} bytes, want an 8-byte big-endian int64",
            raw.len()
        ))
    })?;
    Ok(i64::from_be_bytes(bytes))
}

fn family_name(field: &Field<'_>, name: String) -> Result<Bytes, Error> {
    if !valid_family_name(name.as_bytes()) {
        return Err(Error::invalid_argument(format!(
            "{field}.family_name: {name:?} is not a column family name: want \
             [_a-zA-Z0-9][-_.a-zA-Z0-9]*, at most 64 bytes"
        )));
    }
    Ok(Bytes::from(name))
}

fn qualifier(field: &Field<'_>, q: Vec<u8>) -> Result<Bytes, Error> {
    if q.len() > MAX_QUALIFIER_BYTES {
        return Err(Error::invalid_argument(format!(
            "{field}.column_qualifier: {} bytes, more than the limit of {MAX_QUALIFIER_BYTES}",
            q.len()
        )));
    }
    Ok(Bytes::from(q))
}

/// `NotFound` naming the first mutation of `list` whose family `schema` lacks.
pub(super) fn check_families(
    field: &Field<'_>,
    list: &[Mutation],
    schema: &Schema,
) -> Result<(), Error> {
    for (i, m) in list.iter().enumerate() {
        if let Some(f) = m.family() {
            known_family(&field.at(i), f, schema)?;
        }
    }
    Ok(())
}

fn known_family(field: &Field<'_>, family: &Bytes, schema: &Schema) -> Result<(), Error> {
    if schema.families.contains_key(family) {
        return Ok(());
    }
    Err(Error::new(
        Code::NotFound,
        format!(
            "{field}.family_name: column family {:?} does not exist in this table",
            String::from_utf8_lossy(family)
        ),
    ))
}

/// What a read-modify-write rule does to its cell's latest value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RmwOp {
    /// Appends these bytes (an absent cell counts as empty).
    Append(Bytes),
    /// Adds to an 8-byte big-endian signed integer (an absent cell counts as 0).
    Increment(i64),
}

/// One checked `ReadModifyWriteRule`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RmwRule {
    /// Column family.
    pub(super) family: Bytes,
    /// Qualifier.
    pub(super) qualifier: Bytes,
    /// The change.
    pub(super) op: RmwOp,
}

/// The request's rules, checked: at least one, at most 100k, each with a valid family,
/// qualifier and rule, appended values within the value limit.
pub(super) fn rmw_rules(list: Vec<pb::ReadModifyWriteRule>) -> Result<Vec<RmwRule>, Error> {
    if list.is_empty() {
        return Err(Error::invalid_argument(
            "rules: at least one rule is required",
        ));
    }
    if list.len() > MAX_MUTATIONS {
        return Err(Error::invalid_argument(format!(
            "rules: at most {MAX_MUTATIONS} rules per row, got {}",
            list.len()
        )));
    }
    let rules = Field::Name("rules");
    list.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let field = rules.at(i);
            let family = family_name(&field, r.family_name)?;
            let qualifier = qualifier(&field, r.column_qualifier)?;
            let op = match r.rule {
                Some(PbRule::AppendValue(v)) => {
                    if v.len() > MAX_VALUE_BYTES {
                        return Err(Error::invalid_argument(format!(
                            "{field}.append_value: {} bytes, more than the limit of \
                             {MAX_VALUE_BYTES}",
                            v.len()
                        )));
                    }
                    RmwOp::Append(Bytes::from(v))
                }
                Some(PbRule::IncrementAmount(n)) => RmwOp::Increment(n),
                None => {
                    return Err(Error::invalid_argument(format!(
                        "{field}: no rule set (want append_value or increment_amount)"
                    )));
                }
            };
            Ok(RmwRule {
                family,
                qualifier,
                op,
            })
        })
        .collect()
}

/// `NotFound` naming the first rule whose family `schema` lacks.
pub(super) fn check_rule_families(rules: &[RmwRule], schema: &Schema) -> Result<(), Error> {
    let field = Field::Name("rules");
    for (i, r) in rules.iter().enumerate() {
        known_family(&field.at(i), &r.family, schema)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use pb::mutation::{DeleteFromColumn, DeleteFromRow, SetCell};

    use super::*;

    fn set(family: &str, q: Vec<u8>, ts: i64, value: Vec<u8>) -> pb::Mutation {
        pb::Mutation {
            mutation: Some(PbMutation::SetCell(SetCell {
                family_name: family.into(),
                column_qualifier: q,
                timestamp_micros: ts,
                value,
            })),
        }
    }

    fn err(r: Result<Vec<Mutation>, Error>) -> Error {
        r.unwrap_err()
    }

    #[test]
    fn row_keys_are_one_byte_to_four_kib() {
        assert_eq!(
            row_key(&Field::Name("row_key"), vec![], TableId(2))
                .unwrap_err()
                .code,
            Code::InvalidArgument
        );
        let e = row_key(
            &Field::Name("entries[4].row_key"),
            vec![b'x'; MAX_ROW_BYTES + 1],
            TableId(2),
        )
        .unwrap_err();
        assert!(e.message.starts_with("entries[4].row_key"), "{e}");
        assert_eq!(
            row_key(&Field::Name("r"), vec![b'x'; MAX_ROW_BYTES], TableId(2))
                .unwrap()
                .len(),
            MAX_ROW_BYTES
        );
    }

    #[test]
    fn each_limit_names_field_and_index() {
        let ok = set("cf", b"q".to_vec(), -1, b"v".to_vec());
        let e = err(mutations(
            &Field::Name("mutations"),
            vec![ok.clone(), set("bad name", vec![], 1, vec![])],
            false,
        ));
        assert_eq!(e.code, Code::InvalidArgument);
        assert!(
            e.message.starts_with("mutations[1].set_cell.family_name"),
            "{e}"
        );
        let e = err(mutations(
            &Field::Name("m"),
            vec![set("cf", vec![0; MAX_QUALIFIER_BYTES + 1], 1, vec![])],
            false,
        ));
        assert!(
            e.message.starts_with("m[0].set_cell.column_qualifier"),
            "{e}"
        );
        let e = err(mutations(
            &Field::Name("m"),
            vec![set("cf", vec![], 1, vec![0; MAX_VALUE_BYTES + 1])],
            false,
        ));
        assert!(e.message.starts_with("m[0].set_cell.value"), "{e}");
        let e = err(mutations(
            &Field::Name("m"),
            vec![set("cf", vec![], -2, vec![])],
            false,
        ));
        assert!(
            e.message.starts_with("m[0].set_cell.timestamp_micros"),
            "{e}"
        );
        let e = err(mutations(
            &Field::Name("m"),
            vec![pb::Mutation { mutation: None }],
            false,
        ));
        assert!(e.message.starts_with("m[0]: no mutation set"), "{e}");
        let e = err(mutations(&Field::Name("m"), vec![], false));
        assert!(e.message.contains("at least one"), "{e}");
        assert!(
            mutations(&Field::Name("m"), vec![], true)
                .unwrap()
                .is_empty()
        );
        let e = err(mutations(
            &Field::Name("m"),
            vec![ok; MAX_MUTATIONS + 1],
            false,
        ));
        assert!(e.message.contains("at most"), "{e}");
    }

    #[test]
    fn delete_ranges_follow_bigtable() {
        let del = |start, end| pb::Mutation {
            mutation: Some(PbMutation::DeleteFromColumn(DeleteFromColumn {
                family_name: "cf".into(),
                column_qualifier: b"q".to_vec(),
                time_range: Some(pb::TimestampRange {
                    start_timestamp_micros: start,
                    end_timestamp_micros: end,
                }),
            })),
        };
        let m = mutations(&Field::Name("m"), vec![del(0, 0), del(5, 9)], false).unwrap();
        assert!(matches!(
            m[0],
            Mutation::DeleteFromColumn {
                start: 0,
                end: i64::MAX,
                ..
            }
        ));
        assert!(matches!(
            m[1],
            Mutation::DeleteFromColumn {
                start: 5,
                end: 9,
                ..
            }
        ));
        let e = err(mutations(&Field::Name("m"), vec![del(9, 5)], false));
        assert!(
            e.message.starts_with("m[0].delete_from_column.time_range"),
            "{e}"
        );
        let row = pb::Mutation {
            mutation: Some(PbMutation::DeleteFromRow(DeleteFromRow {})),
        };
        assert_eq!(
            mutations(&Field::Name("m"), vec![row], false).unwrap(),
            vec![Mutation::DeleteFromRow]
        );
    }

    #[test]
    fn unknown_families_are_not_found() {
        let schema = Schema::with_families(["cf"]);
        let m = mutations(
            &Field::Name("m"),
            vec![set("cf", vec![], 1, vec![]), set("nope", vec![], 1, vec![])],
            false,
        )
        .unwrap();
        let e = check_families(&Field::Name("m"), &m, &schema).unwrap_err();
        assert_eq!(e.code, Code::NotFound);
        assert!(e.message.starts_with("m[1].family_name"), "{e}");
        check_families(&Field::Name("m"), &m[..1], &schema).unwrap();
    }

    #[test]
    fn aggregate_mutations_become_adds() {
        use pb::mutation::{AddToCell, MergeToCell};
        let value = |kind| {
            Some(pb::Value {
                kind: Some(kind),
                ..Default::default()
            })
        };
        let add = |input: Option<pb::Value>, ts: Option<pb::Value>| pb::Mutation {
            mutation: Some(PbMutation::AddToCell(AddToCell {
                family_name: "sum".into(),
                column_qualifier: value(Kind::RawValue(b"q".to_vec())),
                timestamp: ts,
                input,
            })),
        };
        let ts = |t| value(Kind::RawTimestampMicros(t));
        let want = |timestamp, input| Mutation::AddToCell {
            family: Bytes::from_static(b"sum"),
            qualifier: Bytes::from_static(b"q"),
            timestamp,
            input,
        };
        let m = mutations(
            &Field::Name("m"),
            vec![
                add(value(Kind::IntValue(-4)), ts(2000)),
                add(None, None),
                add(value(Kind::RawValue(9i64.to_be_bytes().to_vec())), ts(0)),
                pb::Mutation {
                    mutation: Some(PbMutation::MergeToCell(MergeToCell {
                        family_name: "sum".into(),
                        column_qualifier: value(Kind::RawValue(b"q".to_vec())),
                        timestamp: ts(1000),
                        input: value(Kind::BytesValue(3i64.to_be_bytes().to_vec())),
                    })),
                },
            ],
            false,
        )
        .unwrap();
        assert_eq!(
            m,
            vec![want(2000, -4), want(0, 0), want(0, 9), want(1000, 3)]
        );
        let e = err(mutations(
            &Field::Name("m"),
            vec![add(value(Kind::StringValue("1".into())), None)],
            false,
        ));
        assert!(e.message.starts_with("m[0].add_to_cell.input"), "{e}");
        let e = err(mutations(
            &Field::Name("m"),
            vec![add(value(Kind::IntValue(1)), ts(-1))],
            false,
        ));
        assert!(e.message.starts_with("m[0].add_to_cell.timestamp"), "{e}");
        let e = err(mutations(
            &Field::Name("m"),
            vec![add(value(Kind::RawValue(vec![1])), None)],
            false,
        ));
        assert!(e.message.contains("8-byte"), "{e}");
    }

    #[test]
    fn rules_need_a_rule_and_a_valid_family() {
        let rule = |family: &str, rule| pb::ReadModifyWriteRule {
            family_name: family.into(),
            column_qualifier: b"q".to_vec(),
            rule,
        };
        let rules = rmw_rules(vec![
            rule("cf", Some(PbRule::IncrementAmount(3))),
            rule("cf", Some(PbRule::AppendValue(b"x".to_vec()))),
        ])
        .unwrap();
        assert_eq!(rules[0].op, RmwOp::Increment(3));
        assert_eq!(rules[1].op, RmwOp::Append(Bytes::from_static(b"x")));
        let e = rmw_rules(vec![rule("cf", None)]).unwrap_err();
        assert!(e.message.starts_with("rules[0]: no rule"), "{e}");
        assert!(rmw_rules(vec![]).is_err());
        assert!(rmw_rules(vec![rule("", Some(PbRule::IncrementAmount(1)))]).is_err());
        let schema = Schema::with_families(["other"]);
        assert_eq!(
            check_rule_families(&rules, &schema).unwrap_err().code,
            Code::NotFound
        );
    }
}
