//! The benchmark's result: ops/s of each workload for Tabula, fjall and (for fillsync) the raw
//! fdatasync loop, the ratio each target is stated in, and its rendering as a table or JSON.
//! Pure: no I/O, no clocks.

use serde_json::json;

use crate::bench::table::{render, thousands};

/// The workloads, in the order they run and print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Workload {
    FillSeq,
    FillRandom,
    ReadRandom,
    ReadSeq,
    Scan,
    FillSync,
}

/// What a workload's Tabula number is divided by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Baseline {
    Fjall,
    RawFdatasync,
}

impl Workload {
    /// Every workload, in run order.
    #[cfg(test)]
    pub(crate) const ALL: [Workload; 6] = [
        Workload::FillSeq,
        Workload::FillRandom,
        Workload::ReadRandom,
        Workload::ReadSeq,
        Workload::Scan,
        Workload::FillSync,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Workload::FillSeq => "fillseq",
            Workload::FillRandom => "fillrandom",
            Workload::ReadRandom => "readrandom",
            Workload::ReadSeq => "readseq",
            Workload::Scan => "scan",
            Workload::FillSync => "fillsync",
        }
    }

    pub(crate) fn baseline(self) -> Baseline {
        match self {
            Workload::FillSync => Baseline::RawFdatasync,
            _ => Baseline::Fjall,
        }
    }

    /// The ratio Tabula must reach against its baseline, if the workload has a target.
    pub(crate) fn target(self) -> Option<f64> {
        match self {
            Workload::FillRandom | Workload::ReadRandom => Some(0.7),
            Workload::ReadSeq => Some(0.5),
            Workload::FillSync => Some(0.75),
            Workload::FillSeq | Workload::Scan => None,
        }
    }
}

impl Baseline {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Baseline::Fjall => "fjall",
            Baseline::RawFdatasync => "raw fdatasync",
        }
    }
}

/// One workload's numbers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WorkloadResult {
    pub(crate) workload: Workload,
    /// Operations each store performed (rows for readseq, scans for scan).
    pub(crate) ops: u64,
    pub(crate) tabula_ops_per_sec: f64,
    pub(crate) fjall_ops_per_sec: f64,
    /// The single-writer append + fdatasync loop (fillsync only).
    pub(crate) raw_ops_per_sec: Option<f64>,
}

impl WorkloadResult {
    /// Tabula's ops/s over its baseline's, or `None` if the baseline was not measured.
    pub(crate) fn ratio(&self) -> Option<f64> {
        let base = match self.workload.baseline() {
            Baseline::Fjall => Some(self.fjall_ops_per_sec),
            Baseline::RawFdatasync => self.raw_ops_per_sec,
        }?;
        (base > 0.0).then(|| self.tabula_ops_per_sec / base)
    }

    /// Whether the target is met, if the workload has one.
    pub(crate) fn met(&self) -> Option<bool> {
        let target = self.workload.target()?;
        Some(self.ratio().is_some_and(|r| r >= target))
    }
}

/// Everything one run measured, and how.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Report {
    pub(crate) records: u64,
    pub(crate) sync_records: u64,
    pub(crate) threads: usize,
    /// Rounds run; every ops/s is the median over them.
    pub(crate) rounds: usize,
    pub(crate) dir: String,
    pub(crate) filesystem: String,
    pub(crate) results: Vec<WorkloadResult>,
    /// fdatasyncs Tabula's commit log made during fillsync (fewer than writes: group commit).
    pub(crate) tabula_fillsync_fdatasyncs: u64,
    /// How each store was set up, in plain words.
    pub(crate) notes: Vec<String>,
}

impl Report {
    /// The aligned table printed by `--output table`, with the notes below it.
    pub(crate) fn to_table(&self) -> String {
        let header = [
            "workload",
            "ops",
            "tabula ops/s",
            "fjall ops/s",
            "raw ops/s",
            "ratio",
            "target",
            "met",
        ];
        let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
        for r in &self.results {
            let base = r.workload.baseline().name();
            rows.push(vec![
                r.workload.name().to_owned(),
                thousands(r.ops as f64),
                thousands(r.tabula_ops_per_sec),
                thousands(r.fjall_ops_per_sec),
                r.raw_ops_per_sec.map_or_else(|| "-".to_owned(), thousands),
                r.ratio()
                    .map_or_else(|| "-".to_owned(), |x| format!("{x:.2}x {base}")),
                r.workload
                    .target()
                    .map_or_else(|| "-".to_owned(), |t| format!(">= {t:.2}x {base}")),
                match r.met() {
                    None => "-".to_owned(),
                    Some(true) => "yes".to_owned(),
                    Some(false) => "NO".to_owned(),
                },
            ]);
        }
        let mut out = format!(
            "engine bench: {} records ({} for fillsync, {} writer threads), {} in {} ({})\n\n",
            thousands(self.records as f64),
            thousands(self.sync_records as f64),
            self.threads,
            if self.rounds > 1 {
                format!("median of {} rounds", self.rounds)
            } else {
                "1 round".to_owned()
            },
            self.dir,
            self.filesystem,
        );
        // The workload name and the ratio columns read left to right; numbers align right.
        out.push_str(&render(&rows, |c| c == 0 || c >= 5));
        out.push('\n');
        for note in &self.notes {
            out.push_str("note: ");
            out.push_str(note);
            out.push('\n');
        }
        out
    }

