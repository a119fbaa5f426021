//! This machine's raw ceilings, measured in the same process and run as a cluster benchmark,
//! so every Tabula number can be printed as a ratio to what plain tonic does here and now: a
//! bare unary echo (calls/s at the benchmark's payload size and concurrency) and a bare
//! server-streaming transfer (MB/s in messages of the benchmark's row size). The server runs
//! in-process on 127.0.0.1 (`server`); the loops are `echo` and `stream`.
//!
//! Reads and writes are compared with echo calls/s (each is one unary round trip carrying
//! about one record), scans with streaming MB/s. On a shared machine one measurement can land
//! in a busy moment, so the suites measure before and after their run and keep the better of
//! each ([`Ceilings::best`]): a ratio is then never flattered by an unlucky ceiling.

mod echo;
mod server;
mod stream;

use std::time::Duration;

use serde_json::json;

use self::server::EchoServer;

/// How to measure the ceilings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CeilingConfig {
    /// Bytes of each echoed payload and each streamed message (one record).
    pub(super) payload_bytes: usize,
    /// Concurrent callers / streams.
    pub(super) concurrency: usize,
    /// How long each of the two loops runs.
    pub(super) duration: Duration,
}

/// The two ceilings of this run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Ceilings {
    pub(super) config: CeilingConfig,
    /// Unary echo calls per second.
    pub(super) echo_calls_per_sec: f64,
    /// Server-streaming payload megabytes (10^6 bytes) per second.
    pub(super) stream_mb_per_sec: f64,
    /// Measurements combined into these numbers (the best of each).
    pub(super) measurements: u32,
}

impl Ceilings {
    /// `ops_per_sec` as a fraction of the echo ceiling.
    pub(super) fn echo_ratio(&self, ops_per_sec: f64) -> f64 {
        ops_per_sec / self.echo_calls_per_sec.max(1e-9)
    }

    /// `mb_per_sec` as a fraction of the streaming ceiling.
    pub(super) fn stream_ratio(&self, mb_per_sec: f64) -> f64 {
        mb_per_sec / self.stream_mb_per_sec.max(1e-9)
    }

    /// The better of each ceiling of `self` and `other`.
    pub(super) fn best(self, other: Ceilings) -> Ceilings {
        Ceilings {
            config: self.config,
            echo_calls_per_sec: self.echo_calls_per_sec.max(other.echo_calls_per_sec),
            stream_mb_per_sec: self.stream_mb_per_sec.max(other.stream_mb_per_sec),
            measurements: self.measurements + other.measurements,
        }
    }

    /// The ceilings as the JSON reports carry them.
    pub(super) fn to_json(self) -> serde_json::Value {
        json!({
            "payload_bytes": self.config.payload_bytes,
            "concurrency": self.config.concurrency,
            "duration_secs": self.config.duration.as_secs_f64(),
            "echo_calls_per_sec": self.echo_calls_per_sec,
            "stream_mb_per_sec": self.stream_mb_per_sec,
            "measurements": self.measurements,
        })
    }
}

/// Starts the echo server, runs the echo loop then the streaming loop, and stops the server.
pub(super) async fn measure(config: CeilingConfig, progress: bool) -> anyhow::Result<Ceilings> {
    let server = EchoServer::start().await?;
    let measured = async {
        let echo = echo::calls_per_sec(
            server.addr,
            config.payload_bytes,
            config.concurrency,
            config.duration,
        )
        .await?;
        if progress {
            eprintln!(
                "ceiling: bare tonic echo, {} B x {} in flight: {:.0} calls/s",
                config.payload_bytes, config.concurrency, echo
            );
        }
        let stream = stream::mb_per_sec(
            server.addr,
            config.payload_bytes,
            config.concurrency,
            config.duration,
        )
        .await?;
        if progress {
            eprintln!(
                "ceiling: bare tonic server streaming, {} B messages x {} streams: {:.1} MB/s",
                config.payload_bytes, config.concurrency, stream
            );
        }
        anyhow::Ok((echo, stream))
    }
    .await;
    let stopped = server.stop().await;
    let (echo_calls_per_sec, stream_mb_per_sec) = measured?;
    stopped?;
    Ok(Ceilings {
        config,
        echo_calls_per_sec,
        stream_mb_per_sec,
        measurements: 1,
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
        let c = measure(config, false).await.unwrap();
        assert!(
            c.echo_calls_per_sec > 0.0 && c.stream_mb_per_sec > 0.0,
            "{c:?}"
        );
        assert_eq!(c.echo_ratio(c.echo_calls_per_sec), 1.0);
        assert!((c.stream_ratio(c.stream_mb_per_sec / 2.0) - 0.5).abs() < 1e-9);
        assert_eq!(c.to_json()["payload_bytes"], 1000);
        let better = Ceilings {
            echo_calls_per_sec: c.echo_calls_per_sec * 2.0,
            stream_mb_per_sec: c.stream_mb_per_sec / 2.0,
            ..c
        };
        let best = c.best(better);
        assert_eq!(best.echo_calls_per_sec, better.echo_calls_per_sec);
        assert_eq!(best.stream_mb_per_sec, c.stream_mb_per_sec);
        assert_eq!(best.measurements, 2);
    }
}
