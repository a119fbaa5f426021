//! The streaming ceiling: `concurrency` tasks each calling `Stream` for `CHUNKS_PER_CALL`
//! messages of `chunk_bytes` over and over, over the client library's connections to one server
//! (taken in turn), for a fixed time. The
//! megabytes per second received is the most a scan returning rows of that size could move
//! through tonic on this machine.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use tabula_proto::tabula::bench::v1::StreamRequest;
use tokio::task::JoinSet;

use super::echo::connect_like_the_client;

/// Messages per `Stream` call (a scan's worth of rows).
const CHUNKS_PER_CALL: u64 = 1000;

/// Megabytes (10^6 bytes) per second of payload received by `concurrency` streaming tasks
/// over `duration`.
pub(super) async fn mb_per_sec(
    addr: SocketAddr,
    chunk_bytes: usize,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let clients = connect_like_the_client(addr).await?;
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = JoinSet::new();
    for i in 0..concurrency {
        let mut client = clients[i % clients.len()].clone();
        let request = StreamRequest {
            count: CHUNKS_PER_CALL,
            size: chunk_bytes as u64,
        };
        tasks.spawn(async move {
            let mut bytes = 0u64;
            while Instant::now() < deadline {
                let mut stream = client
                    .stream(request)
                    .await
                    .context("a stream call")?
                    .into_inner();
                while let Some(chunk) = stream.message().await.context("a streamed message")? {
                    bytes += chunk.payload.len() as u64;
                }
            }
            anyhow::Ok(bytes)
        });
    }
    let mut bytes = 0;
    while let Some(joined) = tasks.join_next().await {
        bytes += joined.context("a streaming task")??;
    }
    Ok(bytes as f64 / 1e6 / started.elapsed().as_secs_f64().max(1e-9))
}
