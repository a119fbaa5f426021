//! The YCSB report: YCSB's own output lines (`[OVERALL], Throughput(ops/sec), ...`, per
//! operation count, average and percentile latencies in microseconds) for each path the run
//! took (native, Cloud Bigtable API), this run's ceilings and the ratios to them, and with
//! two paths the API path's cost against the native one (`compare`); and the same as one
//! JSON document. Pure.
//!
//! The JSON document keeps its one-path shape at the top level (`load`, `overall`,
//! `operations`, `timeline` are the first path's: native when both ran), so scripts reading
//! one path need not change; `paths` holds every path and `comparison` the ratios.

use serde_json::json;

use super::backend::PathKind;
use super::compare::{Comparison, compare};
use crate::bench::ceiling::Ceilings;
use crate::bench::stats::Second;
use crate::bench::ycsb::driver::{KindStats, Phase};

/// Everything one `bench ycsb` run measured, and how.
#[derive(Debug, Clone)]
pub(super) struct Report {
    pub(super) workload: &'static str,
    pub(super) distribution: &'static str,
    pub(super) records: u64,
    pub(super) operations: u64,
    pub(super) concurrency: usize,
    /// `None` when no cell was given (a Cloud Bigtable API server alone).
    pub(super) tablet_servers: Option<usize>,
    /// Each path in the order it ran; at least one.
    pub(super) paths: Vec<PathReport>,
    pub(super) ceilings: Ceilings,
    pub(super) notes: Vec<String>,
}

/// What one path measured.
#[derive(Debug, Clone)]
pub(super) struct PathReport {
    pub(super) path: PathKind,
    /// What it reached: the cell, or the API's address.
    pub(super) endpoint: String,
    pub(super) table: String,
    /// The load phase (kind `LOAD`, one op per batch).
    pub(super) load: Phase,
    pub(super) run: Phase,
}

/// One operation kind's numbers, derived from its stats and the run's length.
struct OpNumbers<'a> {
    name: &'static str,
    stats: &'a KindStats,
    ops_per_sec: f64,
    mb_per_sec: f64,
}

