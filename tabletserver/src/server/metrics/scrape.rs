//! What one scrape of `/metrics` reports, gathered at scrape time: the request counters the
//! layer keeps, the engine's counters (compactions, commit log, block cache) and gauges read
//! from the served tablets. Every family is named `tabula_tablet_<what>_<unit>`; labels are
//! `rpc` and `code` (bounded, see `requests`), `kind` (three values) and `tablet` (one per
//! tablet served here).

use std::sync::Arc;

use crate::engine::{CompactionKind, Engine};

use super::super::registry::Registry;
use super::requests::RequestMetrics;
use tabula_common::metrics::{Exposition, Kind};

/// Everything a scrape reads; cheap to clone.
#[derive(Debug, Clone)]
pub struct Metrics {
    engine: Arc<Engine>,
    registry: Arc<Registry>,
    requests: Arc<RequestMetrics>,
}

impl Metrics {
    /// Metrics over a server's engine, its served tablets and its request counters.
    pub fn new(
        engine: Arc<Engine>,
        registry: Arc<Registry>,
        requests: Arc<RequestMetrics>,
    ) -> Metrics {
        Metrics {
            engine,
            registry,
            requests,
        }
    }

    /// The request counters the gRPC layer records into.
    pub fn requests(&self) -> &Arc<RequestMetrics> {
        &self.requests
    }

    /// Every family, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut e = Exposition::default();
        self.render_requests(&mut e);
        self.render_tablets(&mut e);
        self.render_compactions(&mut e);
        self.render_commit_log(&mut e);
        self.render_block_cache(&mut e);
        e.finish()
    }

    fn render_requests(&self, e: &mut Exposition) {
        let name = "tabula_tablet_requests_total";
        e.family(
            name,
            Kind::Counter,
            "gRPC requests answered, by RPC and status code.",
        );
        for c in self.requests.counts() {
            e.sample(name, &[("rpc", c.rpc), ("code", c.code)], c.count as f64);
        }
        let name = "tabula_tablet_request_duration_seconds";
        e.family(
            name,
            Kind::Histogram,
            "Time from a gRPC request's arrival to its response headers, by RPC.",
        );
        for (rpc, h) in self.requests.latencies() {
            e.histogram(name, &[("rpc", rpc)], &h);
        }
    }

    fn render_tablets(&self, e: &mut Exposition) {
        let mut tablets = self.registry.list();
        tablets.sort_by_key(|t| t.id());
        let per_tablet: Vec<(String, u64, usize, u64)> = tablets
            .iter()
            .map(|t| {
                (
                    t.id().to_string(),
                    t.tablet.memtable_bytes(),
                    t.tablet.sstable_count(),
                    t.tablet.approximate_size_bytes(),
                )
            })
            .collect();
        let name = "tabula_tablet_tablets_served";
        e.family(name, Kind::Gauge, "Tablets this server serves.");
        e.sample(name, &[], per_tablet.len() as f64);
        let name = "tabula_tablet_memtable_bytes";
        e.family(
            name,
            Kind::Gauge,
            "Bytes in the memtables of every served tablet.",
        );
        let total: u64 = per_tablet.iter().map(|t| t.1).sum();
        e.sample(name, &[], total as f64);
        let name = "tabula_tablet_tablet_memtable_bytes";
        e.family(
            name,
            Kind::Gauge,
            "Bytes in a tablet's active and frozen memtables.",
        );
        for (id, mem, _, _) in &per_tablet {
            e.sample(name, &[("tablet", id)], *mem as f64);
        }
        let name = "tabula_tablet_sstables";
        e.family(name, Kind::Gauge, "SSTables a tablet reads.");
        for (id, _, sstables, _) in &per_tablet {
            e.sample(name, &[("tablet", id)], *sstables as f64);
        }
        let name = "tabula_tablet_tablet_size_bytes";
        e.family(
            name,
            Kind::Gauge,
            "A tablet's approximate size: memtables plus its share of its SSTables.",
        );
        for (id, _, _, size) in &per_tablet {
            e.sample(name, &[("tablet", id)], *size as f64);
        }
    }

    fn render_compactions(&self, e: &mut Exposition) {
        let stats = self.engine.stats();
        let name = "tabula_tablet_compactions_total";
        e.family(
            name,
            Kind::Counter,
            "Completed compactions: minor (memtable flush), merging, major.",
        );
        for kind in CompactionKind::ALL {
            e.sample(
                name,
                &[("kind", kind.name())],
                stats.compactions(kind) as f64,
            );
        }
        let name = "tabula_tablet_read_triggered_compactions_total";
        e.family(
            name,
            Kind::Counter,
            "Major compactions asked for by reads that resolved away much garbage.",
        );
        e.sample(name, &[], stats.read_triggered_compactions() as f64);
        let name = "tabula_tablet_compaction_seconds_total";
        e.family(name, Kind::Counter, "Time spent in completed compactions.");
        e.sample(name, &[], stats.compaction_time().as_secs_f64());
        let name = "tabula_tablet_compaction_queue";
        e.family(
            name,
            Kind::Gauge,
            "Open tablets with background flushes or compactions pending or running.",
        );
        e.sample(name, &[], self.engine.tablets_with_pending_work() as f64);
    }

    fn render_commit_log(&self, e: &mut Exposition) {
        let log = self.engine.commit_log();
        let stats = log.stats();
        let counters = [
            (
                "tabula_tablet_commitlog_syncs_total",
                "fdatasync calls on the commit log.",
                stats.syncs,
            ),
            (
                "tabula_tablet_commitlog_records_total",
                "Records appended to the commit log.",
                stats.records,
            ),
            (
                "tabula_tablet_commitlog_bytes_total",
                "Bytes of records appended to the commit log.",
                stats.bytes,
            ),
            (
                "tabula_tablet_commitlog_batches_total",
                "Group-commit batches written to the commit log.",
                stats.batches,
            ),
        ];
        for (name, help, value) in counters {
            e.family(name, Kind::Counter, help);
            e.sample(name, &[], value as f64);
        }
        let name = "tabula_tablet_commitlog_sync_seconds";
        e.family(name, Kind::Histogram, "Latency of commit-log fdatasyncs.");
        e.histogram(name, &[], &log.sync_latency());
    }

    fn render_block_cache(&self, e: &mut Exposition) {
        let cache = self.engine.block_cache();
        let name = "tabula_tablet_block_cache_hits_total";
        e.family(
            name,
            Kind::Counter,
            "Block-cache lookups that found their block.",
        );
        e.sample(name, &[], cache.hits() as f64);
        let name = "tabula_tablet_block_cache_misses_total";
        e.family(
            name,
            Kind::Counter,
            "Block-cache lookups that read the block from its SSTable.",
        );
        e.sample(name, &[], cache.misses() as f64);
        let name = "tabula_tablet_block_cache_bytes";
        e.family(
            name,
            Kind::Gauge,
            "Bytes of decoded blocks in the block cache.",
        );
        e.sample(name, &[], cache.used_bytes() as f64);
        let name = "tabula_tablet_block_cache_capacity_bytes";
        e.family(name, Kind::Gauge, "The block cache's byte budget.");
        e.sample(name, &[], cache.capacity_bytes() as f64);
    }
}
