//! The benchmark's result: each workload's rate and latency, its ratio to the baseline measured
//! in the same run (writes against raw fdatasyncs, KeepAlives against `Status`), the failover
//! times, and the rendering as a table or JSON. Pure: no I/O, no clocks.

use std::time::Duration;

use serde_json::json;

use super::failover::Failover;
use super::workloads::Measured;
use crate::bench::stats::{median, percentile};
use crate::bench::table::{render, thousands};

/// One workload's numbers (medians over rounds).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Throughput {
    /// Concurrent clients, each on its own connection.
    pub(super) clients: usize,
    /// Successful calls.
    pub(super) ops: u64,
    pub(super) ops_per_sec: f64,
    /// Failed or timed-out calls (summed over rounds).
    pub(super) failed: u64,
    pub(super) p50: Option<Duration>,
    pub(super) p99: Option<Duration>,
}

impl Throughput {
    /// The numbers of one phase run by `clients` clients.
    pub(super) fn of(clients: usize, m: &Measured) -> Throughput {
        Throughput {
            clients,
            ops: m.ops,
            ops_per_sec: m.ops_per_sec(),
            failed: m.errors,
            p50: percentile(&m.latencies, 50.0),
            p99: percentile(&m.latencies, 99.0),
        }
    }

    /// The median of each number over `rounds` (failures summed). `None` if there are none.
    pub(super) fn median_of(rounds: &[Throughput]) -> Option<Throughput> {
        let first = rounds.first()?;
        let med = |f: &dyn Fn(&Throughput) -> f64| median(rounds.iter().map(f).collect());
        let med_ms = |f: &dyn Fn(&Throughput) -> Option<Duration>| {
            let ms: Vec<f64> = rounds
                .iter()
                .filter_map(f)
                .map(|d| d.as_secs_f64())
                .collect();
            (!ms.is_empty()).then(|| Duration::from_secs_f64(median(ms)))
        };
        Some(Throughput {
            clients: first.clients,
            ops: med(&|t| t.ops as f64).round() as u64,
            ops_per_sec: med(&|t| t.ops_per_sec),
            failed: rounds.iter().map(|t| t.failed).sum(),
            p50: med_ms(&|t| t.p50),
            p99: med_ms(&|t| t.p99),
        })
    }
}

/// Everything one run measured, and how.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Report {
    /// Nodes in the cell.
    pub(super) nodes: u64,
    /// Seconds each timed phase ran.
    pub(super) duration_secs: u64,
    /// Rounds of the timed phases; their numbers are medians over the rounds.
    pub(super) rounds: usize,
    pub(super) dir: String,
    pub(super) filesystem: String,
    /// The single-thread append + fdatasync loop (median over rounds).
    pub(super) fdatasyncs_per_sec: f64,
    /// `Set` from one client.
    pub(super) set_single: Throughput,
    /// `Set` from `--clients` clients.
    pub(super) set_concurrent: Throughput,
    pub(super) keepalive: Throughput,
    /// The `Status` loop KeepAlives are compared with.
    pub(super) status: Throughput,
    /// One entry per kill, in order.
    pub(super) failovers: Vec<Failover>,
    /// How things were set up, in plain words.
    pub(super) notes: Vec<String>,
}

/// One line of the rate table.
struct Row<'a> {
    workload: &'static str,
    numbers: &'a Throughput,
    /// The ratio and what it is against; `None` for a baseline.
    ratio: Option<(f64, &'static str)>,
}

/// Summary of the failover times, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct FailoverSummary {
    pub(super) median_ms: f64,
    pub(super) min_ms: f64,
    pub(super) max_ms: f64,
}

