//! The Cloud Bigtable API path's cost against the native path (issue 9 asks for it), from the
//! run phases of the two paths, which ran the same operations: throughput as a ratio
//! `bigtable-api / native` (below 1: the API path does less), overall and per operation
//! kind, and the p50 and p99 latencies as the same ratio (above 1: the API path is slower).
//! Pure.

use serde_json::json;

use super::driver::Phase;

/// One operation kind's ratios.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct KindRatios {
    pub(super) name: &'static str,
    pub(super) throughput: f64,
    /// `None` when either side has no successful operation of the kind.
    pub(super) p50_latency: Option<f64>,
    pub(super) p99_latency: Option<f64>,
}

/// The API path against the native path.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Comparison {
    /// Overall operations per second, `bigtable-api / native`.
    pub(super) throughput: f64,
    /// Per kind present in either run, in name order.
    pub(super) kinds: Vec<KindRatios>,
}

/// `api / native`, 0 when `native` is 0.
fn ratio(api: f64, native: f64) -> f64 {
    if native > 0.0 { api / native } else { 0.0 }
}

/// Compares the API path's run phase with the native one's.
pub(super) fn compare(native: &Phase, api: &Phase) -> Comparison {
    let per_sec = |phase: &Phase, ops: u64| ops as f64 / phase.elapsed.as_secs_f64().max(1e-9);
    let mut names: Vec<&'static str> = native
        .kinds
        .keys()
        .chain(api.kinds.keys())
        .copied()
        .collect();
    names.sort_unstable();
    names.dedup();
    let kinds = names
        .into_iter()
        .map(|name| {
            let n = native.kinds.get(name);
            let a = api.kinds.get(name);
            let ops = |k: Option<&super::driver::KindStats>| k.map_or(0, |k| k.ops());
            let summary =
                |k: Option<&super::driver::KindStats>| k.and_then(|k| k.latencies.summary());
            let (ns, as_) = (summary(n), summary(a));
            let latency = |pick: fn(&crate::bench::stats::LatencySummary) -> u64| {
                Some(ratio(pick(as_.as_ref()?) as f64, pick(ns.as_ref()?) as f64))
            };
            KindRatios {
                name,
                throughput: ratio(per_sec(api, ops(a)), per_sec(native, ops(n))),
                p50_latency: latency(|l| l.p50_us),
                p99_latency: latency(|l| l.p99_us),
            }
        })
        .collect();
    Comparison {
        throughput: ratio(api.ops_per_sec(), native.ops_per_sec()),
        kinds,
    }
}

impl Comparison {
    /// YCSB-style lines, section `[COMPARISON]`.
    pub(super) fn to_text(&self) -> String {
        let mut out = format!(
            "[COMPARISON], Throughput(bigtable-api/native), {:.3}\n",
            self.throughput
        );
        for k in &self.kinds {
            out.push_str(&format!(
                "[COMPARISON], {} Throughput(bigtable-api/native), {:.3}\n",
                k.name, k.throughput
            ));
            for (label, value) in [("50th", k.p50_latency), ("99th", k.p99_latency)] {
                if let Some(v) = value {
                    out.push_str(&format!(
                        "[COMPARISON], {} {label}PercentileLatency(bigtable-api/native), {v:.3}\n",
                        k.name
                    ));
                }
            }
        }
        out
    }

    /// The `comparison` object of `--output json`.
    pub(super) fn to_json(&self) -> serde_json::Value {
        let kinds: serde_json::Map<String, serde_json::Value> = self
            .kinds
            .iter()
            .map(|k| {
                (
                    k.name.to_owned(),
                    json!({
                        "throughput_ratio": k.throughput,
                        "p50_latency_ratio": k.p50_latency,
                        "p99_latency_ratio": k.p99_latency,
                    }),
                )
            })
            .collect();
        json!({
            "baseline": "native",
            "path": "bigtable-api",
            "throughput_ratio": self.throughput,
            "operations": kinds,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::bench::stats::{Latencies, Timeline};
    use crate::bench::ycsb::driver::{KindStats, Moved};

    fn phase(secs: u64, kinds: &[(&'static str, &[u64])]) -> Phase {
        let mut map = BTreeMap::new();
        for (name, us) in kinds {
            let mut latencies = Latencies::new();
            for &u in *us {
                latencies.record(Duration::from_micros(u));
            }
            map.insert(
                *name,
                KindStats {
                    latencies,
                    failed: 0,
                    first_error: None,
                    moved: Moved::default(),
                },
            );
        }
        Phase {
            kinds: map,
            timeline: Timeline::new(),
            elapsed: Duration::from_secs(secs),
        }
    }

    #[test]
    fn ratios_are_api_over_native() {
        let native = phase(
            1,
            &[("READ", &[100, 100, 100, 100]), ("UPDATE", &[200, 200])],
        );
        let api = phase(2, &[("READ", &[300, 300, 300, 300]), ("SCAN", &[1000])]);
        let c = compare(&native, &api);
        // 6 ops/s native, 2.5 ops/s through the API.
        assert!((c.throughput - 2.5 / 6.0).abs() < 1e-9, "{c:?}");
        assert_eq!(
            c.kinds.iter().map(|k| k.name).collect::<Vec<_>>(),
            ["READ", "SCAN", "UPDATE"]
        );
        let read = &c.kinds[0];
        assert!((read.throughput - 0.5).abs() < 1e-9);
        let p50 = read.p50_latency.unwrap();
        assert!((p50 - 3.0).abs() < 0.01, "{p50}");
        assert_eq!(c.kinds[1].p50_latency, None, "SCAN only ran on one side");
        assert_eq!(c.kinds[1].throughput, 0.0, "no native SCAN to compare with");
        assert_eq!(c.kinds[2].throughput, 0.0);

        let text = c.to_text();
        assert!(
            text.contains("[COMPARISON], Throughput(bigtable-api/native), 0.417\n"),
            "{text}"
        );
        assert!(
            text.contains("[COMPARISON], READ 50thPercentileLatency(bigtable-api/native), 3.0"),
            "{text}"
        );
        assert!(!text.contains("SCAN 50th"), "{text}");
        let doc = c.to_json();
        assert_eq!(doc["operations"]["READ"]["throughput_ratio"], 0.5);
        assert!(doc["operations"]["SCAN"]["p50_latency_ratio"].is_null());
    }
}
