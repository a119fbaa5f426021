//! The timed loops: `clients` tasks, each with its own connection to the leader, calling one
//! RPC back to back until the phase's time is up. Each call's latency is recorded; a failed
//! call is counted (not retried faster than every `ERROR_PAUSE`) and the first failure kept,
//! so a phase that only fails is an error rather than a zero.
//!
//! The operations: `Set` of a 100-byte file (each client its own file, every write a fresh
//! `WriteId`), `KeepAlive` of the client's own session, and `Status`, the trivial unary RPC the
//! others are compared with.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tabula_common::Error;
use tabula_proto::tabula::lock::v1::{
    CloseSessionRequest, KeepAliveRequest, OpenSessionRequest, SetRequest, StatusRequest,
};
use tokio::task::JoinSet;

use super::rpc::{self, Client, WriteIds};
use crate::bench::table::thousands;

/// Bytes of every file the write workload sets.
pub(super) const FILE_BYTES: usize = 100;
/// The directory holding the write workload's files.
pub(super) const BENCH_DIR: &str = "/bench";
/// Lease length of the keepalive workload's sessions.
const SESSION_TTL: Duration = Duration::from_secs(10);
/// The longest one call may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed call, so a dead server is not hammered.
const ERROR_PAUSE: Duration = Duration::from_millis(10);
/// Time between two progress lines of a phase.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);

/// One RPC a client task calls in a loop.
pub(super) trait Op: Send + 'static {
    /// Makes one call.
    fn call(&mut self) -> impl Future<Output = Result<(), Error>> + Send;
}

/// What one timed phase measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Measured {
    /// Calls that succeeded.
    pub(super) ops: u64,
    /// Calls that failed or timed out.
    pub(super) errors: u64,
    /// From the common start to the end of the last call.
    pub(super) elapsed: Duration,
    /// The latency of every successful call, sorted.
    pub(super) latencies: Vec<Duration>,
    /// The first failure, for the report.
    pub(super) first_error: Option<String>,
}

impl Measured {
    /// Successful calls per second.
    pub(super) fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// One client's share of a phase.
#[derive(Default)]
struct Share {
    ops: u64,
    errors: u64,
    latencies: Vec<Duration>,
    first_error: Option<String>,
}

/// Runs every op of `ops` in its own task, back to back for `duration`, all starting together;
/// prints progress as `label` on stderr if `progress`. Gives the ops back (in no particular
/// order) for cleaning up.
pub(super) async fn drive<O: Op>(
    label: &str,
    ops: Vec<O>,
    duration: Duration,
    progress: bool,
) -> anyhow::Result<(Measured, Vec<O>)> {
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = JoinSet::new();
    for mut op in ops {
        let done = done.clone();
        tasks.spawn(async move {
            let mut share = Share::default();
            while Instant::now() < deadline {
                let call_started = Instant::now();
                match tokio::time::timeout(CALL_TIMEOUT, op.call()).await {
                    Ok(Ok(())) => {
                        share.latencies.push(call_started.elapsed());
                        share.ops += 1;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    failed => {
                        share.errors += 1;
                        if share.first_error.is_none() {
                            share.first_error = Some(match failed {
                                Ok(Err(e)) => e.to_string(),
                                _ => format!("no answer within {CALL_TIMEOUT:?}"),
                            });
                        }
                        tokio::time::sleep(ERROR_PAUSE).await;
                    }
                }
            }
            (share, op)
        });
    }
    let mut shares = Vec::new();
    let mut returned = Vec::new();
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + PROGRESS_INTERVAL,
        PROGRESS_INTERVAL,
    );
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(joined) => {
                    let (share, op) = joined.context("a client task failed")?;
                    shares.push(share);
                    returned.push(op);
                }
                None => break,
            },
            _ = ticker.tick(), if progress => {
                let n = done.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64().min(duration.as_secs_f64());
                eprintln!(
                    "  {label}: {} ops after {secs:.0} s, {} ops/s so far",
                    thousands(n as f64),
                    thousands(n as f64 / secs.max(1e-9)),
                );
            }
        }
    }
    let measured = merge(shares, started.elapsed());
    if measured.ops == 0 {
        bail!(
            "{label}: no call succeeded ({} failed; first: {})",
            measured.errors,
            measured.first_error.as_deref().unwrap_or("none")
        );
    }
    if progress {
        eprintln!(
            "{label}: {} ops in {:.2} s, {} ops/s{}",
            thousands(measured.ops as f64),
            measured.elapsed.as_secs_f64(),
            thousands(measured.ops_per_sec()),
            if measured.errors > 0 {
                format!(", {} failed", measured.errors)
            } else {
                String::new()
            }
        );
    }
    Ok((measured, returned))
}

fn merge(shares: Vec<Share>, elapsed: Duration) -> Measured {
    let mut m = Measured {
        elapsed,
        ..Measured::default()
    };
    for share in shares {
        m.ops += share.ops;
        m.errors += share.errors;
        m.latencies.extend(share.latencies);
        m.first_error = m.first_error.or(share.first_error);
    }
    m.latencies.sort_unstable();
    m
}

/// Sets one file to 100 bytes, each time with a fresh `WriteId`.
pub(super) struct SetFile {
    client: Client,
    ids: WriteIds,
    path: String,
    contents: Vec<u8>,
}

