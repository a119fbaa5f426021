//! The whole run: every workload for Tabula and fjall (and the raw fdatasync loop for
//! fillsync), each store in a fresh directory removed after its phases, one store at a time so
//! no store's background work slows another's measurement.
//!
//! Order of one round: fillseq (Tabula, then fjall); fillrandom, readseq, readrandom and scan
//! on one freshly loaded store (Tabula, then fjall; readseq first, so readrandom and scan run
//! hot); fillsync (raw loop, Tabula, fjall). The two stores run back to back per workload so a
//! change in machine load between workloads hits both alike. With several rounds, every number
//! reported is the median over the rounds.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::Context;
use tabula_tabletserver::engine::EngineOptions;

use super::data::{self, ValuePool};
use super::fjall_store::FjallStore;
use super::progress;
use super::raw;
use super::report::{Report, Workload, WorkloadResult};
use super::store::Store;
use super::tabula_store::TabulaStore;
use super::workloads;
use crate::bench::stats::median;

/// What to run, and where.
#[derive(Debug, Clone)]
pub(super) struct SuiteConfig {
    pub(super) records: u64,
    pub(super) sync_records: u64,
    pub(super) threads: usize,
    pub(super) scans: u64,
    pub(super) scan_rows: usize,
    /// How many times to run everything; the report holds medians.
    pub(super) rounds: usize,
    /// Parent of every store's directory; must exist.
    pub(super) root: PathBuf,
    pub(super) filesystem: String,
    pub(super) engine: EngineOptions,
    /// Print progress on stderr.
    pub(super) progress: bool,
}

/// The records each workload visits, in order; built once and shared by both stores.
struct Plan {
    values: ValuePool,
    sequential: Vec<u64>,
    random: Vec<u64>,
    reads: Vec<u64>,
    scan_starts: Vec<u64>,
    sync: Vec<u64>,
}

/// ops/s of the workloads one store ran on one loaded instance.
#[derive(Debug, Default, Clone, Copy)]
struct LoadedRates {
    fillrandom: f64,
    readseq: f64,
    readrandom: f64,
    scan: f64,
}

/// One store's rates for every workload in one round.
#[derive(Debug, Default, Clone, Copy)]
struct Rates {
    fillseq: f64,
    loaded: LoadedRates,
    fillsync: f64,
}

/// Everything one round measured.
#[derive(Debug, Default, Clone, Copy)]
struct Round {
    tabula: Rates,
    fjall: Rates,
    raw_fillsync: f64,
    /// fdatasyncs Tabula's commit log made during fillsync.
    tabula_fdatasyncs: u64,
}

/// Runs every workload `config.rounds` times and returns the report of medians.
pub(super) fn run(config: &SuiteConfig) -> anyhow::Result<Report> {
    let n = config.records;
    let plan = Plan {
        values: ValuePool::new(),
        sequential: data::sequential(n),
        random: data::permutation(n, 1),
        reads: data::random_picks(n, n, 2),
        scan_starts: data::random_picks(n, config.scans, 3),
        sync: data::permutation(config.sync_records, 4),
    };
    let rounds = config.rounds.max(1);
    let mut measured = Vec::with_capacity(rounds);
    for round in 1..=rounds {
        let tag = if rounds > 1 {
            format!(" (round {round}/{rounds})")
        } else {
            String::new()
        };
        measured.push(run_round(config, &plan, &tag)?);
    }
    let med = |f: &dyn Fn(&Round) -> f64| median(measured.iter().map(f).collect());
    let result = |workload: Workload, ops: u64, field: &dyn Fn(&Rates) -> f64| WorkloadResult {
        workload,
        ops,
        tabula_ops_per_sec: med(&|r| field(&r.tabula)),
        fjall_ops_per_sec: med(&|r| field(&r.fjall)),
        raw_ops_per_sec: None,
    };
    let results = vec![
        result(Workload::FillSeq, n, &|r| r.fillseq),
        result(Workload::FillRandom, n, &|r| r.loaded.fillrandom),
        result(Workload::ReadRandom, n, &|r| r.loaded.readrandom),
        result(Workload::ReadSeq, n, &|r| r.loaded.readseq),
        result(Workload::Scan, config.scans, &|r| r.loaded.scan),
        WorkloadResult {
            raw_ops_per_sec: Some(med(&|r| r.raw_fillsync)),
            ..result(Workload::FillSync, config.sync_records, &|r| r.fillsync)
        },
    ];
    let fdatasyncs = med(&|r| r.tabula_fdatasyncs as f64).round() as u64;
    Ok(Report {
        records: n,
        sync_records: config.sync_records,
        threads: config.threads,
        rounds,
        dir: config.root.display().to_string(),
        filesystem: config.filesystem.clone(),
        results,
        tabula_fillsync_fdatasyncs: fdatasyncs,
        notes: notes(config, fdatasyncs),
    })
}

