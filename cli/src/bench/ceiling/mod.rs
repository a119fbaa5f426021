//! This machine's raw ceilings, measured in the same run as a cluster benchmark, so every
//! Tabula number can be printed as a ratio to what plain tonic does here and now: a bare unary
//! echo (calls/s at the benchmark's payload size and concurrency) and a bare server-streaming
//! transfer (MB/s in messages of the benchmark's row size). The loops are `echo` and `stream`.
//!
//! Each is measured against two echo servers on 127.0.0.1: one in a separate process
//! (`process`: a `tabula bench echo-server` child, measured first) and one in this process
//! (`server`, on the benchmark's own runtime). The ratios are to the separate process: that is
//! the cluster's layout, where every call crosses processes and pays their wake-ups; the
//! in-process numbers are printed beside them, as what tonic does without that crossing.
//!
//! Reads and writes are compared with echo calls/s (each is one unary round trip carrying
//! about one record), scans with streaming MB/s. On a shared machine one measurement can land
//! in a busy moment, so the suites measure before and after their run and keep the better of
//! each ([`Ceilings::best`]): a ratio is then never flattered by an unlucky ceiling.

mod echo;
mod process;
mod server;
mod stream;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::json;

use self::process::EchoChild;
pub(super) use self::process::serve as serve_echo_child;
use self::server::EchoServer;

/// How to measure the ceilings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CeilingConfig {
    /// Bytes of each echoed payload and each streamed message (one record).
    pub(super) payload_bytes: usize,
    /// Concurrent callers / streams.
    pub(super) concurrency: usize,
    /// How long each of the four loops runs.
    pub(super) duration: Duration,
}

/// The ceilings of this run: against the echo server in a separate process (the ratios'
/// baseline) and against the one in this process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Ceilings {
    pub(super) config: CeilingConfig,
    /// Server in a separate process: the cluster's layout, the ratios' baseline.
    pub(super) separate: Rates,
    /// Server in this process, sharing the client's runtime.
    pub(super) in_process: Rates,
    /// Measurements combined into these numbers (the best of each).
    pub(super) measurements: u32,
}

/// Both loops' results against one server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Rates {
    /// Unary echo calls per second.
    pub(super) echo_calls_per_sec: f64,
    /// Server-streaming payload megabytes (10^6 bytes) per second.
    pub(super) stream_mb_per_sec: f64,
}

impl Rates {
    /// The better of each rate.
    fn best(self, other: Rates) -> Rates {
        Rates {
            echo_calls_per_sec: self.echo_calls_per_sec.max(other.echo_calls_per_sec),
            stream_mb_per_sec: self.stream_mb_per_sec.max(other.stream_mb_per_sec),
        }
    }
}

impl Ceilings {
    /// `ops_per_sec` as a fraction of the echo ceiling of the separate process.
    pub(super) fn echo_ratio(&self, ops_per_sec: f64) -> f64 {
        ops_per_sec / self.separate.echo_calls_per_sec.max(1e-9)
    }

    /// `mb_per_sec` as a fraction of the streaming ceiling of the separate process.
    pub(super) fn stream_ratio(&self, mb_per_sec: f64) -> f64 {
        mb_per_sec / self.separate.stream_mb_per_sec.max(1e-9)
    }

    /// The better of each of the four ceilings of `self` and `other`.
    pub(super) fn best(self, other: Ceilings) -> Ceilings {
        Ceilings {
            config: self.config,
            separate: self.separate.best(other.separate),
            in_process: self.in_process.best(other.in_process),
            measurements: self.measurements + other.measurements,
        }
    }

    /// The ceilings as the JSON reports carry them: `echo_calls_per_sec` and
    /// `stream_mb_per_sec` are the separate process's (the ratios' baseline), the
    /// `_in_process_` ones this process's.
    pub(super) fn to_json(self) -> serde_json::Value {
        json!({
            "payload_bytes": self.config.payload_bytes,
            "concurrency": self.config.concurrency,
            "duration_secs": self.config.duration.as_secs_f64(),
            "echo_server": "separate_process",
            "echo_calls_per_sec": self.separate.echo_calls_per_sec,
            "stream_mb_per_sec": self.separate.stream_mb_per_sec,
            "echo_in_process_calls_per_sec": self.in_process.echo_calls_per_sec,
            "stream_in_process_mb_per_sec": self.in_process.stream_mb_per_sec,
            "measurements": self.measurements,
        })
    }
}

