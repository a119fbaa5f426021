//! The `bench paper` report: per benchmark the rows per second, per tablet server, beside the
//! paper's single-server number and the ratio to it, and the ratio to this run's ceiling
//! (reads and writes: echo calls/s; scans: streaming MB/s; both against the echo server in a
//! separate process, the cluster's layout); and the same as JSON. Pure.

use serde_json::json;

use super::workloads::Benchmark;
use crate::bench::ceiling::Ceilings;
use crate::bench::table::{render, thousands};
use crate::bench::ycsb::driver::Phase;

/// One benchmark's measurements.
#[derive(Debug, Clone)]
pub(super) struct Measured {
    pub(super) benchmark: Benchmark,
    pub(super) phase: Phase,
}

/// Everything one `bench paper` run measured, and how.
#[derive(Debug, Clone)]
pub(super) struct Report {
    pub(super) rows: u64,
    pub(super) mem_rows: u64,
    pub(super) concurrency: usize,
    pub(super) tablet_servers: usize,
    pub(super) results: Vec<Measured>,
    pub(super) ceilings: Ceilings,
    pub(super) notes: Vec<String>,
}

/// The derived numbers of one benchmark.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Derived {
    /// Rows (1000-byte values) per second, all servers.
    pub(super) rows_per_sec: f64,
    pub(super) per_server: f64,
    /// Per-server rate over the paper's single-server number.
    pub(super) vs_paper: f64,
    /// Over the ceiling (echo calls/s, or streaming MB/s for scans).
    pub(super) vs_ceiling: f64,
    pub(super) ceiling_name: &'static str,
    pub(super) mb_per_sec: f64,
}

impl Report {
    pub(super) fn derive(&self, m: &Measured) -> Derived {
        let secs = m.phase.elapsed.as_secs_f64().max(1e-9);
        let moved = m.phase.moved();
        let rows_per_sec = moved.rows as f64 / secs;
        let mb_per_sec = moved.bytes as f64 / 1e6 / secs;
        let per_server = rows_per_sec / self.tablet_servers.max(1) as f64;
        let (vs_ceiling, ceiling_name) = if m.benchmark == Benchmark::Scan {
            (self.ceilings.stream_ratio(mb_per_sec), "streaming")
        } else {
            (self.ceilings.echo_ratio(m.phase.ops_per_sec()), "echo")
        };
        Derived {
            rows_per_sec,
            per_server,
            vs_paper: per_server / m.benchmark.paper_single_server(),
            vs_ceiling,
            ceiling_name,
            mb_per_sec,
        }
    }

    /// The aligned table of `--output table`.
    pub(super) fn to_table(&self) -> String {
        let c = &self.ceilings;
        let mut out = format!(
            "bench paper: {} rows of 1000-byte values ({} for the in-memory table), {} clients, \
             {} tablet server(s)\nceilings: bare tonic echo {} calls/s, server streaming {:.1} MB/s \
             in a separate process (in this process: {} calls/s, {:.1} MB/s), {} B x {} in \
             flight; ratios are to the separate-process server, the cluster's layout\n\n",
            self.rows,
            self.mem_rows,
            self.concurrency,
            self.tablet_servers,
            thousands(c.separate.echo_calls_per_sec),
            c.separate.stream_mb_per_sec,
            thousands(c.in_process.echo_calls_per_sec),
            c.in_process.stream_mb_per_sec,
            c.config.payload_bytes,
            c.config.concurrency,
        );
        let mut rows = vec![
            [
                "benchmark",
                "ops",
                "failed",
                "rows/s",
                "per server",
                "paper",
                "x paper",
                "p50 ms",
                "p99 ms",
                "x ceiling",
            ]
            .map(str::to_owned)
            .to_vec(),
        ];
        for m in &self.results {
            let d = self.derive(m);
            let l = m
                .phase
                .kinds
                .values()
                .next()
                .and_then(|k| k.latencies.summary());
            let ms = |us: Option<u64>| {
                us.map_or("-".to_owned(), |u| format!("{:.2}", u as f64 / 1000.0))
            };
            rows.push(vec![
                m.benchmark.name().to_owned(),
                thousands(m.phase.ops() as f64),
                m.phase.failed().to_string(),
                thousands(d.rows_per_sec),
                thousands(d.per_server),
                thousands(m.benchmark.paper_single_server()),
                format!("{:.2}x", d.vs_paper),
                ms(l.map(|l| l.p50_us)),
                ms(l.map(|l| l.p99_us)),
                format!("{:.3}x {}", d.vs_ceiling, d.ceiling_name),
            ]);
        }
        out.push_str(&render(&rows, |c| c == 0 || c == 9));
        out.push('\n');
        for note in &self.notes {
            out.push_str(&format!("note: {note}\n"));
        }
        out
    }