impl Report {
    fn rows(&self) -> [Row<'_>; 4] {
        let against =
            |t: &Throughput, base: f64, name| (base > 0.0).then(|| (t.ops_per_sec / base, name));
        [
            Row {
                workload: "set",
                numbers: &self.set_single,
                ratio: against(&self.set_single, self.fdatasyncs_per_sec, "fdatasync"),
            },
            Row {
                workload: "set",
                numbers: &self.set_concurrent,
                ratio: against(&self.set_concurrent, self.fdatasyncs_per_sec, "fdatasync"),
            },
            Row {
                workload: "keepalive",
                numbers: &self.keepalive,
                ratio: against(&self.keepalive, self.status.ops_per_sec, "status"),
            },
            Row {
                workload: "status",
                numbers: &self.status,
                ratio: None,
            },
        ]
    }

    /// Median, fastest and slowest failover (SIGKILL to a successful `Set`); `None` without
    /// kills.
    pub(super) fn failover_summary(&self) -> Option<FailoverSummary> {
        summarize(self.failovers.iter().map(|f| f.elapsed))
    }

    /// The same for the election (SIGKILL to a new leader seen); `None` if none was seen.
    pub(super) fn election_summary(&self) -> Option<FailoverSummary> {
        summarize(self.failovers.iter().filter_map(|f| f.elected))
    }

    /// The aligned tables printed by `--output table`, with the notes below them.
    pub(super) fn to_table(&self) -> String {
        let mut out = format!(
            "lock bench: {}-node cell on 127.0.0.1, {} s per phase, {} in {} ({})\n\n",
            self.nodes,
            self.duration_secs,
            if self.rounds > 1 {
                format!("median of {} rounds", self.rounds)
            } else {
                "1 round".to_owned()
            },
            self.dir,
            self.filesystem,
        );
        let header = [
            "workload", "clients", "ops", "ops/s", "p50 ms", "p99 ms", "failed", "ratio",
        ];
        let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
        rows.push(vec![
            "fdatasync".to_owned(),
            "1".to_owned(),
            "-".to_owned(),
            thousands(self.fdatasyncs_per_sec),
            "-".to_owned(),
            "-".to_owned(),
            "-".to_owned(),
            "(baseline)".to_owned(),
        ]);
        for row in self.rows() {
            let t = row.numbers;
            rows.push(vec![
                row.workload.to_owned(),
                t.clients.to_string(),
                thousands(t.ops as f64),
                thousands(t.ops_per_sec),
                millis(t.p50),
                millis(t.p99),
                t.failed.to_string(),
                row.ratio.map_or_else(
                    || "(baseline)".to_owned(),
                    |(x, base)| format!("{x:.2}x {base}"),
                ),
            ]);
        }
        out.push_str(&render(&rows, |c| c == 0 || c == 7));
        if let Some(set_ok) = self.failover_summary() {
            let mut rows = vec![
                ["failover", "kills", "median ms", "min ms", "max ms"]
                    .map(str::to_owned)
                    .to_vec(),
            ];
            let seen = self
                .failovers
                .iter()
                .filter(|f| f.elected.is_some())
                .count();
            let lines = [
                (
                    "leader SIGKILL -> new leader",
                    seen,
                    self.election_summary(),
                ),
                (
                    "leader SIGKILL -> Set ok",
                    self.failovers.len(),
                    Some(set_ok),
                ),
            ];
            for (what, kills, summary) in lines {
                let Some(s) = summary else { continue };
                rows.push(vec![
                    what.to_owned(),
                    kills.to_string(),
                    thousands(s.median_ms),
                    thousands(s.min_ms),
                    thousands(s.max_ms),
                ]);
            }
            out.push('\n');
            out.push_str(&render(&rows, |c| c == 0));
        }
        out.push('\n');
        for note in &self.notes {
            out.push_str("note: ");
            out.push_str(note);
            out.push('\n');
        }
        out
    }