/// One round of every workload; `tag` goes after each progress label.
fn run_round(config: &SuiteConfig, plan: &Plan, tag: &str) -> anyhow::Result<Round> {
    let engine = || config.engine.clone();
    let cache_bytes = config.engine.block_cache_bytes as u64;
    let mut r = Round::default();

    r.tabula.fillseq = in_dir(config, "fillseq-tabula", |dir| {
        let store = TabulaStore::create(dir, false, engine())?;
        let label = format!("fillseq/tabula{tag}");
        fill_phase(config, plan, &label, &store, &plan.sequential, 1)
    })?;
    r.fjall.fillseq = in_dir(config, "fillseq-fjall", |dir| {
        let store = FjallStore::create(dir, false, cache_bytes)?;
        let label = format!("fillseq/fjall{tag}");
        fill_phase(config, plan, &label, &store, &plan.sequential, 1)
    })?;

    r.tabula.loaded = in_dir(config, "loaded-tabula", |dir| {
        let store = TabulaStore::create(dir, false, engine())?;
        loaded_phases(config, plan, &format!("tabula{tag}"), &store)
    })?;
    r.fjall.loaded = in_dir(config, "loaded-fjall", |dir| {
        let store = FjallStore::create(dir, false, cache_bytes)?;
        loaded_phases(config, plan, &format!("fjall{tag}"), &store)
    })?;

    r.raw_fillsync = in_dir(config, "fillsync-raw", |dir| {
        let label = format!("fillsync/raw fdatasync{tag}");
        let elapsed = progress::track(&label, config.sync_records, config.progress, |done| {
            raw::append_fdatasync_loop(dir, &plan.sync, &plan.values, done)
        })?;
        Ok(rate(config.sync_records, elapsed))
    })?;
    (r.tabula.fillsync, r.tabula_fdatasyncs) = in_dir(config, "fillsync-tabula", |dir| {
        let store = TabulaStore::create(dir, true, engine())?;
        let before = store.log_stats().syncs;
        let label = format!("fillsync/tabula{tag}");
        let rate = fill_phase(config, plan, &label, &store, &plan.sync, config.threads)?;
        Ok((rate, store.log_stats().syncs.saturating_sub(before)))
    })?;
    r.fjall.fillsync = in_dir(config, "fillsync-fjall", |dir| {
        let store = FjallStore::create(dir, true, cache_bytes)?;
        let label = format!("fillsync/fjall{tag}");
        fill_phase(config, plan, &label, &store, &plan.sync, config.threads)
    })?;
    Ok(r)
}

/// How each store was set up, printed below the table.
fn notes(config: &SuiteConfig, fdatasyncs: u64) -> Vec<String> {
    let mib = config.engine.block_cache_bytes / (1024 * 1024);
    vec![
        "keys 16 bytes, values 100 bytes (about 50% compressible); tabula stores each record as \
         one cell (family cf, empty qualifier, explicit timestamp)"
            .to_owned(),
        "tabula: commit log sync=false for fillseq/fillrandom (each group write reaches the OS, \
         no fdatasync), sync=true for fillsync (group commit); EngineOptions::default()"
            .to_owned(),
        format!(
            "fjall 3: default options (PersistMode::Buffer per write) except a {mib} MiB block \
             cache, Tabula's budget; for fillsync each write is a batch committed with \
             PersistMode::SyncData"
        ),
        format!(
            "fillseq, fillrandom, readrandom, readseq and scan use 1 thread; fillsync uses {} \
             writer threads for tabula and fjall, and its ratio is against 1 thread appending \
             116 bytes + fdatasync per write",
            config.threads
        ),
        format!(
            "readseq, readrandom ({} random existing keys) and scan ({} scans of {} rows from \
             random keys; ops = scans) run in that order on the store fillrandom just loaded, \
             without a forced flush",
            config.records, config.scans, config.scan_rows
        ),
        format!(
            "tabula fillsync: {} writes made {} commit-log fdatasyncs ({:.1} writes per \
             fdatasync)",
            config.sync_records,
            fdatasyncs,
            config.sync_records as f64 / fdatasyncs.max(1) as f64
        ),
    ]
}

