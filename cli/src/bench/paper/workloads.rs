//! The Bigtable paper's Figure 6 operations over rows `row0000000000`.. with one 1000-byte
//! value each (family `cf`, qualifier `v`): sequential and random writes, sequential and
//! random reads, and scans of `SCAN_ROWS` consecutive rows, the table read `SCAN_PASSES` times
//! over. Like the paper's scans ("a single RPC fetches a large sequence of values from a
//! tablet server"), a scan is one call over a row range long enough that the call's own cost
//! fades and the rows' cost shows; short scans are YCSB E's. Reads ask for the latest version
//! only: the random writes overwrite rows, and older versions stay until a compaction. Which row an operation touches is
//! pure ([`Benchmark::row_of`]); the [`PaperClient`] runs it through the client library.

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tabula_client::{Filter, Mutation, ReadOptions, RowRange, RowSet, Table};
use tabula_common::Error;

use crate::bench::ycsb::driver::{Moved, Worker};

/// The column family of the paper's tables.
pub(super) const FAMILY: &str = "cf";
/// The qualifier of the one value of each row.
const QUALIFIER: &str = "v";
/// Bytes of each value (the paper's 1000-byte values).
pub(super) const VALUE_BYTES: usize = 1000;
/// Rows one scan reads (one call).
pub(super) const SCAN_ROWS: u64 = 1000;
/// Times the scan benchmark reads the whole table, so that it runs long enough to measure.
pub(super) const SCAN_PASSES: u64 = 10;

/// One benchmark of Figure 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Benchmark {
    SequentialWrite,
    RandomWrite,
    SequentialRead,
    RandomRead,
    RandomReadMem,
    Scan,
}

impl Benchmark {
    /// Every benchmark, in the order they run (writes first, so the reads find the rows).
    pub(super) const ALL: [Benchmark; 6] = [
        Benchmark::SequentialWrite,
        Benchmark::RandomWrite,
        Benchmark::SequentialRead,
        Benchmark::RandomRead,
        Benchmark::RandomReadMem,
        Benchmark::Scan,
    ];

    /// Its name in the report.
    pub(super) fn name(self) -> &'static str {
        match self {
            Benchmark::SequentialWrite => "sequential writes",
            Benchmark::RandomWrite => "random writes",
            Benchmark::SequentialRead => "sequential reads",
            Benchmark::RandomRead => "random reads",
            Benchmark::RandomReadMem => "random reads (mem)",
            Benchmark::Scan => "scans",
        }
    }

    /// The paper's number for one tablet server (Figure 6, 1000-byte values read or
    /// written per second).
    pub(super) fn paper_single_server(self) -> f64 {
        match self {
            Benchmark::RandomRead => 1212.0,
            Benchmark::RandomReadMem => 10811.0,
            Benchmark::RandomWrite => 8850.0,
            Benchmark::SequentialRead => 4425.0,
            Benchmark::SequentialWrite => 8547.0,
            Benchmark::Scan => 15385.0,
        }
    }

    /// Operations it runs over a table of `rows` rows (a scan reads `SCAN_ROWS` rows, and
    /// the table is scanned `SCAN_PASSES` times).
    pub(super) fn operations(self, rows: u64) -> u64 {
        match self {
            Benchmark::Scan => rows.div_ceil(SCAN_ROWS) * SCAN_PASSES,
            _ => rows,
        }
    }

    /// The first row operation `i` touches, among `rows` rows; `u` is a uniform draw in
    /// `[0, 1)` for the random ones.
    pub(super) fn row_of(self, i: u64, rows: u64, u: f64) -> u64 {
        let rows = rows.max(1);
        match self {
            Benchmark::SequentialWrite | Benchmark::SequentialRead => i % rows,
            Benchmark::Scan => (i % rows.div_ceil(SCAN_ROWS)) * SCAN_ROWS,
            Benchmark::RandomWrite | Benchmark::RandomRead | Benchmark::RandomReadMem => {
                ((u * rows as f64) as u64).min(rows - 1)
            }
        }
    }
}