    /// The document printed by `--output json`.
    pub(super) fn to_json(&self) -> serde_json::Value {
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
        let results: Vec<serde_json::Value> = self
            .rows()
            .iter()
            .map(|r| {
                let t = r.numbers;
                json!({
                    "workload": r.workload,
                    "clients": t.clients,
                    "ops": t.ops,
                    "ops_per_sec": t.ops_per_sec,
                    "failed": t.failed,
                    "p50_ms": ms(t.p50),
                    "p99_ms": ms(t.p99),
                    "ratio": r.ratio.map(|(x, _)| x),
                    "ratio_baseline": r.ratio.map(|(_, base)| base),
                })
            })
            .collect();
        let summary = self.failover_summary();
        let election = self.election_summary();
        let each: Vec<serde_json::Value> = self
            .failovers
            .iter()
            .map(|f| {
                json!({
                    "killed_node": f.killed,
                    "killed_term": f.old_term,
                    "first_set_node": f.new_leader,
                    "failover_ms": f.elapsed.as_secs_f64() * 1000.0,
                    "new_leader_ms": f.elected.map(|d| d.as_secs_f64() * 1000.0),
                    "set_attempts": f.attempts,
                    "catch_up_ms": f.catch_up.as_secs_f64() * 1000.0,
                })
            })
            .collect();
        json!({
            "nodes": self.nodes,
            "duration_secs": self.duration_secs,
            "rounds": self.rounds,
            "dir": self.dir,
            "filesystem": self.filesystem,
            "fdatasync_per_sec": self.fdatasyncs_per_sec,
            "results": results,
            "failover": {
                "kills": self.failovers.len(),
                "median_ms": summary.map(|s| s.median_ms),
                "min_ms": summary.map(|s| s.min_ms),
                "max_ms": summary.map(|s| s.max_ms),
                "new_leader_median_ms": election.map(|s| s.median_ms),
                "each": each,
            },
            "notes": self.notes,
        })
    }
}

/// Median, minimum and maximum of `times`, in milliseconds; `None` if there are none.
fn summarize(times: impl Iterator<Item = Duration>) -> Option<FailoverSummary> {
    let ms: Vec<f64> = times.map(|d| d.as_secs_f64() * 1000.0).collect();
    let min_ms = ms.iter().copied().reduce(f64::min)?;
    let max_ms = ms.iter().copied().reduce(f64::max)?;
    Some(FailoverSummary {
        median_ms: median(ms),
        min_ms,
        max_ms,
    })
}

