//! Loads rows into a table and runs range scans, against the cluster whose lock cell is named
//! by `TABULA_LOCK` (comma-separated `host:port`s, e.g. from `tabula local`).
//!
//! ```text
//! TABULA_LOCK=127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103 \
//!     cargo run -p tabula-client --example load_and_scan
//! ```
//!
//! It creates the table `example` (family `cf`, split at `row05000`) if it does not exist,
//! writes 10,000 rows in batches, then scans a prefix and a range, and reads the last rows of
//! the table with a reversed, limited scan, and scans the whole table both ways, printing
//! what came back and how long it took.

use std::process::ExitCode;
use std::time::Instant;

use bytes::Bytes;
use tabula_client::{Client, Family, Mutation, ReadOptions, RowRange, RowSet};
use tabula_common::Code;

const ROWS: usize = 10_000;
const BATCH: usize = 500;

#[tokio::main]
async fn main() -> ExitCode {
    let Ok(lock) = std::env::var("TABULA_LOCK") else {
        eprintln!("set TABULA_LOCK to the lock cell's addresses (host:port,host:port,...)");
        return ExitCode::from(2);
    };
    let addrs: Vec<String> = lock.split(',').map(|s| s.trim().to_owned()).collect();
    match run(&addrs).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(addrs: &[String]) -> Result<(), tabula_common::Error> {
    let client = Client::connect(addrs).await?;
    match client
        .admin()
        .create_table("example", &[Family::new("cf")], &[b"row05000"])
        .await
    {
        Ok(t) => println!("created table {} (id {})", t.name, t.id.0),
        Err(e) if e.code == Code::AlreadyExists => println!("table example exists"),
        Err(e) => return Err(e),
    }
    let table = client.table("example").await?;

    let start = Instant::now();
    for first in (0..ROWS).step_by(BATCH) {
        let batch: Vec<(Bytes, Vec<Mutation>)> = (first..(first + BATCH).min(ROWS))
            .map(|i| {
                let row = Bytes::from(format!("row{i:05}"));
                (row, vec![Mutation::set_cell("cf", "n", i.to_string())])
            })
            .collect();
        for result in table.mutate_rows(batch).await {
            result?;
        }
    }
    println!("loaded {ROWS} rows in {:?}", start.elapsed());

    let start = Instant::now();
    let rows = table
        .read_rows(RowSet::new().range(RowRange::prefix("row049")), None)
        .collect_rows()
        .await?;
    println!(
        "prefix row049: {} rows in {:?}",
        rows.len(),
        start.elapsed()
    );

    let start = Instant::now();
    let rows = table
        .read_rows(
            RowSet::new().range(RowRange::closed_open("row04990", "row05010")),
            None,
        )
        .collect_rows()
        .await?;
    let keys: Vec<String> = rows
        .iter()
        .map(|r| r.key.escape_ascii().to_string())
        .collect();
    println!(
        "range [row04990, row05010) across the split: {} rows in {:?}: {} .. {}",
        rows.len(),
        start.elapsed(),
        keys.first().map_or("", String::as_str),
        keys.last().map_or("", String::as_str)
    );

    // The newest rows first: a reversed scan from the table's end, limited to 5 rows.
    let start = Instant::now();
    let options = ReadOptions {
        rows_limit: Some(5),
        reversed: true,
        ..ReadOptions::default()
    };
    let rows = table
        .read_rows_with(RowSet::all(), options)
        .collect_rows()
        .await?;
    let keys: Vec<String> = rows
        .iter()
        .map(|r| r.key.escape_ascii().to_string())
        .collect();
    println!(
        "the last 5 rows, reversed, in {:?}: {}",
        start.elapsed(),
        keys.join(" ")
    );

    // The whole table both ways.
    for reversed in [false, true] {
        let start = Instant::now();
        let options = ReadOptions {
            reversed,
            ..ReadOptions::default()
        };
        let n = table
            .read_rows_with(RowSet::all(), options)
            .collect_rows()
            .await?
            .len();
        let way = if reversed { "reversed" } else { "forward" };
        println!("whole table {way}: {n} rows in {:?}", start.elapsed());
    }
    Ok(())
}
