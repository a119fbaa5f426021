//! The sending side: one `PeerClient` per request openraft makes, over one lazily connected
//! tonic channel per target node.

use std::collections::HashMap;
use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{Backoff, RPCOption};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftNetwork, RaftNetworkFactory};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use tabula_proto::tabula::raft::v1::RaftRequest;
use tabula_proto::tabula::raft::v1::raft_service_client::RaftServiceClient;
use tonic::transport::{Channel, Endpoint};

use super::wire::{self, WireError};
use crate::types::{NodeId, TypeConfig};

/// Bytes of a `RaftRequest` beyond its payload (cluster id, target, framing), with room to
/// spare; the payload must fit in the message limit minus this.
const ENVELOPE_OVERHEAD_BYTES: usize = 4096;

/// How the Raft client side talks to peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkOptions {
    /// The cell every request names; peers of another cell refuse it.
    pub cluster_id: String,
    /// Limit for establishing a TCP connection to a peer.
    pub connect_timeout: Duration,
    /// Largest gRPC message sent or accepted, both ways.
    pub max_message_bytes: usize,
    /// First pause after a peer turned out unreachable; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest pause between attempts to reach an unreachable peer.
    pub backoff_max: Duration,
}

impl Default for NetworkOptions {
    fn default() -> Self {
        NetworkOptions {
            cluster_id: "tabula".to_owned(),
            connect_timeout: Duration::from_millis(500),
            max_message_bytes: 16 << 20,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
        }
    }
}

/// Hands openraft `PeerClient`s; cheap to clone, and clones share the channels.
///
/// Every client for one target shares one channel (one HTTP/2 connection). openraft asks for a
/// new client not only per replication stream but for every leadership check (each
/// linearizable read, each lease tick) and every election; a channel per client was a TCP
/// connect and an HTTP/2 handshake per peer per check, inside the heartbeat interval that
/// bounds the check.
#[derive(Debug, Clone)]
pub struct NetworkFactory {
    options: Arc<NetworkOptions>,
    /// One entry per node id ever asked for (a cell's voters and learners, a handful); an
    /// entry whose address changed is replaced.
    channels: Arc<Mutex<HashMap<NodeId, SharedChannel>>>,
}

#[derive(Debug, Clone)]
struct SharedChannel {
    addr: String,
    /// The channel, or why the peer's address does not make one.
    channel: Result<Channel, String>,
}

impl NetworkFactory {
    /// A factory whose clients send with `options`.
    pub fn new(options: NetworkOptions) -> NetworkFactory {
        NetworkFactory {
            options: Arc::new(options),
            channels: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The shared channel to `target` at `addr`, made on first use. The node's other services
    /// (the `LockService` a `Status` asks every member) share it with Raft.
    pub fn channel(&self, target: NodeId, addr: &str) -> Result<Channel, String> {
        let mut channels = self.channels.lock();
        if let Some(shared) = channels.get(&target)
            && shared.addr == addr
        {
            return shared.channel.clone();
        }
        let channel = endpoint(addr, &self.options).map(|endpoint| endpoint.connect_lazy());
        channels.insert(
            target,
            SharedChannel {
                addr: addr.to_owned(),
                channel: channel.clone(),
            },
        );
        channel
    }

    fn raft_client(
        &self,
        target: NodeId,
        node: &BasicNode,
    ) -> Result<RaftServiceClient<Channel>, String> {
        let max = self.options.max_message_bytes;
        self.channel(target, &node.addr).map(|channel| {
            RaftServiceClient::new(channel)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max)
        })
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            node: node.clone(),
            options: Arc::clone(&self.options),
            client: self.raft_client(target, node),
        }
    }
}

/// The Raft RPCs to one peer, over the factory's channel to it. The channel connects on first
/// use and reconnects by itself after the peer restarts; it never connects eagerly.
#[derive(Debug)]
pub struct PeerClient {
    target: NodeId,
    node: BasicNode,
    options: Arc<NetworkOptions>,
    /// The channel, or why the peer's address does not make one.
    client: Result<RaftServiceClient<Channel>, String>,
}