/// A latency in milliseconds with two decimals, or `-`.
fn millis(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".to_owned(),
        |d| format!("{:.2}", d.as_secs_f64() * 1000.0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn throughput(clients: usize, ops_per_sec: f64) -> Throughput {
        Throughput {
            clients,
            ops: (ops_per_sec * 5.0) as u64,
            ops_per_sec,
            failed: 0,
            p50: Some(ms(2)),
            p99: Some(Duration::from_micros(7_250)),
        }
    }

    fn failover(killed: u64, elapsed_ms: u64) -> Failover {
        Failover {
            killed,
            old_term: 1,
            new_leader: killed % 3 + 1,
            elapsed: ms(elapsed_ms),
            elected: (killed != 2).then(|| ms(elapsed_ms - 200)),
            attempts: 40,
            catch_up: ms(300),
        }
    }

    fn sample() -> Report {
        Report {
            nodes: 3,
            duration_secs: 5,
            rounds: 1,
            dir: "/data/x".to_owned(),
            filesystem: "ext4".to_owned(),
            fdatasyncs_per_sec: 1000.0,
            set_single: throughput(1, 400.0),
            set_concurrent: throughput(64, 12_000.0),
            keepalive: throughput(64, 30_000.0),
            status: throughput(64, 40_000.0),
            failovers: vec![failover(1, 1500), failover(2, 900), failover(3, 2100)],
            notes: vec!["three nodes".to_owned()],
        }
    }

    fn cells(line: &str) -> Vec<&str> {
        line.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect()
    }

    #[test]
    fn table_shows_rates_ratios_and_failover() {
        let table = sample().to_table();
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].contains("3-node cell on 127.0.0.1, 5 s per phase, 1 round"));
        assert_eq!(
            cells(lines[2]),
            [
                "workload", "clients", "ops", "ops/s", "p50 ms", "p99 ms", "failed", "ratio"
            ]
        );
        assert_eq!(
            cells(lines[3]),
            ["fdatasync", "1", "-", "1,000", "-", "-", "-", "(baseline)"]
        );
        assert_eq!(
            cells(lines[4]),
            [
                "set",
                "1",
                "2,000",
                "400",
                "2.00",
                "7.25",
                "0",
                "0.40x fdatasync"
            ]
        );
        assert_eq!(cells(lines[5])[7], "12.00x fdatasync");
        assert_eq!(cells(lines[6])[7], "0.75x status");
        assert_eq!(cells(lines[7])[7], "(baseline)");
        assert_eq!(
            cells(lines[10]),
            [
                "leader SIGKILL -> new leader",
                "2",
                "1,600",
                "1,300",
                "1,900"
            ]
        );
        assert_eq!(
            cells(lines[11]),
            ["leader SIGKILL -> Set ok", "3", "1,500", "900", "2,100"]
        );
        assert_eq!(lines.last(), Some(&"note: three nodes"));
    }

    #[test]
    fn without_kills_there_is_no_failover_table() {
        let report = Report {
            failovers: vec![],
            ..sample()
        };
        assert_eq!(report.failover_summary(), None);
        assert!(!report.to_table().contains("failover"));
        assert_eq!(
            report.to_json()["failover"]["median_ms"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn json_carries_every_number() {
        let doc = sample().to_json();
        assert_eq!(doc["fdatasync_per_sec"], 1000.0);
        assert_eq!(doc["results"][0]["workload"], "set");
        assert_eq!(doc["results"][0]["ratio"], 0.4);
        assert_eq!(doc["results"][0]["ratio_baseline"], "fdatasync");
        assert_eq!(doc["results"][1]["clients"], 64);
        assert_eq!(doc["results"][2]["ratio"], 0.75);
        assert_eq!(doc["results"][3]["ratio"], serde_json::Value::Null);
        assert_eq!(doc["results"][0]["p99_ms"], 7.25);
        assert_eq!(doc["failover"]["kills"], 3);
        assert_eq!(doc["failover"]["median_ms"], 1500.0);
        assert_eq!(doc["failover"]["min_ms"], 900.0);
        assert_eq!(doc["failover"]["each"][2]["killed_node"], 3);
        assert_eq!(doc["failover"]["each"][2]["first_set_node"], 1);
        assert_eq!(doc["failover"]["each"][0]["new_leader_ms"], 1300.0);
        assert_eq!(
            doc["failover"]["each"][1]["new_leader_ms"],
            serde_json::Value::Null
        );
        assert_eq!(doc["failover"]["new_leader_median_ms"], 1600.0);
    }

    #[test]
    fn rounds_combine_into_medians() {
        let mut a = throughput(64, 100.0);
        let b = throughput(64, 300.0);
        let mut c = throughput(64, 200.0);
        a.failed = 2;
        c.p99 = None;
        let t = Throughput::median_of(&[a, b, c]).unwrap();
        assert_eq!(t.ops_per_sec, 200.0);
        assert_eq!(t.ops, 1000);
        assert_eq!(t.failed, 2);
        assert_eq!(t.p99, Some(Duration::from_micros(7_250)));
        assert_eq!(Throughput::median_of(&[]), None);
    }

    #[test]
    fn throughput_of_a_phase_takes_percentiles() {
        let m = Measured {
            ops: 100,
            errors: 1,
            elapsed: Duration::from_secs(2),
            latencies: (1..=100).map(ms).collect(),
            first_error: None,
        };
        let t = Throughput::of(8, &m);
        assert_eq!((t.clients, t.ops, t.failed), (8, 100, 1));
        assert_eq!(t.ops_per_sec, 50.0);
        assert_eq!((t.p50, t.p99), (Some(ms(50)), Some(ms(99))));
    }
}