impl PathReport {
    fn ops(&self) -> Vec<OpNumbers<'_>> {
        let secs = self.run.elapsed.as_secs_f64().max(1e-9);
        self.run
            .kinds
            .iter()
            .map(|(name, stats)| OpNumbers {
                name,
                stats,
                ops_per_sec: stats.ops() as f64 / secs,
                mb_per_sec: stats.moved.bytes as f64 / 1e6 / secs,
            })
            .collect()
    }

    /// Rows per second of the load.
    fn load_rows_per_sec(&self) -> f64 {
        self.load.moved().rows as f64 / self.load.elapsed.as_secs_f64().max(1e-9)
    }

    /// This path's YCSB-style lines.
    fn to_text(&self, c: &Ceilings) -> String {
        let mut out = String::new();
        let mut line = |section: &str, metric: &str, value: String| {
            out.push_str(&format!("[{section}], {metric}, {value}\n"));
        };
        line(
            "CONFIG",
            "Path",
            format!(
                "{} ({}, table {})",
                self.path.name(),
                self.endpoint,
                self.table
            ),
        );
        line(
            "LOAD",
            "RunTime(ms)",
            format!("{:.0}", self.load.elapsed.as_secs_f64() * 1000.0),
        );
        line(
            "LOAD",
            "Throughput(rows/sec)",
            format!("{:.1}", self.load_rows_per_sec()),
        );
        line(
            "OVERALL",
            "RunTime(ms)",
            format!("{:.0}", self.run.elapsed.as_secs_f64() * 1000.0),
        );
        line(
            "OVERALL",
            "Throughput(ops/sec)",
            format!("{:.1}", self.run.ops_per_sec()),
        );
        line(
            "OVERALL",
            "RatioToEcho",
            format!("{:.3}", c.echo_ratio(self.run.ops_per_sec())),
        );
        for op in self.ops() {
            let n = op.name;
            let s = op.stats;
            line(n, "Operations", s.ops().to_string());
            if let Some(l) = s.latencies.summary() {
                line(n, "AverageLatency(us)", format!("{:.1}", l.mean_us));
                line(n, "MinLatency(us)", l.min_us.to_string());
                line(n, "MaxLatency(us)", l.max_us.to_string());
                line(n, "50thPercentileLatency(us)", l.p50_us.to_string());
                line(n, "95thPercentileLatency(us)", l.p95_us.to_string());
                line(n, "99thPercentileLatency(us)", l.p99_us.to_string());
                line(n, "99.9thPercentileLatency(us)", l.p999_us.to_string());
            }
            line(n, "Return=OK", s.ops().to_string());
            line(n, "Throughput(ops/sec)", format!("{:.1}", op.ops_per_sec));
            if n == "SCAN" {
                line(n, "Throughput(MB/sec)", format!("{:.2}", op.mb_per_sec));
                line(
                    n,
                    "RatioToStreaming",
                    format!("{:.3}", c.stream_ratio(op.mb_per_sec)),
                );
            }
            if s.failed > 0 {
                line(&format!("{n}-FAILED"), "Operations", s.failed.to_string());
            }
        }
        out
    }

    /// This path's part of `--output json`.
    fn to_json(&self, c: &Ceilings) -> serde_json::Value {
        let mut operations = serde_json::Map::new();
        for op in self.ops() {
            let l = op.stats.latencies.summary();
            let scan = op.name == "SCAN";
            operations.insert(
                op.name.to_owned(),
                json!({
                    "operations": op.stats.ops(),
                    "failed": op.stats.failed,
                    "first_error": op.stats.first_error,
                    "throughput_ops_per_sec": op.ops_per_sec,
                    "mb_per_sec": op.mb_per_sec,
                    "rows": op.stats.moved.rows,
                    "average_latency_us": l.map(|l| l.mean_us),
                    "min_latency_us": l.map(|l| l.min_us),
                    "max_latency_us": l.map(|l| l.max_us),
                    "p50_latency_us": l.map(|l| l.p50_us),
                    "p95_latency_us": l.map(|l| l.p95_us),
                    "p99_latency_us": l.map(|l| l.p99_us),
                    "p999_latency_us": l.map(|l| l.p999_us),
                    "ratio": if scan {
                        c.stream_ratio(op.mb_per_sec)
                    } else {
                        c.echo_ratio(op.ops_per_sec)
                    },
                    "ratio_baseline": if scan { "stream_mb_per_sec" } else { "echo_calls_per_sec" },
                }),
            );
        }
        json!({
            "path": self.path.name(),
            "endpoint": self.endpoint,
            "table": self.table,
            "load": {
                "runtime_ms": self.load.elapsed.as_secs_f64() * 1000.0,
                "rows": self.load.moved().rows,
                "throughput_rows_per_sec": self.load_rows_per_sec(),
                "failed_batches": self.load.failed(),
            },
            "overall": {
                "runtime_ms": self.run.elapsed.as_secs_f64() * 1000.0,
                "operations": self.run.ops(),
                "failed": self.run.failed(),
                "throughput_ops_per_sec": self.run.ops_per_sec(),
                "ratio_to_echo": c.echo_ratio(self.run.ops_per_sec()),
            },
            "operations": operations,
            "timeline": timeline_json(&self.run.timeline.seconds()),
        })
    }
}

impl Report {
    /// The API path against the native one, when both ran.
    pub(super) fn comparison(&self) -> Option<Comparison> {
        let find = |kind| self.paths.iter().find(|p| p.path == kind);
        Some(compare(
            &find(PathKind::Native)?.run,
            &find(PathKind::BigtableApi)?.run,
        ))
    }

    /// YCSB-style lines: the configuration and ceilings, each path, the comparison, notes.
    pub(super) fn to_text(&self) -> String {
        let c = &self.ceilings;
        let servers = self
            .tablet_servers
            .map_or("tablet servers unknown".to_owned(), |n| {
                format!("{n} tablet servers")
            });
        let mut out = format!(
            "[CONFIG], Workload, {} ({}, {} records, {} ops, {} clients, {servers})\n",
            self.workload, self.distribution, self.records, self.operations, self.concurrency,
        );
        out.push_str(&format!(
            "[CEILING], EchoCalls(ops/sec, {} B x {} in flight, separate process), {:.1}\n",
            c.config.payload_bytes, c.config.concurrency, c.separate.echo_calls_per_sec
        ));
        out.push_str(&format!(
            "[CEILING], Streaming(MB/sec, {} B messages x {} streams, separate process), {:.1}\n",
            c.config.payload_bytes, c.config.concurrency, c.separate.stream_mb_per_sec
        ));
        out.push_str(&format!(
            "[CEILING], EchoCallsInProcess(ops/sec), {:.1}\n",
            c.in_process.echo_calls_per_sec
        ));
        out.push_str(&format!(
            "[CEILING], StreamingInProcess(MB/sec), {:.1}\n",
            c.in_process.stream_mb_per_sec
        ));
        out.push_str("[CEILING], RatiosTo, separate process (the cluster's layout)\n");
        for path in &self.paths {
            out.push_str(&path.to_text(c));
        }
        if let Some(comparison) = self.comparison() {
            out.push_str(&comparison.to_text());
        }
        for note in &self.notes {
            out.push_str(&format!("note: {note}\n"));
        }
        out
    }