    /// The document of `--output json`.
    pub(super) fn to_json(&self) -> serde_json::Value {
        let results: Vec<serde_json::Value> = self
            .results
            .iter()
            .map(|m| {
                let d = self.derive(m);
                let l = m
                    .phase
                    .kinds
                    .values()
                    .next()
                    .and_then(|k| k.latencies.summary());
                json!({
                    "benchmark": m.benchmark.name(),
                    "operations": m.phase.ops(),
                    "failed": m.phase.failed(),
                    "rows": m.phase.moved().rows,
                    "runtime_ms": m.phase.elapsed.as_secs_f64() * 1000.0,
                    "rows_per_sec": d.rows_per_sec,
                    "mb_per_sec": d.mb_per_sec,
                    "per_server_rows_per_sec": d.per_server,
                    "paper_single_server": m.benchmark.paper_single_server(),
                    "ratio_to_paper": d.vs_paper,
                    "ratio_to_ceiling": d.vs_ceiling,
                    "ceiling": d.ceiling_name,
                    "average_latency_us": l.map(|l| l.mean_us),
                    "p50_latency_us": l.map(|l| l.p50_us),
                    "p99_latency_us": l.map(|l| l.p99_us),
                    "p999_latency_us": l.map(|l| l.p999_us),
                })
            })
            .collect();
        json!({
            "benchmark": "paper",
            "rows": self.rows,
            "mem_rows": self.mem_rows,
            "concurrency": self.concurrency,
            "tablet_servers": self.tablet_servers,
            "results": results,
            "ceilings": self.ceilings.to_json(),
            "notes": self.notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::bench::ceiling::{CeilingConfig, Rates};
    use crate::bench::stats::{Latencies, Timeline};
    use crate::bench::ycsb::driver::{KindStats, Moved};

    fn phase(name: &'static str, ops: u64, rows: u64, secs: u64) -> Phase {
        let mut latencies = Latencies::new();
        for _ in 0..ops {
            latencies.record(Duration::from_micros(1500));
        }
        let mut kinds = BTreeMap::new();
        kinds.insert(
            name,
            KindStats {
                latencies,
                failed: 0,
                first_error: None,
                moved: Moved {
                    rows,
                    bytes: rows * 1000,
                },
            },
        );
        Phase {
            kinds,
            timeline: Timeline::new(),
            elapsed: Duration::from_secs(secs),
        }
    }

    fn sample() -> Report {
        Report {
            rows: 1000,
            mem_rows: 100,
            concurrency: 4,
            tablet_servers: 2,
            results: vec![
                Measured {
                    benchmark: Benchmark::RandomWrite,
                    phase: phase("random writes", 17_700, 17_700, 1),
                },
                Measured {
                    benchmark: Benchmark::Scan,
                    phase: phase("scans", 10, 1000, 1),
                },
            ],
            ceilings: Ceilings {
                config: CeilingConfig {
                    payload_bytes: 1000,
                    concurrency: 4,
                    duration: Duration::from_secs(1),
                },
                separate: Rates {
                    echo_calls_per_sec: 35_400.0,
                    stream_mb_per_sec: 10.0,
                },
                in_process: Rates {
                    echo_calls_per_sec: 50_000.0,
                    stream_mb_per_sec: 20.0,
                },
                measurements: 1,
            },
            notes: vec![],
        }
    }

    #[test]
    fn per_server_rates_beside_the_paper_and_the_ceiling() {
        let r = sample();
        let d = r.derive(&r.results[0]);
        assert_eq!(d.per_server, 8850.0);
        assert_eq!(d.vs_paper, 1.0);
        assert_eq!(d.vs_ceiling, 0.5);
        let s = r.derive(&r.results[1]);
        assert_eq!(s.rows_per_sec, 1000.0);
        assert_eq!(s.mb_per_sec, 1.0);
        assert_eq!(s.vs_ceiling, 0.1);
        let table = r.to_table();
        assert!(
            table.contains(
                "ceilings: bare tonic echo 35,400 calls/s, server streaming 10.0 MB/s in a \
                 separate process (in this process: 50,000 calls/s, 20.0 MB/s), 1000 B x 4 in \
                 flight; ratios are to the separate-process server, the cluster's layout"
            ),
            "{table}"
        );
        let line = table
            .lines()
            .find(|l| l.starts_with("random writes"))
            .unwrap();
        for cell in ["17,700", "8,850", "1.00x", "1.50", "0.500x echo"] {
            assert!(line.contains(cell), "{cell} in {line}");
        }
        let line = table.lines().find(|l| l.starts_with("scans")).unwrap();
        assert!(
            line.contains("15,385") && line.contains("0.100x streaming"),
            "{line}"
        );
        let doc = r.to_json();
        assert_eq!(doc["results"][0]["paper_single_server"], 8850.0);
        assert_eq!(doc["results"][1]["ratio_to_ceiling"], 0.1);
        assert_eq!(doc["ceilings"]["stream_mb_per_sec"], 10.0);
        assert_eq!(doc["ceilings"]["stream_in_process_mb_per_sec"], 20.0);
    }
}
