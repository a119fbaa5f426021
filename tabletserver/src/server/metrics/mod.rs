//! The tablet server's metrics: a tower layer on the gRPC server counts requests and their
//! latencies per RPC (`layer`, into `requests`), a scrape gathers those and the engine's
//! counters and gauges at scrape time (`scrape`) into the Prometheus text format (`tabula_common::metrics::text`), and
//! a plain-HTTP endpoint serves `/metrics` and `/healthz` (`http`) when
//! `TabletServerConfig::metrics` names an address.
//!
//! Reading order: `requests`, `layer`, `scrape`, `http`.

pub mod http;
pub mod layer;
pub mod requests;
pub mod scrape;

pub use layer::{RequestMetricsLayer, RequestMetricsService};
pub use requests::RequestMetrics;
pub use scrape::Metrics;
