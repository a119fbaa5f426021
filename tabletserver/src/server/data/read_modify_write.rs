//! `ReadModifyWriteRow`: under the row's lock, read the latest cell of every column the rules
//! name, apply the rules in order (a later rule on the same column sees the earlier one's
//! result), write one new cell per changed column, and return those cells.
//!
//! Semantics follow Cloud Bigtable (data.proto and bttest): an append to an absent cell appends
//! to the empty string; an increment of an absent cell adds to 0; an increment of a cell that
//! is not exactly 8 bytes fails the whole request with `FailedPrecondition` (the request is
//! well-formed, the row's state is not what it needs) and writes nothing; increments wrap on
//! overflow (two's complement, as bttest's Go arithmetic does). The new cell's timestamp is
//! `max(now, the previous latest cell's timestamp)`, so the new value is always the latest
//! even if the old cell carried a client timestamp in the future; `now` is in whole
//! milliseconds on a millisecond table. Aggregate families are refused (`InvalidArgument`):
//! their cells change through `AddToCell` only.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use tabula_common::{Code, Error};
use tabula_proto::google::bigtable::v2 as pb;
use tabula_proto::tabula::tablet::v1 as api;

use crate::engine::{CellFilter, Mutation, RowMutation, Tablet};
use crate::filter::{OutCell, to_proto_row};

use super::convert::{self, RmwOp, RmwRule};
use super::field::Field;
use super::{Shared, blocking, route, with_row_locked};

/// `(family, qualifier)`.
type Column = (Bytes, Bytes);

/// A column's latest cell: value and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Latest {
    value: Bytes,
    timestamp: i64,
}

/// `ReadModifyWriteRow`; returns the changed cells.
pub(super) async fn read_modify_write_row(
    shared: &Shared,
    req: api::ReadModifyWriteRowRequest,
) -> Result<Option<pb::Row>, Error> {
    shared.gate.check_serving()?;
    let route = route(req.tablet)?;
    let row = convert::row_key(&Field::Name("row_key"), req.row_key, route.table)?;
    let rules = convert::rmw_rules(req.rules)?;
    let served = shared.registry.route_row(&route, &row)?;
    let schema = served.tablet.schema();
    convert::check_rule_families(&rules, &schema)?;
    if let Some(rule) = rules.iter().find(|r| schema.aggregates.contains(&r.family)) {
        return Err(Error::invalid_argument(format!(
            "rules: family {:?} is an aggregate family; change its cells with AddToCell, not \
             ReadModifyWriteRow",
            String::from_utf8_lossy(&rule.family)
        )));
    }
    served.count_read();
    served.count_write();
    let key = row.clone();
    let cells = with_row_locked(served, row, move |served| async move {
        let reader = served.clone();
        let (row, rules) = (key.clone(), rules.clone());
        let (latest, changed, now) = blocking(move || {
            let latest = read_latest(&reader.tablet, &row, &rules)?;
            let changed = apply_rules(&latest, &rules)?;
            Ok((latest, changed, now_micros(&reader.tablet)))
        })
        .await?;
        let cells: Vec<OutCell> = changed
            .into_iter()
            .map(|((family, qualifier), value)| {
                let previous = latest
                    .get(&(family.clone(), qualifier.clone()))
                    .map_or(i64::MIN, |l| l.timestamp);
                OutCell {
                    family,
                    qualifier,
                    timestamp: now.max(previous),
                    value,
                    labels: Vec::new(),
                }
            })
            .collect();
        let mutations = cells
            .iter()
            .map(|c| Mutation::SetCell {
                family: c.family.clone(),
                qualifier: c.qualifier.clone(),
                timestamp: c.timestamp,
                value: c.value.clone(),
            })
            .collect();
        served
            .tablet
            .apply_in_task(RowMutation {
                row: key.clone(),
                mutations,
            })
            .await?;
        Ok(to_proto_row(key, cells))
    })
    .await?;
    shared.confirm_write()?;
    Ok(cells)
}

/// The latest cell of every column the rules name.
fn read_latest(
    tablet: &Tablet,
    row: &Bytes,
    rules: &[RmwRule],
) -> Result<BTreeMap<Column, Latest>, Error> {
    let mut columns: Vec<Column> = rules
        .iter()
        .map(|r| (r.family.clone(), r.qualifier.clone()))
        .collect();
    columns.sort();
    columns.dedup();
    let filter = CellFilter {
        columns: Some(columns),
        max_versions: Some(1),
        ..CellFilter::default()
    };
    let mut latest = BTreeMap::new();
    if let Some(r) = tablet.read_row(row, &filter)? {
        for c in r.cells {
            latest.entry((c.family, c.qualifier)).or_insert(Latest {
                value: c.value,
                timestamp: c.timestamp,
            });
        }
    }
    Ok(latest)
}

