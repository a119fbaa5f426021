//! `Tablet::resolve_aggregates`: a row mutation's `AddToCell`s become the `SetCell`s of their
//! cells' new sums, read from the tablet at the moment of the call (`engine::aggregate` is the
//! pure core and says why). The caller holds the row's lock from this call until the write is
//! applied, so no other write lands between the read and the write.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::engine::aggregate::{self, CellAt};
use crate::engine::error::EngineError;
use crate::engine::mutation::RowMutation;
use crate::engine::read::CellFilter;

use super::core::Tablet;

impl Tablet {
    /// `m` with every `AddToCell` resolved against the row's current cells and checked
    /// against the schema (aggregate families, the table's timestamp granularity); `m` itself
    /// when there is nothing to do. Errors are `Invalid` (`InvalidArgument`) or a read's.
    pub fn resolve_aggregates(&self, m: RowMutation) -> Result<RowMutation, EngineError> {
        let schema = self.schema();
        if !aggregate::needs_resolving(&m.mutations, &schema) {
            return Ok(m);
        }
        let cells = aggregate::cells_to_read(&m.mutations);
        let stored = if cells.is_empty() {
            BTreeMap::new()
        } else {
            self.read_cells(&m.row, &cells)?
        };
        let mutations = aggregate::resolve(m.mutations, &schema, &stored)?;
        Ok(RowMutation {
            row: m.row,
            mutations,
        })
    }

    /// The current values of those of `cells` that exist in `row`: one read of the row,
    /// limited to their columns and timestamps.
    fn read_cells(
        &self,
        row: &[u8],
        cells: &[CellAt],
    ) -> Result<BTreeMap<CellAt, Bytes>, EngineError> {
        let columns: BTreeSet<(Bytes, Bytes)> = cells
            .iter()
            .map(|(f, q, _)| (f.clone(), q.clone()))
            .collect();
        let oldest = cells.iter().map(|c| c.2).min().unwrap_or(0);
        let newest = cells.iter().map(|c| c.2).max().unwrap_or(0);
        let filter = CellFilter {
            columns: Some(columns.into_iter().collect()),
            time_range: Some((oldest, newest.saturating_add(1))),
            ..CellFilter::default()
        };
        let wanted: BTreeSet<&CellAt> = cells.iter().collect();
        let Some(found) = self.read_row(row, &filter)? else {
            return Ok(BTreeMap::new());
        };
        Ok(found
            .cells
            .into_iter()
            .map(|c| ((c.family, c.qualifier, c.timestamp), c.value))
            .filter(|(at, _)| wanted.contains(at))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use bytes::Bytes;
    use std::time::Duration;

    use tabula_common::{LocalDir, ManualClock, StorageRoot, SystemClock, TabletId, Timestamp};

    use crate::engine::aggregate::decode;
    use crate::engine::mutation::{InvalidMutation, Mutation, RowMutation};
    use crate::engine::options::{Granularity, Schema};
    use crate::engine::read::CellFilter;
    use crate::engine::tablet::scratch::engine_on;
    use crate::engine::{Engine, EngineError, Tablet};

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn add(input: i64) -> RowMutation {
        RowMutation {
            row: b("r"),
            mutations: vec![Mutation::AddToCell {
                family: b("sum"),
                qualifier: b("q"),
                timestamp: 1000,
                input,
            }],
        }
    }

    fn engine(storage: &Arc<dyn StorageRoot>, server: &str) -> Arc<Engine> {
        engine_on(storage, server, Arc::new(SystemClock))
    }

    fn sum(t: &Tablet) -> i64 {
        let row = t.read_row(b"r", &CellFilter::default()).unwrap().unwrap();
        assert_eq!(row.cells.len(), 1, "one cell per (column, timestamp)");
        decode(&row.cells[0].value).unwrap()
    }

    #[test]
    fn adds_accumulate_in_the_tablet_and_survive_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn StorageRoot> = Arc::new(LocalDir::open(dir.path()).unwrap());
        let mut schema = Schema::with_families(["cf", "sum"]);
        schema.aggregates.insert(b("sum"));
        schema.granularity = Granularity::Millis;
        let tablet = engine(&storage, "s1")
            .create_tablet(TabletId(1), Bytes::new(), None, schema.clone())
            .unwrap();
        for input in [5, 7, -2] {
            let m = tablet.resolve_aggregates(add(input)).unwrap();
            assert!(matches!(m.mutations[0], Mutation::SetCell { .. }));
            tablet.apply(m).unwrap();
        }
        assert_eq!(sum(&tablet), 10);
        // An unresolved add never reaches the log.
        let e = tablet.apply(add(1)).unwrap_err();
        assert!(
            matches!(
                e,
                EngineError::Invalid(InvalidMutation::UnresolvedAggregate)
            ),
            "{e}"
        );
        let plain = RowMutation {
            row: b("r"),
            mutations: vec![Mutation::AddToCell {
                family: b("cf"),
                qualifier: b("q"),
                timestamp: 0,
                input: 1,
            }],
        };
        let e = tablet.resolve_aggregates(plain).unwrap_err();
        assert!(
            matches!(e, EngineError::Invalid(InvalidMutation::NotAggregate(_))),
            "{e}"
        );
        // Recovered from the commit log elsewhere, the sum is the same and adds go on from it.
        drop(tablet);
        let tablet = engine(&storage, "s2")
            .open_tablet(TabletId(1), schema)
            .unwrap();
        assert_eq!(sum(&tablet), 10);
        let m = tablet.resolve_aggregates(add(32)).unwrap();
        tablet.apply(m).unwrap();
        assert_eq!(sum(&tablet), 42);
    }

    /// Server time on a millisecond table: whole milliseconds of the clock, never going back
    /// (equal within one millisecond); a microsecond table keeps strictly increasing micros.
    #[test]
    fn server_time_follows_the_granularity() {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn StorageRoot> = Arc::new(LocalDir::open(dir.path()).unwrap());
        let clock = Arc::new(ManualClock::new(Timestamp(1_700_000_000_123_456)));
        let engine = engine_on(&storage, "s1", clock.clone());
        let write = |t: &Tablet, row: &str| {
            t.apply(RowMutation {
                row: b(row),
                mutations: vec![Mutation::SetCell {
                    family: b("cf"),
                    qualifier: b("q"),
                    timestamp: -1,
                    value: b("v"),
                }],
            })
            .unwrap();
            let read = t.read_row(row.as_bytes(), &CellFilter::default()).unwrap();
            read.unwrap().cells[0].timestamp
        };
        let mut schema = Schema::with_families(["cf"]);
        schema.granularity = Granularity::Millis;
        let millis = engine
            .create_tablet(TabletId(1), Bytes::new(), None, schema)
            .unwrap();
        assert_eq!(write(&millis, "a"), 1_700_000_000_123_000);
        assert_eq!(write(&millis, "b"), 1_700_000_000_123_000);
        clock.advance(Duration::from_micros(600));
        assert_eq!(write(&millis, "c"), 1_700_000_000_124_000);
        // The clock going back does not take server time back.
        clock.set(Timestamp(1_700_000_000_000_000));
        assert_eq!(write(&millis, "d"), 1_700_000_000_124_000);
        let micros = engine
            .create_tablet(
                TabletId(2),
                Bytes::new(),
                None,
                Schema::with_families(["cf"]),
            )
            .unwrap();
        clock.set(Timestamp(1_700_000_000_123_456));
        assert_eq!(write(&micros, "a"), 1_700_000_000_123_456);
        assert_eq!(write(&micros, "b"), 1_700_000_000_123_457);
    }
}
