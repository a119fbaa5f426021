//! One `bench ycsb` run against a ready cluster: create `usertable-<ms>` split into one
//! tablet per tablet server (at the quantiles of the record keys), load it, measure the
//! ceilings at the run's payload size and concurrency, then run the workload.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tabula_client::Client;

use super::driver::drive;
use super::generator::{Distribution, KeyChooser};
use super::load::{self, Loader};
use super::ops::{KeySpace, YcsbClient};
use super::report::Report;
use super::workload::{FAMILY, FIELD_BYTES, FIELDS, Workload, record_key, split_keys};
use crate::bench::ceiling::{self, CeilingConfig};
use crate::bench::cluster;

/// What to run.
#[derive(Debug, Clone)]
pub(super) struct SuiteConfig {
    pub(super) workload: Workload,
    pub(super) distribution: Distribution,
    pub(super) records: u64,
    pub(super) operations: u64,
    pub(super) concurrency: usize,
    /// How long each ceiling loop runs.
    pub(super) ceiling_duration: Duration,
    /// Drop the table afterwards (a cluster that outlives the run).
    pub(super) drop_table: bool,
    pub(super) seed: u64,
    pub(super) progress: bool,
}

/// Runs the whole benchmark against the cell at `lock`.
pub(super) async fn run(config: &SuiteConfig, lock: &[String]) -> anyhow::Result<Report> {
    let client = Client::connect(lock)
        .await
        .context("connecting to the cluster")?;
    let servers = cluster::tablet_servers(&client).await?;
    let keys: Vec<String> = (0..config.records).map(record_key).collect();
    let splits = split_keys(keys, servers - 1);
    let name = format!("usertable-{}", unix_ms());
    let table = cluster::create_table(&client, &name, FAMILY, &splits).await?;
    if config.progress {
        eprintln!(
            "table {name}: {} tablets on {servers} tablet server(s)",
            splits.len() + 1
        );
    }
    let loaders = (0..config.concurrency)
        .map(|i| Loader::new(table.clone(), config.records, config.seed ^ (i as u64 + 1)))
        .collect();
    let load = drive(
        &format!("load ({} rows per batch)", load::BATCH_ROWS),
        load::batches(config.records),
        loaders,
        config.progress,
    )
    .await?;
    anyhow::ensure!(
        load.failed() == 0,
        "the load failed for {} batches (first: {})",
        load.failed(),
        load.kinds
            .values()
            .find_map(|k| k.first_error.clone())
            .unwrap_or_default()
    );
    let ceiling_config = CeilingConfig {
        payload_bytes: FIELDS * FIELD_BYTES,
        concurrency: config.concurrency,
        duration: config.ceiling_duration,
    };
    let before = ceiling::measure(ceiling_config, config.progress).await?;
    let space = Arc::new(KeySpace::new(config.records));
    let expected_inserts =
        (config.operations as f64 * config.workload.insert_share() * 2.0).ceil() as u64;
    let clients = (0..config.concurrency)
        .map(|i| {
            YcsbClient::new(
                table.clone(),
                config.workload,
                KeyChooser::new(config.distribution, config.records, expected_inserts),
                space.clone(),
                config.seed.wrapping_add(1000 + i as u64),
            )
        })
        .collect();
    let run = drive(
        &format!("run (workload {})", config.workload.name()),
        config.operations,
        clients,
        config.progress,
    )
    .await?;
    let ceilings = before.best(ceiling::measure(ceiling_config, config.progress).await?);
    if config.drop_table
        && let Err(e) = client.admin().delete_table(&name).await
    {
        eprintln!("warning: could not delete table {name}: {e}");
    }
    Ok(Report {
        workload: config.workload.name(),
        distribution: config.distribution.name(),
        records: config.records,
        operations: config.operations,
        concurrency: config.concurrency,
        tablet_servers: servers,
        table: name,
        load,
        run,
        ceilings,
        notes: vec![
            format!(
                "records of {FIELDS} fields x {FIELD_BYTES} B in family {FAMILY}; keys user<fnv64(n)>; \
                 load in batches of {} rows",
                load::BATCH_ROWS
            ),
            "ceilings measured in this process, in this run, on 127.0.0.1, before and after the \
             run (the better of each kept): bare tonic unary echo and server streaming at the \
             run's payload size and concurrency"
                .to_owned(),
        ],
    })
}

/// Milliseconds since the Unix epoch (table names).
pub(in crate::bench) fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}
