//! Metrics shared by every server role: a lock-free latency histogram (`histogram`) and the
//! Prometheus text exposition format (`text`), a pure writer. Each role gathers its own values
//! and serves them over plain HTTP.

pub mod histogram;
pub mod text;

pub use histogram::{Histogram, HistogramSnapshot, LATENCY_BUCKETS_SECONDS};
pub use text::{CONTENT_TYPE, Exposition, Kind};