#[derive(Debug, Clone, Copy)]
enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl PeerClient {
    /// Sends one encoded request and decodes the peer's answer.
    /// `entries` is the batch size of an append-entries request, which can be split.
    async fn call<R, E>(
        &mut self,
        rpc: Rpc,
        entries: Option<usize>,
        payload: Vec<u8>,
        option: &RPCOption,
    ) -> Result<R, RPCError<NodeId, BasicNode, E>>
    where
        R: DeserializeOwned,
        E: Error + DeserializeOwned,
    {
        let mut client = match &self.client {
            Ok(client) => client.clone(),
            Err(reason) => {
                return Err(unreachable(&WireError::BadAddress {
                    addr: self.node.addr.clone(),
                    reason: reason.clone(),
                }));
            }
        };
        let mut request = tonic::Request::new(RaftRequest {
            cluster_id: self.options.cluster_id.clone(),
            target_node: self.target,
            payload,
        });
        request.set_timeout(option.hard_ttl());
        let reply = match rpc {
            Rpc::AppendEntries => client.append_entries(request).await,
            Rpc::Vote => client.vote(request).await,
            Rpc::InstallSnapshot => client.install_snapshot(request).await,
        }
        .map_err(|status| classify(status, entries))?
        .into_inner();
        match wire::open_reply::<R, E>(&reply) {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(remote)) => Err(RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                remote,
            ))),
            // A peer that answers what we cannot read runs another version: retrying at once
            // will not help.
            Err(e) => Err(unreachable(&e)),
        }
    }

    fn payload_limit(&self) -> usize {
        self.options
            .max_message_bytes
            .saturating_sub(ENVELOPE_OVERHEAD_BYTES)
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let entries = rpc.entries.len();
        let payload = wire::encode("append-entries request", &rpc).map_err(|e| unreachable(&e))?;
        let limit = self.payload_limit();
        if payload.len() > limit {
            let e = WireError::TooLarge {
                len: payload.len(),
                limit,
            };
            return Err(too_large(entries, &e));
        }
        self.call(Rpc::AppendEntries, Some(entries), payload, &option)
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let payload =
            wire::encode("install-snapshot request", &rpc).map_err(|e| unreachable(&e))?;
        self.call(Rpc::InstallSnapshot, None, payload, &option)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let payload = wire::encode("vote request", &rpc).map_err(|e| unreachable(&e))?;
        self.call(Rpc::Vote, None, payload, &option).await
    }

    fn backoff(&self) -> Backoff {
        let min = self.options.backoff_min.max(Duration::from_millis(1));
        let max = self.options.backoff_max.max(min);
        Backoff::new(std::iter::successors(Some(min), move |d| {
            Some(d.saturating_mul(2).min(max))
        }))
    }
}

fn endpoint(addr: &str, options: &NetworkOptions) -> Result<Endpoint, String> {
    let uri = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    Endpoint::from_shared(uri)
        .map(|e| {
            e.connect_timeout(options.connect_timeout)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(10))
                .keep_alive_timeout(Duration::from_secs(5))
        })
        .map_err(|e| e.to_string())
}

/// Classifies a failed call for openraft: back off when retrying at once cannot help (no
/// connection, or the peer refuses us for good), a smaller batch when an append-entries
/// request exceeded the peer's message limit, retry at once otherwise.
fn classify<E: Error>(
    status: tonic::Status,
    entries: Option<usize>,
) -> RPCError<NodeId, BasicNode, E> {
    use tonic::Code;
    match status.code() {
        Code::OutOfRange if let Some(entries) = entries => too_large(entries, &WireError::Status(status)),
        // No connection (refused, reset, timed out connecting), or the peer is shutting down.
        Code::Unavailable
        // Wrong cell or node, or a request it cannot read: a configuration error.
        | Code::FailedPrecondition
        | Code::InvalidArgument
        | Code::Unimplemented
        | Code::Unauthenticated
        | Code::PermissionDenied => unreachable(&WireError::Status(status)),
        _ => RPCError::Network(NetworkError::new(&WireError::Status(status))),
    }
}

fn unreachable<E: Error>(e: &(impl Error + 'static)) -> RPCError<NodeId, BasicNode, E> {
    RPCError::Unreachable(Unreachable::new(e))
}

/// An append-entries batch that does not fit: half as many entries next time; a single entry
/// that does not fit cannot be split, so back off (and say so in the log).
fn too_large<E: Error>(
    entries: usize,
    e: &(impl Error + 'static),
) -> RPCError<NodeId, BasicNode, E> {
    if entries > 1 {
        let hint = u64::try_from(entries / 2).unwrap_or(u64::MAX);
        RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(hint).with_source_error(e))
    } else {
        tracing::error!(error = %e, "a single raft log entry exceeds the message limit");
        unreachable(e)
    }
}
