//! The unary ceiling: `concurrency` tasks calling `Echo` with a `payload_bytes` payload back to
//! back over as many HTTP/2 connections as the client library opens to one tablet server
//! (`ChannelOptions::connections_per_address`, taken in turn), for a fixed time. Calls per second is the most any unary Tabula operation of that
//! size and concurrency could reach on this machine through tonic.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use tabula_client::ChannelOptions;
use tabula_proto::tabula::bench::v1::EchoRequest;
use tabula_proto::tabula::bench::v1::echo_service_client::EchoServiceClient;
use tokio::task::JoinSet;
use tonic::transport::{Channel, Endpoint};

use super::server::MAX_MESSAGE_BYTES;

/// A client of the echo server at `addr` on its own connection.
pub(super) async fn connect(addr: SocketAddr) -> anyhow::Result<EchoServiceClient<Channel>> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .context("the echo server's endpoint")?
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("connecting to the echo server at {addr}"))?;
    Ok(EchoServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES + 1024)
        .max_encoding_message_size(MAX_MESSAGE_BYTES + 1024))
}

/// One client per connection the client library would open to one server.
pub(super) async fn connect_like_the_client(
    addr: SocketAddr,
) -> anyhow::Result<Vec<EchoServiceClient<Channel>>> {
    let mut clients = Vec::new();
    for _ in 0..ChannelOptions::default().connections_per_address.max(1) {
        clients.push(connect(addr).await?);
    }
    Ok(clients)
}

/// Echo calls per second of `concurrency` tasks over `duration`.
pub(super) async fn calls_per_sec(
    addr: SocketAddr,
    payload_bytes: usize,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let clients = connect_like_the_client(addr).await?;
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = JoinSet::new();
    for i in 0..concurrency {
        let mut client = clients[i % clients.len()].clone();
        let payload = vec![b'e'; payload_bytes];
        tasks.spawn(async move {
            let mut calls = 0u64;
            while Instant::now() < deadline {
                client
                    .echo(EchoRequest {
                        payload: payload.clone(),
                    })
                    .await
                    .context("an echo call")?;
                calls += 1;
            }
            anyhow::Ok(calls)
        });
    }
    let mut calls = 0;
    while let Some(joined) = tasks.join_next().await {
        calls += joined.context("an echo task")??;
    }
    Ok(calls as f64 / started.elapsed().as_secs_f64().max(1e-9))
}