/// The key of row `n`: zero-padded, so row order is numeric order.
pub(super) fn row_key(n: u64) -> String {
    format!("row{n:010}")
}

/// One client of one benchmark.
pub(super) struct PaperClient {
    table: Table,
    benchmark: Benchmark,
    rows: u64,
    rng: StdRng,
    value: Bytes,
}

impl PaperClient {
    /// Runs `benchmark` over the first `rows` rows of `table`.
    pub(super) fn new(table: Table, benchmark: Benchmark, rows: u64, seed: u64) -> PaperClient {
        let mut rng = StdRng::seed_from_u64(seed);
        let value: Vec<u8> = (0..VALUE_BYTES).map(|_| rng.random()).collect();
        PaperClient {
            table,
            benchmark,
            rows,
            rng,
            value: Bytes::from(value),
        }
    }

    async fn run(&mut self, i: u64) -> Result<Moved, Error> {
        let row = self.benchmark.row_of(i, self.rows, self.rng.random());
        let key = row_key(row);
        match self.benchmark {
            Benchmark::SequentialWrite | Benchmark::RandomWrite => {
                let m = Mutation::set_cell(FAMILY, QUALIFIER, self.value.clone());
                self.table.mutate_row(key, vec![m]).await?;
                Ok(Moved {
                    rows: 1,
                    bytes: VALUE_BYTES as u64,
                })
            }
            Benchmark::SequentialRead | Benchmark::RandomRead | Benchmark::RandomReadMem => {
                let row = self.table.read_row(key, Some(Filter::latest(1))).await?;
                Ok(row.map_or(Moved::default(), |r| Moved::of_rows(&[r])))
            }
            Benchmark::Scan => {
                let options = ReadOptions {
                    filter: Some(Filter::latest(1)),
                    rows_limit: Some(SCAN_ROWS),
                    reversed: false,
                };
                let set = RowSet::new().range(RowRange::starting_at(Bytes::from(key)));
                // Rows are counted as they arrive, as a long scan's reader would, not held
                // until the last one.
                let mut stream = self.table.read_rows_with(set, options);
                let mut moved = Moved::default();
                while let Some(row) = stream.next_row().await {
                    moved.add_row(&row?);
                }
                Ok(moved)
            }
        }
    }
}

impl Worker for PaperClient {
    async fn op(&mut self, i: u64) -> (&'static str, Result<Moved, Error>) {
        (self.benchmark.name(), self.run(i).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_each_benchmark() {
        assert_eq!(row_key(42), "row0000000042");
        assert!(row_key(9) < row_key(10));
        assert_eq!(Benchmark::SequentialWrite.row_of(5, 100, 0.9), 5);
        assert_eq!(Benchmark::SequentialRead.row_of(105, 100, 0.9), 5);
        assert_eq!(Benchmark::Scan.row_of(3, 10_000, 0.9), 3000);
        // Pass after pass over a table whose last scan is short.
        assert_eq!(Benchmark::Scan.row_of(2, 2500, 0.9), 2000);
        assert_eq!(Benchmark::Scan.row_of(3, 2500, 0.9), 0);
        assert_eq!(Benchmark::RandomRead.row_of(0, 100, 0.5), 50);
        assert_eq!(Benchmark::RandomWrite.row_of(0, 100, 0.999_999), 99);
        assert_eq!(Benchmark::Scan.operations(10_001), 11 * SCAN_PASSES);
        assert_eq!(Benchmark::RandomRead.operations(1001), 1001);
        let paper: f64 = Benchmark::ALL.iter().map(|b| b.paper_single_server()).sum();
        assert_eq!(paper, 1212.0 + 10811.0 + 8850.0 + 4425.0 + 8547.0 + 15385.0);
    }
}