/// Measures both loops against an `echo_server_exe bench echo-server` child (the executable
/// is a parameter: a test binary is not `tabula`), then against a server in this process.
pub(super) async fn measure(
    config: CeilingConfig,
    echo_server_exe: &Path,
    progress: bool,
) -> anyhow::Result<Ceilings> {
    let child = EchoChild::start(echo_server_exe).await?;
    let measured = rates(child.addr, config, "separate process", progress).await;
    let stopped = child.stop().await;
    let separate = measured?;
    stopped?;
    let in_process = measure_in_process(config, progress).await?;
    Ok(Ceilings {
        config,
        separate,
        in_process,
        measurements: 1,
    })
}

/// Starts an echo server in this process, runs both loops against it, and stops it.
async fn measure_in_process(config: CeilingConfig, progress: bool) -> anyhow::Result<Rates> {
    let server = EchoServer::start().await?;
    let measured = rates(server.addr, config, "in this process", progress).await;
    let stopped = server.stop().await;
    let measured = measured?;
    stopped?;
    Ok(measured)
}

/// Runs the echo loop then the streaming loop against the server at `addr` (`place` says
/// where it runs, for the progress lines).
async fn rates(
    addr: SocketAddr,
    config: CeilingConfig,
    place: &str,
    progress: bool,
) -> anyhow::Result<Rates> {
    let echo = echo::calls_per_sec(
        addr,
        config.payload_bytes,
        config.concurrency,
        config.duration,
    )
    .await?;
    if progress {
        eprintln!(
            "ceiling: bare tonic echo, {place}, {} B x {} in flight: {:.0} calls/s",
            config.payload_bytes, config.concurrency, echo
        );
    }
    let stream = stream::mb_per_sec(
        addr,
        config.payload_bytes,
        config.concurrency,
        config.duration,
    )
    .await?;
    if progress {
        eprintln!(
            "ceiling: bare tonic server streaming, {place}, {} B messages x {} streams: \
             {:.1} MB/s",
            config.payload_bytes, config.concurrency, stream
        );
    }
    Ok(Rates {
        echo_calls_per_sec: echo,
        stream_mb_per_sec: stream,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn both_ceilings_are_measured_against_a_real_server() {
        let config = CeilingConfig {
            payload_bytes: 1000,
            concurrency: 4,
            duration: Duration::from_millis(200),
        };
        let in_process = measure_in_process(config, false).await.unwrap();
        assert!(
            in_process.echo_calls_per_sec > 0.0 && in_process.stream_mb_per_sec > 0.0,
            "{in_process:?}"
        );
        // The separate process's numbers (stand-ins here: a test binary is not `tabula`) are
        // the ratios' baseline.
        let separate = Rates {
            echo_calls_per_sec: in_process.echo_calls_per_sec / 2.0,
            stream_mb_per_sec: in_process.stream_mb_per_sec / 4.0,
        };
        let c = Ceilings {
            config,
            separate,
            in_process,
            measurements: 1,
        };
        assert_eq!(c.echo_ratio(separate.echo_calls_per_sec), 1.0);
        assert!((c.stream_ratio(separate.stream_mb_per_sec / 2.0) - 0.5).abs() < 1e-9);
        let doc = c.to_json();
        assert_eq!(doc["payload_bytes"], 1000);
        assert_eq!(doc["echo_calls_per_sec"], separate.echo_calls_per_sec);
        assert_eq!(
            doc["echo_in_process_calls_per_sec"],
            in_process.echo_calls_per_sec
        );
        assert_eq!(doc["stream_mb_per_sec"], separate.stream_mb_per_sec);
        assert_eq!(
            doc["stream_in_process_mb_per_sec"],
            in_process.stream_mb_per_sec
        );
        let other = Ceilings {
            separate: Rates {
                echo_calls_per_sec: separate.echo_calls_per_sec * 2.0,
                stream_mb_per_sec: separate.stream_mb_per_sec / 2.0,
            },
            in_process: Rates {
                echo_calls_per_sec: in_process.echo_calls_per_sec / 2.0,
                stream_mb_per_sec: in_process.stream_mb_per_sec * 2.0,
            },
            ..c
        };
        let best = c.best(other);
        assert_eq!(
            best.separate.echo_calls_per_sec,
            other.separate.echo_calls_per_sec
        );
        assert_eq!(best.separate.stream_mb_per_sec, separate.stream_mb_per_sec);
        assert_eq!(
            best.in_process.echo_calls_per_sec,
            in_process.echo_calls_per_sec
        );
        assert_eq!(
            best.in_process.stream_mb_per_sec,
            other.in_process.stream_mb_per_sec
        );
        assert_eq!(best.measurements, 2);
    }
}