    /// The document `--output json` prints.
    pub(super) fn to_json(&self) -> serde_json::Value {
        let c = &self.ceilings;
        let paths: Vec<serde_json::Value> = self.paths.iter().map(|p| p.to_json(c)).collect();
        let mut doc = json!({
            "benchmark": "ycsb",
            "workload": self.workload,
            "distribution": self.distribution,
            "records": self.records,
            "operations_requested": self.operations,
            "concurrency": self.concurrency,
            "tablet_servers": self.tablet_servers,
            "ceilings": c.to_json(),
            "comparison": self.comparison().map(|c| c.to_json()),
            "notes": self.notes,
        });
        // The first path's numbers at the top level, as before there were paths.
        if let (Some(serde_json::Value::Object(first)), Some(top)) =
            (paths.first(), doc.as_object_mut())
        {
            for (key, value) in first {
                top.insert(key.clone(), value.clone());
            }
        }
        if let Some(top) = doc.as_object_mut() {
            top.insert("paths".to_owned(), serde_json::Value::Array(paths));
        }
        doc
    }
}

/// Per second: operations and latency percentiles, for scripts and plots.
pub(in crate::bench) fn timeline_json(seconds: &[Second]) -> serde_json::Value {
    seconds
        .iter()
        .map(|s| {
            json!({
                "second": s.second,
                "ops": s.ops,
                "p50_us": s.latency.map(|l| l.p50_us),
                "p99_us": s.latency.map(|l| l.p99_us),
                "p999_us": s.latency.map(|l| l.p999_us),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::bench::ceiling::{CeilingConfig, Rates};
    use crate::bench::stats::{Latencies, Timeline};
    use crate::bench::ycsb::driver::Moved;

    fn kind(us: &[u64], failed: u64, bytes: u64) -> KindStats {
        let mut latencies = Latencies::new();
        for &u in us {
            latencies.record(Duration::from_micros(u));
        }
        KindStats {
            latencies,
            failed,
            first_error: (failed > 0).then(|| "unavailable: x".to_owned()),
            moved: Moved {
                rows: us.len() as u64,
                bytes,
            },
        }
    }

    fn sample() -> Report {
        let mut kinds = BTreeMap::new();
        kinds.insert("READ", kind(&[100, 200, 300, 400], 0, 4000));
        kinds.insert("SCAN", kind(&[1000, 3000], 1, 2_000_000));
        let mut timeline = Timeline::new();
        timeline.record(Duration::from_millis(10), Duration::from_micros(100));
        let run = Phase {
            kinds,
            timeline,
            elapsed: Duration::from_secs(2),
        };
        let mut load_kinds = BTreeMap::new();
        load_kinds.insert("LOAD", kind(&[5000], 0, 100_000));
        Report {
            workload: "e",
            distribution: "zipfian",
            records: 100,
            operations: 7,
            concurrency: 8,
            tablet_servers: Some(3),
            paths: vec![PathReport {
                path: PathKind::Native,
                endpoint: "cell h:1".to_owned(),
                table: "usertable".to_owned(),
                load: Phase {
                    kinds: load_kinds,
                    timeline: Timeline::new(),
                    elapsed: Duration::from_millis(500),
                },
                run,
            }],
            ceilings: Ceilings {
                config: CeilingConfig {
                    payload_bytes: 1000,
                    concurrency: 8,
                    duration: Duration::from_secs(3),
                },
                separate: Rates {
                    echo_calls_per_sec: 30.0,
                    stream_mb_per_sec: 4.0,
                },
                in_process: Rates {
                    echo_calls_per_sec: 45.0,
                    stream_mb_per_sec: 6.0,
                },
                measurements: 1,
            },
            notes: vec!["a note".to_owned()],
        }
    }

    #[test]
    fn text_has_ycsb_lines_ceilings_and_ratios() {
        let text = sample().to_text();
        let lines: Vec<&str> = text.lines().collect();
        for want in [
            "[OVERALL], RunTime(ms), 2000",
            "[OVERALL], Throughput(ops/sec), 3.0",
            "[OVERALL], RatioToEcho, 0.100",
            "[CEILING], EchoCalls(ops/sec, 1000 B x 8 in flight, separate process), 30.0",
            "[CEILING], Streaming(MB/sec, 1000 B messages x 8 streams, separate process), 4.0",
            "[CEILING], EchoCallsInProcess(ops/sec), 45.0",
            "[CEILING], StreamingInProcess(MB/sec), 6.0",
            "[CEILING], RatiosTo, separate process (the cluster's layout)",
            "[LOAD], Throughput(rows/sec), 2.0",
            "[READ], Operations, 4",
            "[READ], AverageLatency(us), 250.0",
            "[READ], 50thPercentileLatency(us), 200",
            "[READ], 99.9thPercentileLatency(us), 400",
            "[SCAN], Operations, 2",
            "[SCAN], Throughput(MB/sec), 1.00",
            "[SCAN], RatioToStreaming, 0.250",
            "[SCAN-FAILED], Operations, 1",
            "[CONFIG], Path, native (cell h:1, table usertable)",
            "note: a note",
        ] {
            assert!(lines.contains(&want), "missing {want:?} in\n{text}");
        }
        assert!(!text.contains("READ-FAILED"));
        assert!(
            !text.contains("[COMPARISON]"),
            "one path, nothing to compare"
        );
    }

    #[test]
    fn json_carries_every_number() {
        let doc = sample().to_json();
        assert_eq!(doc["benchmark"], "ycsb");
        assert_eq!(doc["overall"]["operations"], 6);
        assert_eq!(doc["overall"]["failed"], 1);
        assert_eq!(doc["overall"]["ratio_to_echo"], 0.1);
        assert_eq!(doc["operations"]["READ"]["p95_latency_us"], 400);
        assert_eq!(
            doc["operations"]["READ"]["ratio_baseline"],
            "echo_calls_per_sec"
        );
        assert_eq!(doc["operations"]["SCAN"]["ratio"], 0.25);
        assert_eq!(doc["operations"]["SCAN"]["failed"], 1);
        assert_eq!(doc["ceilings"]["echo_calls_per_sec"], 30.0);
        assert_eq!(doc["ceilings"]["echo_in_process_calls_per_sec"], 45.0);
        assert_eq!(doc["ceilings"]["stream_in_process_mb_per_sec"], 6.0);
        assert_eq!(doc["load"]["rows"], 1);
        assert_eq!(doc["timeline"][0]["ops"], 1);
        assert_eq!(doc["path"], "native");
        assert_eq!(doc["paths"][0]["overall"], doc["overall"]);
        assert_eq!(doc["paths"].as_array().unwrap().len(), 1);
        assert!(doc["comparison"].is_null());
    }

    #[test]
    fn two_paths_print_both_and_the_api_paths_cost() {
        let mut report = sample();
        let mut api = report.paths[0].clone();
        api.path = PathKind::BigtableApi;
        api.endpoint = "127.0.0.1:9".to_owned();
        api.run.elapsed = Duration::from_secs(4);
        report.paths.push(api);
        let text = report.to_text();
        assert!(
            text.contains("[CONFIG], Path, bigtable-api (127.0.0.1:9, table usertable)\n"),
            "{text}"
        );
        assert_eq!(text.matches("[READ], Operations, 4").count(), 2, "{text}");
        assert!(
            text.contains("[OVERALL], Throughput(ops/sec), 1.5\n"),
            "{text}"
        );
        assert!(
            text.contains("[COMPARISON], Throughput(bigtable-api/native), 0.500\n"),
            "{text}"
        );
        let doc = report.to_json();
        assert_eq!(
            doc["path"], "native",
            "the first path stays at the top level"
        );
        assert_eq!(doc["paths"][1]["path"], "bigtable-api");
        assert_eq!(doc["paths"][1]["overall"]["throughput_ops_per_sec"], 1.5);
        assert_eq!(doc["comparison"]["throughput_ratio"], 0.5);
        assert_eq!(
            doc["comparison"]["operations"]["READ"]["p50_latency_ratio"],
            1.0
        );
    }
}
