//! One `bench ycsb` run over one or two paths (see `backend`): make and load each path's
//! table, measure the ceilings at the run's payload size and concurrency, run the workload on
//! each path in turn, then measure the ceilings again (the better of each kept).
//!
//! Both paths run the very same operations: each client's seed depends only on its number,
//! so client `i` of the native run and client `i` of the Cloud Bigtable API run draw the same
//! operations and keys, into tables of the same shape (split into one tablet per tablet
//! server at the quantiles of the record keys, when the cell is known).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use tabula_client::Client;

use super::backend::bigtable_api::{BigtableApi, INSTANCE, Opened};
use super::backend::native::Native;
use super::backend::{Backend, PathKind};
use super::driver::{Phase, drive};
use super::generator::{Distribution, KeyChooser};
use super::load::{self, Loader};
use super::ops::{KeySpace, YcsbClient};
use super::report::{PathReport, Report};
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
    /// Drop the tables the run named and made afterwards (a cluster that outlives the run).
    pub(super) drop_table: bool,
    pub(super) seed: u64,
    pub(super) progress: bool,
}

/// Where the run goes.
#[derive(Debug, Clone, Default)]
pub(super) struct Targets {
    /// The cluster's lock cell: the native path runs when it is not empty.
    pub(super) lock: Vec<String>,
    /// The Cloud Bigtable API path, if any.
    pub(super) bigtable_api: Option<ApiTarget>,
}

/// A server speaking the Cloud Bigtable API.
#[derive(Debug, Clone)]
pub(super) struct ApiTarget {
    /// `HOST:PORT`.
    pub(super) addr: String,
    /// The table to use (made if missing, never dropped) [default: a fresh one].
    pub(super) table: Option<String>,
}

/// How long a table made through the Cloud Bigtable API may take to be served.
const SERVED_DEADLINE: Duration = Duration::from_secs(120);
/// Polling interval of that wait.
const POLL: Duration = Duration::from_millis(100);

/// One path, its table made and loaded.
struct Loaded<B> {
    backend: B,
    report: PathReport,
}

/// Runs the whole benchmark.
pub(super) async fn run(config: &SuiteConfig, targets: &Targets) -> anyhow::Result<Report> {
    let stamp = unix_ms();
    let client = match targets.lock.is_empty() {
        true => None,
        false => Some(
            Client::connect(&targets.lock)
                .await
                .context("connecting to the cluster")?,
        ),
    };
    let servers = match &client {
        Some(client) => Some(cluster::tablet_servers(client).await?),
        None => None,
    };
    let keys: Vec<String> = (0..config.records).map(record_key).collect();
    let splits = split_keys(keys, servers.unwrap_or(1) - 1);

    let mut native = None;
    if let Some(client) = &client {
        let name = format!("usertable-{stamp}");
        let table = cluster::create_table(client, &name, FAMILY, &splits).await?;
        if config.progress {
            eprintln!(
                "native: table {name}, {} tablets on {} tablet server(s)",
                splits.len() + 1,
                servers.unwrap_or(1)
            );
        }
        let endpoint = format!("cell {}", targets.lock.join(","));
        native = Some(load(config, Native::new(table), PathKind::Native, name, endpoint).await?);
    }
    let mut api = None;
    if let Some(target) = &targets.bigtable_api {
        let table_id = target
            .table
            .clone()
            .unwrap_or_else(|| format!("usertable-{stamp}-api"));
        let backend = BigtableApi::connect(&target.addr, &table_id).await?;
        let opened = backend.open_table(&splits).await?;
        if let Some(client) = &client {
            wait_served(client, &table_id).await?;
        }
        if config.progress {
            eprintln!(
                "bigtable-api: table {INSTANCE}/tables/{table_id} at {} ({})",
                target.addr,
                match opened {
                    Opened::Existing => "existing",
                    Opened::Created => "created",
                }
            );
        }
        let loaded = load(
            config,
            backend,
            PathKind::BigtableApi,
            table_id,
            target.addr.clone(),
        )
        .await?;
        let made_here = opened == Opened::Created && target.table.is_none();
        api = Some((loaded, made_here));
    }

    let ceiling_config = CeilingConfig {
        payload_bytes: FIELDS * FIELD_BYTES,
        concurrency: config.concurrency,
        duration: config.ceiling_duration,
    };
    // The separate-process echo server is this binary's `bench echo-server`.
    let exe = std::env::current_exe().context("finding the tabula binary")?;
    let before = ceiling::measure(ceiling_config, &exe, config.progress).await?;
    let mut paths = Vec::new();
    if let Some(native) = &mut native {
        native.report.run = run_phase(config, &native.backend, PathKind::Native).await?;
        paths.push(native.report.clone());
    }
    if let Some((api, _)) = &mut api {
        api.report.run = run_phase(config, &api.backend, PathKind::BigtableApi).await?;
        paths.push(api.report.clone());
    }
    let ceilings = before.best(ceiling::measure(ceiling_config, &exe, config.progress).await?);

    if config.drop_table {
        if let (Some(client), Some(native)) = (&client, &native)
            && let Err(e) = client.admin().delete_table(&native.report.table).await
        {
            eprintln!(
                "warning: could not delete table {}: {e}",
                native.report.table
            );
        }
        if let Some((api, true)) = &api
            && let Err(e) = api.backend.delete_table().await
        {
            eprintln!("warning: {e:#}");
        }
    }
    let mut notes = vec![
        format!(
            "records of {FIELDS} fields x {FIELD_BYTES} B in family {FAMILY}; keys user<fnv64(n)>; \
             load in batches of {} rows",
            load::BATCH_ROWS
        ),
        "ceilings measured in this run on 127.0.0.1, before and after the run (the better of \
         each kept): bare tonic unary echo and server streaming at the run's payload size and \
         concurrency, from this process to an echo server in a separate process and to one in \
         this process; the ratios are to the separate-process server, the cluster's layout \
         (every Tabula call crosses processes)"
            .to_owned(),
    ];
    if api.is_some() {
        notes.push(
            "bigtable-api: reads and scans are ReadRows (one key / a range with rows_limit, \
             cells_per_column_limit 1), writes MutateRow of SetCells at the server's time, the \
             load MutateRows; clients spread over 4 HTTP/2 connections"
                .to_owned(),
        );
    }
    if native.is_some() && api.is_some() {
        notes.push(
            "both paths ran the same operations on the same keys (same seeds), one after the \
             other, into tables of the same shape on the same cluster"
                .to_owned(),
        );
    }
    Ok(Report {
        workload: config.workload.name(),
        distribution: config.distribution.name(),
        records: config.records,
        operations: config.operations,
        concurrency: config.concurrency,
        tablet_servers: servers,
        paths,
        ceilings,
        notes,
    })
}