/// The new value of every column the rules change, in column order. Pure.
fn apply_rules(
    latest: &BTreeMap<Column, Latest>,
    rules: &[RmwRule],
) -> Result<BTreeMap<Column, Bytes>, Error> {
    let mut changed: BTreeMap<Column, Bytes> = BTreeMap::new();
    for (i, rule) in rules.iter().enumerate() {
        let column = (rule.family.clone(), rule.qualifier.clone());
        let current = changed
            .get(&column)
            .cloned()
            .or_else(|| latest.get(&column).map(|l| l.value.clone()));
        let next = match &rule.op {
            RmwOp::Append(suffix) => {
                let current = current.unwrap_or_default();
                let mut v = BytesMut::with_capacity(current.len() + suffix.len());
                v.extend_from_slice(&current);
                v.extend_from_slice(suffix);
                v.freeze()
            }
            RmwOp::Increment(n) => {
                let old = match current {
                    None => 0,
                    Some(v) => {
                        let bytes: [u8; 8] = v[..].try_into().map_err(|_| {
                            Error::new(
                                Code::FailedPrecondition,
                                format!(
                                    "rules[{i}]: cell {}:{} holds {} bytes, not an 8-byte \
                                     big-endian integer; it cannot be incremented",
                                    String::from_utf8_lossy(&rule.family),
                                    rule.qualifier.escape_ascii(),
                                    v.len()
                                ),
                            )
                        })?;
                        i64::from_be_bytes(bytes)
                    }
                };
                Bytes::copy_from_slice(&old.wrapping_add(*n).to_be_bytes())
            }
        };
        changed.insert(column, next);
    }
    Ok(changed)
}

/// The tablet's clock, in microseconds: the engine's own clock, the one its server
/// timestamps come from.
/// The clock, at the table's granularity (whole milliseconds on a millisecond table).
fn now_micros(tablet: &Tablet) -> i64 {
    let step = tablet.schema().granularity.step_micros();
    let now = tablet.inner.engine.clock.now().micros();
    now - now.rem_euclid(step)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn rule(q: &str, op: RmwOp) -> RmwRule {
        RmwRule {
            family: b("cf"),
            qualifier: b(q),
            op,
        }
    }

    fn int(n: i64) -> Bytes {
        Bytes::copy_from_slice(&n.to_be_bytes())
    }

    #[test]
    fn rules_apply_in_order_and_absent_cells_start_empty() {
        let mut latest = BTreeMap::new();
        latest.insert(
            (b("cf"), b("n")),
            Latest {
                value: int(40),
                timestamp: 5,
            },
        );
        let changed = apply_rules(
            &latest,
            &[
                rule("n", RmwOp::Increment(1)),
                rule("n", RmwOp::Increment(1)),
                rule("new", RmwOp::Increment(-3)),
                rule("s", RmwOp::Append(b("ab"))),
                rule("s", RmwOp::Append(b("c"))),
            ],
        )
        .unwrap();
        assert_eq!(changed[&(b("cf"), b("n"))], int(42));
        assert_eq!(changed[&(b("cf"), b("new"))], int(-3));
        assert_eq!(changed[&(b("cf"), b("s"))], b("abc"));
    }

    #[test]
    fn increments_wrap_and_need_eight_bytes() {
        let mut latest = BTreeMap::new();
        latest.insert(
            (b("cf"), b("max")),
            Latest {
                value: int(i64::MAX),
                timestamp: 0,
            },
        );
        latest.insert(
            (b("cf"), b("text")),
            Latest {
                value: b("seven!!"),
                timestamp: 0,
            },
        );
        let changed = apply_rules(&latest, &[rule("max", RmwOp::Increment(1))]).unwrap();
        assert_eq!(changed[&(b("cf"), b("max"))], int(i64::MIN));
        let e = apply_rules(&latest, &[rule("text", RmwOp::Increment(1))]).unwrap_err();
        assert_eq!(e.code, Code::FailedPrecondition);
        assert!(e.message.starts_with("rules[0]"), "{e}");
        // An append turns a counter into bytes a later increment refuses.
        let e = apply_rules(
            &latest,
            &[
                rule("max", RmwOp::Append(b("x"))),
                rule("max", RmwOp::Increment(1)),
            ],
        )
        .unwrap_err();
        assert!(e.message.starts_with("rules[1]"), "{e}");
    }
}