    /// The document printed by `--output json`.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let results: Vec<serde_json::Value> = self
            .results
            .iter()
            .map(|r| {
                json!({
                    "workload": r.workload.name(),
                    "ops": r.ops,
                    "tabula_ops_per_sec": r.tabula_ops_per_sec,
                    "fjall_ops_per_sec": r.fjall_ops_per_sec,
                    "raw_fdatasync_ops_per_sec": r.raw_ops_per_sec,
                    "ratio": r.ratio(),
                    "ratio_baseline": r.workload.baseline().name(),
                    "target_ratio": r.workload.target(),
                    "target_met": r.met(),
                })
            })
            .collect();
        json!({
            "records": self.records,
            "sync_records": self.sync_records,
            "threads": self.threads,
            "rounds": self.rounds,
            "dir": self.dir,
            "filesystem": self.filesystem,
            "results": results,
            "tabula_fillsync_fdatasyncs": self.tabula_fillsync_fdatasyncs,
            "notes": self.notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(workload: Workload, tabula: f64, fjall: f64, raw: Option<f64>) -> WorkloadResult {
        WorkloadResult {
            workload,
            ops: 1000,
            tabula_ops_per_sec: tabula,
            fjall_ops_per_sec: fjall,
            raw_ops_per_sec: raw,
        }
    }

    fn sample() -> Report {
        Report {
            records: 1_000_000,
            sync_records: 20_000,
            threads: 16,
            rounds: 3,
            dir: "/data/x".to_owned(),
            filesystem: "ext4".to_owned(),
            results: vec![
                result(Workload::FillRandom, 60.0, 100.0, None),
                result(Workload::Scan, 50.0, 100.0, None),
                result(Workload::FillSync, 900.0, 300.0, Some(1000.0)),
            ],
            tabula_fillsync_fdatasyncs: 25,
            notes: vec!["tabula: sync=false".to_owned()],
        }
    }

    #[test]
    fn ratios_use_each_workloads_baseline() {
        let r = sample();
        assert_eq!(r.results[0].ratio(), Some(0.6));
        assert_eq!(r.results[0].met(), Some(false));
        assert_eq!(r.results[1].met(), None);
        assert_eq!(r.results[2].ratio(), Some(0.9));
        assert_eq!(r.results[2].met(), Some(true));
        let no_raw = result(Workload::FillSync, 1.0, 1.0, None);
        assert_eq!((no_raw.ratio(), no_raw.met()), (None, Some(false)));
    }

    #[test]
    fn table_has_a_row_per_workload_and_the_notes() {
        let table = sample().to_table();
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].contains(
            "1,000,000 records (20,000 for fillsync, 16 writer threads), median of 3 rounds"
        ));
        assert!(lines[2].starts_with("workload"));
        assert!(lines[3].starts_with("fillrandom"));
        let fill: Vec<&str> = lines[3]
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        assert_eq!(
            fill,
            [
                "fillrandom",
                "1,000",
                "60",
                "100",
                "-",
                "0.60x fjall",
                ">= 0.70x fjall",
                "NO"
            ]
        );
        assert!(lines[5].contains("0.90x raw fdatasync  >= 0.75x raw fdatasync  yes"));
        assert_eq!(lines.last(), Some(&"note: tabula: sync=false"));
    }

    #[test]
    fn json_carries_every_number() {
        let doc = sample().to_json();
        assert_eq!(doc["records"], 1_000_000);
        assert_eq!(doc["results"][0]["workload"], "fillrandom");
        assert_eq!(doc["results"][0]["target_ratio"], 0.7);
        assert_eq!(doc["results"][1]["target_met"], serde_json::Value::Null);
        assert_eq!(doc["results"][2]["raw_fdatasync_ops_per_sec"], 1000.0);
        assert_eq!(doc["results"][2]["ratio_baseline"], "raw fdatasync");
        assert_eq!(doc["tabula_fillsync_fdatasyncs"], 25);
    }
}
