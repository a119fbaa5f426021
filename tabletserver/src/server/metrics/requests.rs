//! Per-RPC request counters and latencies, keyed by the gRPC path. Labels stay bounded: the
//! `rpc` label is one of the known methods of `TabletService` and `TabletAdmin` (anything else,
//! such as a method this server does not have, counts as `unknown`), and `code` is one of the
//! 17 gRPC status codes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tonic::Code;

use crate::engine::{Histogram, HistogramSnapshot};

/// The gRPC services whose requests are counted, by their full proto name.
const SERVICES: [&str; 2] = [
    "tabula.tablet.v1.TabletService",
    "tabula.tablet.v1.TabletAdmin",
];

/// Every RPC of the services above (method names are unique across them), then `unknown`.
pub(crate) const RPCS: [&str; 12] = [
    "ReadRows",
    "MutateRow",
    "MutateRows",
    "CheckAndMutateRow",
    "ReadModifyWriteRow",
    "SampleRowKeys",
    "LoadTablet",
    "UnloadTablet",
    "SplitTablet",
    "UpdateSchema",
    "ListTablets",
    "unknown",
];

/// Index of `unknown` in `RPCS`.
const UNKNOWN: usize = RPCS.len() - 1;

/// The 17 gRPC codes by number, as they are named in the `code` label.
const CODES: [&str; 17] = [
    "OK",
    "Cancelled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// Which RPC a request is, as an index into `RPCS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rpc(usize);

impl Rpc {
    /// The RPC a gRPC request path (`/package.Service/Method`) names; `unknown` if it is not one
    /// of this server's.
    pub(crate) fn from_path(path: &str) -> Rpc {
        let known = path
            .strip_prefix('/')
            .and_then(|p| p.split_once('/'))
            .filter(|(service, _)| SERVICES.contains(service))
            .and_then(|(_, method)| RPCS[..UNKNOWN].iter().position(|m| *m == method));
        Rpc(known.unwrap_or(UNKNOWN))
    }

    /// The `rpc` label.
    #[cfg(test)]
    pub(crate) fn name(self) -> &'static str {
        RPCS.get(self.0).copied().unwrap_or("unknown")
    }
}

/// One RPC's counters.
#[derive(Debug)]
struct RpcStats {
    by_code: [AtomicU64; CODES.len()],
    latency: Histogram,
}

/// Requests answered and their latencies, per RPC; shared by the tower layer that records
/// them and the scrape that reads them.
#[derive(Debug)]
pub struct RequestMetrics {
    rpcs: Vec<RpcStats>,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        RequestMetrics {
            rpcs: RPCS
                .iter()
                .map(|_| RpcStats {
                    by_code: std::array::from_fn(|_| AtomicU64::new(0)),
                    latency: Histogram::latency(),
                })
                .collect(),
        }
    }
}

/// One `(rpc, code)` counter read at scrape time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestCount {
    pub(crate) rpc: &'static str,
    pub(crate) code: &'static str,
    pub(crate) count: u64,
}

impl RequestMetrics {
    /// Counts one request to `rpc` answered with `code` after `took`.
    pub(crate) fn record(&self, rpc: Rpc, code: Code, took: Duration) {
        let Some(stats) = self.rpcs.get(rpc.0) else {
            return;
        };
        let code = usize::try_from(code as i32).unwrap_or(Code::Unknown as usize);
        let counter = stats
            .by_code
            .get(code)
            .or_else(|| stats.by_code.get(Code::Unknown as usize));
        if let Some(c) = counter {
            c.fetch_add(1, Ordering::Relaxed);
        }
        stats.latency.observe(took);
    }

    /// Every non-zero `(rpc, code)` counter.
    pub(crate) fn counts(&self) -> Vec<RequestCount> {
        let mut out = Vec::new();
        for (rpc, stats) in RPCS.iter().zip(&self.rpcs) {
            for (code, counter) in CODES.iter().zip(&stats.by_code) {
                let count = counter.load(Ordering::Relaxed);
                if count > 0 {
                    out.push(RequestCount { rpc, code, count });
                }
            }
        }
        out
    }

    /// The latency histogram of every RPC that has had a request.
    pub(crate) fn latencies(&self) -> Vec<(&'static str, HistogramSnapshot)> {
        RPCS.iter()
            .zip(&self.rpcs)
            .map(|(rpc, stats)| (*rpc, stats.latency.snapshot()))
            .filter(|(_, h)| h.count > 0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn paths_map_to_bounded_rpc_names() {
        let name = |p: &str| Rpc::from_path(p).name();
        assert_eq!(name("/tabula.tablet.v1.TabletService/ReadRows"), "ReadRows");
        assert_eq!(
            name("/tabula.tablet.v1.TabletService/MutateRow"),
            "MutateRow"
        );
        assert_eq!(
            name("/tabula.tablet.v1.TabletAdmin/ListTablets"),
            "ListTablets"
        );
        assert_eq!(name("/tabula.tablet.v1.TabletAdmin/ReadRows"), "ReadRows");
        assert_eq!(name("/tabula.tablet.v1.TabletService/NoSuchRpc"), "unknown");
        assert_eq!(name("/other.Service/ReadRows"), "unknown");
        assert_eq!(name("/"), "unknown");
        assert_eq!(name(""), "unknown");
    }

    #[test]
    fn the_service_names_are_the_generated_ones() {
        use tabula_proto::tabula::tablet::v1::{tablet_admin_server, tablet_service_server};
        assert_eq!(
            SERVICES,
            [
                tablet_service_server::SERVICE_NAME,
                tablet_admin_server::SERVICE_NAME
            ]
        );
    }

    #[test]
    fn the_code_table_follows_the_grpc_numbers() {
        assert_eq!(CODES[Code::Ok as usize], "OK");
        assert_eq!(CODES[Code::InvalidArgument as usize], "InvalidArgument");
        assert_eq!(CODES[Code::Unavailable as usize], "Unavailable");
        assert_eq!(CODES[Code::Unauthenticated as usize], "Unauthenticated");
    }

    #[test]
    fn requests_are_counted_by_rpc_and_code() {
        let m = RequestMetrics::default();
        let read = Rpc::from_path("/tabula.tablet.v1.TabletService/ReadRows");
        let list = Rpc::from_path("/tabula.tablet.v1.TabletAdmin/ListTablets");
        m.record(read, Code::Ok, Duration::from_millis(1));
        m.record(read, Code::Ok, Duration::from_millis(2));
        m.record(read, Code::Unavailable, Duration::from_millis(3));
        m.record(list, Code::Ok, Duration::from_millis(4));
        let counts: Vec<_> = m
            .counts()
            .into_iter()
            .map(|c| (c.rpc, c.code, c.count))
            .collect();
        assert_eq!(
            counts,
            vec![
                ("ReadRows", "OK", 2),
                ("ReadRows", "Unavailable", 1),
                ("ListTablets", "OK", 1)
            ]
        );
        let latencies = m.latencies();
        assert_eq!(latencies.len(), 2);
        assert_eq!((latencies[0].0, latencies[0].1.count), ("ReadRows", 3));
        assert!((latencies[0].1.sum_seconds - 0.006).abs() < 1e-9);
    }
}
