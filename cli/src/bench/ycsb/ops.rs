//! One YCSB client: draws the next operation of its workload and its key, and runs it
//! through the client library's `Table`, as YCSB's `CoreWorkload` does. Reads read the whole
//! record (latest version of every field), updates write one random field, inserts write a
//! new record of ten fields, scans read 1-100 rows from a chosen key, and read-modify-writes
//! read the record then write one field (YCSB's two-step F, timed as one operation).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tabula_client::{Filter, Mutation, ReadOptions, Row, RowRange, RowSet, Table};
use tabula_common::Error;

use super::driver::{Moved, Worker};
use super::generator::KeyChooser;
use super::workload::{
    FAMILY, FIELDS, MAX_SCAN_ROWS, OpKind, Workload, field_name, field_value, record_key,
};

/// The record count the run's key space has grown to, shared by the clients.
#[derive(Debug)]
pub(super) struct KeySpace {
    /// Records loaded.
    pub(super) loaded: u64,
    /// The next record number an insert takes.
    next_insert: AtomicU64,
    /// Inserts acknowledged.
    acknowledged: AtomicU64,
}

impl KeySpace {
    pub(super) fn new(loaded: u64) -> KeySpace {
        KeySpace {
            loaded,
            next_insert: AtomicU64::new(loaded),
            acknowledged: AtomicU64::new(0),
        }
    }

    /// The newest record a read may ask for: the loaded ones and as many inserted ones as
    /// were acknowledged (YCSB's acknowledged counter, without its gaps bookkeeping).
    fn newest(&self) -> u64 {
        (self.loaded + self.acknowledged.load(Ordering::Relaxed)).max(1) - 1
    }
}

/// One client of the run phase.
pub(super) struct YcsbClient {
    pub(super) table: Table,
    pub(super) workload: Workload,
    pub(super) chooser: KeyChooser,
    pub(super) rng: StdRng,
    pub(super) keys: Arc<KeySpace>,
}

impl YcsbClient {
    /// A client seeded with `seed`.
    pub(super) fn new(
        table: Table,
        workload: Workload,
        chooser: KeyChooser,
        keys: Arc<KeySpace>,
        seed: u64,
    ) -> YcsbClient {
        YcsbClient {
            table,
            workload,
            chooser,
            rng: StdRng::seed_from_u64(seed),
            keys,
        }
    }

    fn existing_key(&mut self) -> String {
        let newest = self.keys.newest();
        record_key(self.chooser.next(newest, &mut self.rng))
    }

    fn one_field(&mut self) -> Vec<Mutation> {
        let field = field_name(self.rng.random_range(0..FIELDS));
        vec![Mutation::set_cell(
            FAMILY,
            field,
            field_value(&mut self.rng),
        )]
    }

    async fn read(&self, key: String) -> Result<Moved, Error> {
        let row = self.table.read_row(key, Some(Filter::latest(1))).await?;
        Ok(row.map_or(Moved::default(), |r| moved(&[r])))
    }

    async fn run(&mut self, kind: OpKind) -> Result<Moved, Error> {
        match kind {
            OpKind::Read => {
                let key = self.existing_key();
                self.read(key).await
            }
            OpKind::Update => {
                let key = self.existing_key();
                let mutations = self.one_field();
                self.table.mutate_row(key, mutations).await?;
                Ok(written(1, 1))
            }
            OpKind::Insert => {
                let n = self.keys.next_insert.fetch_add(1, Ordering::Relaxed);
                let mutations = full_record(&mut self.rng);
                self.table.mutate_row(record_key(n), mutations).await?;
                self.keys.acknowledged.fetch_add(1, Ordering::Relaxed);
                Ok(written(1, FIELDS))
            }
            OpKind::Scan => {
                let start = self.existing_key();
                let rows = self.rng.random_range(1..=MAX_SCAN_ROWS);
                let options = ReadOptions {
                    filter: Some(Filter::latest(1)),
                    rows_limit: Some(rows),
                    reversed: false,
                };
                let set = RowSet::new().range(RowRange::starting_at(Bytes::from(start)));
                let rows = self
                    .table
                    .read_rows_with(set, options)
                    .collect_rows()
                    .await?;
                Ok(moved(&rows))
            }
            OpKind::ReadModifyWrite => {
                let key = self.existing_key();
                let read = self.read(key.clone()).await?;
                let mutations = self.one_field();
                self.table.mutate_row(key, mutations).await?;
                Ok(Moved {
                    rows: 1,
                    bytes: read.bytes + super::workload::FIELD_BYTES as u64,
                })
            }
        }
    }
}

impl Worker for YcsbClient {
    async fn op(&mut self, _i: u64) -> (&'static str, Result<Moved, Error>) {
        let kind = self.workload.choose(self.rng.random());
        (kind.name(), self.run(kind).await)
    }
}

/// The ten fields of a new record.
pub(super) fn full_record(rng: &mut impl Rng) -> Vec<Mutation> {
    (0..FIELDS)
        .map(|i| Mutation::set_cell(FAMILY, field_name(i), field_value(rng)))
        .collect()
}

/// Rows and value bytes of `rows`.
fn moved(rows: &[Row]) -> Moved {
    Moved {
        rows: rows.len() as u64,
        bytes: rows
            .iter()
            .flat_map(|r| &r.cells)
            .map(|c| c.value.len() as u64)
            .sum(),
    }
}

/// `rows` rows of `fields` fields written.
fn written(rows: u64, fields: usize) -> Moved {
    Moved {
        rows,
        bytes: rows * (fields * super::workload::FIELD_BYTES) as u64,
    }
}