/// Runs `phase` with a fresh directory `root/name`, removed afterwards.
fn in_dir<T>(
    config: &SuiteConfig,
    name: &str,
    phase: impl FnOnce(&Path) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let dir = config.root.join(name);
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let out = phase(&dir).with_context(|| format!("{name} in {}", dir.display()))?;
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    Ok(out)
}

fn rate(ops: u64, elapsed: Duration) -> f64 {
    ops as f64 / elapsed.as_secs_f64().max(1e-9)
}

fn fill_phase<S: Store>(
    config: &SuiteConfig,
    plan: &Plan,
    label: &str,
    store: &S,
    order: &[u64],
    threads: usize,
) -> anyhow::Result<f64> {
    let ops = order.len() as u64;
    let elapsed = progress::track(label, ops, config.progress, |done: &AtomicU64| {
        workloads::fill(store, order, &plan.values, threads, done)
    })?;
    Ok(rate(ops, elapsed))
}

fn loaded_phases<S: Store>(
    config: &SuiteConfig,
    plan: &Plan,
    engine: &str,
    store: &S,
) -> anyhow::Result<LoadedRates> {
    let n = config.records;
    let fillrandom = fill_phase(
        config,
        plan,
        &format!("fillrandom/{engine}"),
        store,
        &plan.random,
        1,
    )?;
    let elapsed = progress::track(&format!("readseq/{engine}"), n, config.progress, |done| {
        workloads::read_seq(store, n, done)
    })?;
    let readseq = rate(n, elapsed);
    let elapsed = progress::track(
        &format!("readrandom/{engine}"),
        n,
        config.progress,
        |done| workloads::read_random(store, &plan.reads, done),
    )?;
    let readrandom = rate(n, elapsed);
    let scans = plan.scan_starts.len() as u64;
    let elapsed = progress::track(&format!("scan/{engine}"), scans, config.progress, |done| {
        workloads::scan_ranges(store, &plan.scan_starts, config.scan_rows, n, done)
    })?;
    Ok(LoadedRates {
        fillrandom,
        readseq,
        readrandom,
        scan: rate(scans, elapsed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tiny_run_measures_every_workload_for_every_store() {
        let root = tempfile::tempdir().unwrap();
        let config = SuiteConfig {
            records: 2000,
            sync_records: 200,
            threads: 4,
            scans: 50,
            scan_rows: 100,
            rounds: 2,
            root: root.path().to_path_buf(),
            filesystem: "test".to_owned(),
            // Tiny memtables so the load flushes and compacts while it runs.
            engine: EngineOptions::for_tests(),
            progress: false,
        };
        let report = run(&config).unwrap();
        let names: Vec<_> = report.results.iter().map(|r| r.workload).collect();
        assert_eq!(names, Workload::ALL);
        for r in &report.results {
            let name = r.workload.name();
            assert!(r.tabula_ops_per_sec > 0.0, "{name}: tabula");
            assert!(r.fjall_ops_per_sec > 0.0, "{name}: fjall");
            assert!(r.ratio().is_some_and(|x| x > 0.0), "{name}: ratio");
        }
        let sync = &report.results[5];
        assert!(sync.raw_ops_per_sec.is_some_and(|x| x > 0.0));
        // Every synced write was covered by some fdatasync, none by more than one.
        assert!((1..=200).contains(&report.tabula_fillsync_fdatasyncs));
        assert_eq!(
            report.to_json()["results"].as_array().map(Vec::len),
            Some(6)
        );
        // Every store's directory was removed after its phases.
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    }
}