/// Makes `path`'s load phase over `backend`; fails if any batch failed.
async fn load<B: Backend>(
    config: &SuiteConfig,
    backend: B,
    path: PathKind,
    table: String,
    endpoint: String,
) -> anyhow::Result<Loaded<B>> {
    let loaders = (0..config.concurrency)
        .map(|i| {
            Loader::new(
                backend.for_client(i),
                config.records,
                config.seed ^ (i as u64 + 1),
            )
        })
        .collect();
    let load = drive(
        &format!("{} load ({} rows per batch)", path.name(), load::BATCH_ROWS),
        load::batches(config.records),
        loaders,
        config.progress,
    )
    .await?;
    anyhow::ensure!(
        load.failed() == 0,
        "{}: the load failed for {} batches (first: {})",
        path.name(),
        load.failed(),
        load.kinds
            .values()
            .find_map(|k| k.first_error.clone())
            .unwrap_or_default()
    );
    Ok(Loaded {
        backend,
        report: PathReport {
            path,
            endpoint,
            table,
            load,
            run: Phase::empty(),
        },
    })
}

/// The run phase of `path` over `backend`.
async fn run_phase<B: Backend>(
    config: &SuiteConfig,
    backend: &B,
    path: PathKind,
) -> anyhow::Result<Phase> {
    let space = Arc::new(KeySpace::new(config.records));
    let expected_inserts =
        (config.operations as f64 * config.workload.insert_share() * 2.0).ceil() as u64;
    let clients = (0..config.concurrency)
        .map(|i| {
            YcsbClient::new(
                backend.for_client(i),
                config.workload,
                KeyChooser::new(config.distribution, config.records, expected_inserts),
                space.clone(),
                config.seed.wrapping_add(1000 + i as u64),
            )
        })
        .collect();
    drive(
        &format!("{} run (workload {})", path.name(), config.workload.name()),
        config.operations,
        clients,
        config.progress,
    )
    .await
}

/// Waits until every tablet of `table` is served, if the cell knows the table (a table made
/// through a gateway over this cell); a table the cell does not have (another server) is not
/// waited for.
async fn wait_served(client: &Client, table: &str) -> anyhow::Result<()> {
    let admin = client.admin();
    let started = Instant::now();
    loop {
        match admin.list_tablets(Some(table)).await {
            Err(e) if e.code == tabula_common::Code::NotFound => return Ok(()),
            Ok(tablets)
                if !tablets.is_empty()
                    && admin
                        .cluster_status()
                        .await
                        .is_ok_and(|s| s.tablets_not_serving == 0) =>
            {
                return Ok(());
            }
            _ => {}
        }
        if started.elapsed() > SERVED_DEADLINE {
            bail!("table {table}'s tablets not all served after {SERVED_DEADLINE:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Milliseconds since the Unix epoch (table names).
pub(in crate::bench) fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}