impl SetFile {
    /// A client of `leader` setting `/bench/client-<n>`; creates the file (and `/bench`).
    pub(super) async fn create(leader: SocketAddr, n: usize) -> anyhow::Result<SetFile> {
        let mut client = rpc::client(leader)?;
        let mut ids = WriteIds::new();
        let path = format!("{BENCH_DIR}/client-{n}");
        let contents = vec![b'x'; FILE_BYTES];
        rpc::ensure_file(&mut client, &mut ids, BENCH_DIR, b"").await?;
        rpc::ensure_file(&mut client, &mut ids, &path, &contents).await?;
        Ok(SetFile {
            client,
            ids,
            path,
            contents,
        })
    }
}

impl Op for SetFile {
    async fn call(&mut self) -> Result<(), Error> {
        let request = SetRequest {
            write_id: Some(self.ids.next_id()),
            path: self.path.clone(),
            contents: self.contents.clone(),
            if_generation: None,
        };
        self.client.set(request).await?;
        Ok(())
    }
}

/// Keeps one session alive.
pub(super) struct KeepSessionAlive {
    client: Client,
    session_id: u64,
}

impl KeepSessionAlive {
    /// Opens a session (TTL 10 s) on `leader`.
    pub(super) async fn open(leader: SocketAddr) -> anyhow::Result<KeepSessionAlive> {
        let mut client = rpc::client(leader)?;
        let request = OpenSessionRequest {
            write_id: Some(WriteIds::new().next_id()),
            ttl_ms: SESSION_TTL.as_millis() as u64,
        };
        let session_id = client
            .open_session(request)
            .await
            .map_err(Error::from)
            .context("opening a session")?
            .into_inner()
            .session_id;
        Ok(KeepSessionAlive { client, session_id })
    }

    /// Closes the session, so its expiry cannot disturb a later phase.
    pub(super) async fn close(mut self) -> anyhow::Result<()> {
        let request = CloseSessionRequest {
            write_id: Some(WriteIds::new().next_id()),
            session_id: self.session_id,
        };
        self.client
            .close_session(request)
            .await
            .map_err(Error::from)
            .with_context(|| format!("closing session {}", self.session_id))?;
        Ok(())
    }
}

impl Op for KeepSessionAlive {
    async fn call(&mut self) -> Result<(), Error> {
        let request = KeepAliveRequest {
            session_id: self.session_id,
        };
        self.client.keep_alive(request).await?;
        Ok(())
    }
}

/// Asks a node for its status: the baseline unary RPC.
pub(super) struct AskStatus {
    client: Client,
}

impl AskStatus {
    /// A client of `addr`.
    pub(super) fn new(addr: SocketAddr) -> anyhow::Result<AskStatus> {
        Ok(AskStatus {
            client: rpc::client(addr)?,
        })
    }
}

impl Op for AskStatus {
    async fn call(&mut self) -> Result<(), Error> {
        self.client.status(StatusRequest::default()).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Succeeds every other call, after a tiny pause.
    struct Flaky {
        calls: u64,
    }

    impl Op for Flaky {
        async fn call(&mut self) -> Result<(), Error> {
            self.calls += 1;
            tokio::time::sleep(Duration::from_millis(1)).await;
            if self.calls.is_multiple_of(2) {
                Ok(())
            } else {
                Err(Error::new(tabula_common::Code::Unavailable, "flaky"))
            }
        }
    }

    /// Always fails.
    #[derive(Debug)]
    struct Broken;

    impl Op for Broken {
        async fn call(&mut self) -> Result<(), Error> {
            Err(Error::internal("broken"))
        }
    }

    #[tokio::test]
    async fn every_client_runs_until_the_time_is_up() {
        let ops = (0..4).map(|_| Flaky { calls: 0 }).collect();
        let (m, ops) = drive("flaky", ops, Duration::from_millis(100), false)
            .await
            .unwrap();
        assert_eq!(ops.len(), 4);
        assert_eq!(ops.iter().map(|o| o.calls).sum::<u64>(), m.ops + m.errors);
        assert!(m.ops > 0 && m.errors > 0, "{m:?}");
        assert_eq!(m.latencies.len() as u64, m.ops);
        assert!(m.latencies.windows(2).all(|w| w[0] <= w[1]), "sorted");
        assert!(m.elapsed >= Duration::from_millis(100));
        assert_eq!(m.first_error.as_deref(), Some("unavailable: flaky"));
    }

    #[tokio::test]
    async fn a_phase_where_nothing_succeeds_is_an_error() {
        let err = drive("broken", vec![Broken], Duration::from_millis(30), false)
            .await
            .unwrap_err();
        assert!(format!("{err}").contains("internal: broken"), "{err}");
    }

    #[test]
    fn shares_merge_into_one_sorted_measurement() {
        let ms = Duration::from_millis;
        let shares = vec![
            Share {
                ops: 2,
                errors: 0,
                latencies: vec![ms(3), ms(1)],
                first_error: None,
            },
            Share {
                ops: 1,
                errors: 1,
                latencies: vec![ms(2)],
                first_error: Some("x".to_owned()),
            },
        ];
        let m = merge(shares, Duration::from_secs(1));
        assert_eq!((m.ops, m.errors), (3, 1));
        assert_eq!(m.latencies, [ms(1), ms(2), ms(3)]);
        assert_eq!(m.first_error.as_deref(), Some("x"));
        assert_eq!(m.ops_per_sec(), 3.0);
    }
}
