//! One `bench paper` run against a ready cluster: a table of `rows` rows split into one
//! tablet per tablet server and a small table for the in-memory reads, the ceilings at
//! 1000 bytes and the run's concurrency, then each benchmark of Figure 6 in order.

use std::time::Duration;

use anyhow::Context;
use tabula_client::Client;

use super::report::{Measured, Report};
use super::workloads::{Benchmark, FAMILY, PaperClient, VALUE_BYTES, row_key};
use crate::bench::ceiling::{self, CeilingConfig};
use crate::bench::cluster;
use crate::bench::ycsb::driver::drive;
use crate::bench::ycsb::suite::unix_ms;

/// What to run.
#[derive(Debug, Clone)]
pub(super) struct SuiteConfig {
    pub(super) rows: u64,
    pub(super) mem_rows: u64,
    pub(super) concurrency: usize,
    pub(super) ceiling_duration: Duration,
    pub(super) drop_tables: bool,
    pub(super) progress: bool,
}

/// Runs every benchmark against the cell at `lock`.
pub(super) async fn run(config: &SuiteConfig, lock: &[String]) -> anyhow::Result<Report> {
    let client = Client::connect(lock)
        .await
        .context("connecting to the cluster")?;
    let servers = cluster::tablet_servers(&client).await?;
    let splits: Vec<String> = (1..servers as u64)
        .map(|i| row_key(i * config.rows / servers as u64))
        .collect();
    let stamp = unix_ms();
    let name = format!("paper-{stamp}");
    let mem_name = format!("paper-mem-{stamp}");
    let table = cluster::create_table(&client, &name, FAMILY, &splits).await?;
    let mem_table = cluster::create_table(&client, &mem_name, FAMILY, &[]).await?;
    // The in-memory table's rows: written before anything is measured.
    let fill = (0..config.concurrency)
        .map(|i| {
            PaperClient::new(
                mem_table.clone(),
                Benchmark::SequentialWrite,
                config.mem_rows,
                i as u64,
            )
        })
        .collect();
    drive(
        "fill the in-memory table",
        config.mem_rows,
        fill,
        config.progress,
    )
    .await?;
    let ceiling_config = CeilingConfig {
        payload_bytes: VALUE_BYTES,
        concurrency: config.concurrency,
        duration: config.ceiling_duration,
    };
    // The separate-process echo server is this binary's `bench echo-server`.
    let exe = std::env::current_exe().context("finding the tabula binary")?;
    let before = ceiling::measure(ceiling_config, &exe, config.progress).await?;
    let mut results = Vec::new();
    for benchmark in Benchmark::ALL {
        let (t, rows) = if benchmark == Benchmark::RandomReadMem {
            (&mem_table, config.mem_rows)
        } else {
            (&table, config.rows)
        };
        let clients = (0..config.concurrency)
            .map(|i| PaperClient::new(t.clone(), benchmark, rows, 7919 * (i as u64 + 1)))
            .collect();
        // The in-memory reads run as many operations as the others.
        let ops = benchmark.operations(config.rows);
        let phase = drive(benchmark.name(), ops, clients, config.progress).await?;
        results.push(Measured { benchmark, phase });
    }
    let ceilings = before.best(ceiling::measure(ceiling_config, &exe, config.progress).await?);
    if config.drop_tables {
        for n in [&name, &mem_name] {
            if let Err(e) = client.admin().delete_table(n).await {
                eprintln!("warning: could not delete table {n}: {e}");
            }
        }
    }
    Ok(Report {
        rows: config.rows,
        mem_rows: config.mem_rows,
        concurrency: config.concurrency,
        tablet_servers: servers,
        results,
        ceilings,
        notes: vec![
            "per server = rows/s of the whole cluster divided by its tablet servers; the paper's \
             numbers are its single-tablet-server column of Figure 6 (1000-byte values, GFS \
             underneath)"
                .to_owned(),
            format!(
                "scans read {} rows per call, the whole table {} times over; random reads \
                 (mem) read a {}-row table",
                super::workloads::SCAN_ROWS,
                super::workloads::SCAN_PASSES,
                config.mem_rows
            ),
        ],
    })
}
