//! The receiving side: checks that a request is meant for this node of this cell, then hands
//! it to the local `Raft`.

use std::sync::Arc;

use openraft::Raft;
use tabula_proto::tabula::raft::v1::raft_service_server::{RaftService, RaftServiceServer};
use tabula_proto::tabula::raft::v1::{RaftReply, RaftRequest};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::wire::{self, WireError};
use crate::types::{NodeId, TypeConfig};

/// The `RaftService` of one node: forwards peers' AppendEntries, Vote and InstallSnapshot to
/// its `Raft` after checking the envelope's cluster id and target node.
#[derive(Clone)]
pub struct RaftGrpcService {
    raft: Raft<TypeConfig>,
    node_id: NodeId,
    cluster_id: Arc<str>,
}

impl std::fmt::Debug for RaftGrpcService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftGrpcService")
            .field("node_id", &self.node_id)
            .field("cluster_id", &self.cluster_id)
            .finish_non_exhaustive()
    }
}

impl RaftGrpcService {
    /// The service of node `node_id` in cell `cluster_id`.
    pub fn new(raft: Raft<TypeConfig>, node_id: NodeId, cluster_id: &str) -> RaftGrpcService {
        RaftGrpcService {
            raft,
            node_id,
            cluster_id: Arc::from(cluster_id),
        }
    }

    /// The tonic service, accepting and sending messages up to `max_message_bytes`.
    pub fn into_server(self, max_message_bytes: usize) -> RaftServiceServer<RaftGrpcService> {
        RaftServiceServer::new(self)
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes)
    }

    fn span(&self, rpc: &'static str) -> tracing::Span {
        tracing::debug_span!("raft_rpc", node_id = self.node_id, rpc)
    }

    /// The payload of a request meant for this node of this cell; anything else is refused
    /// before it is decoded.
    fn admit(&self, request: Request<RaftRequest>) -> Result<Vec<u8>, Status> {
        let request = request.into_inner();
        if *request.cluster_id != *self.cluster_id {
            tracing::warn!(node_id = self.node_id, from_cluster = %request.cluster_id, "refused a raft request for another cell");
            return Err(Status::failed_precondition(format!(
                "raft request for cell {:?} reached node {} of cell {:?}",
                request.cluster_id, self.node_id, self.cluster_id
            )));
        }
        if request.target_node != self.node_id {
            tracing::warn!(
                node_id = self.node_id,
                target_node = request.target_node,
                "refused a raft request for another node"
            );
            return Err(Status::failed_precondition(format!(
                "raft request for node {} reached node {} of cell {:?}; check the peer addresses",
                request.target_node, self.node_id, self.cluster_id
            )));
        }
        Ok(request.payload)
    }
}

fn bad_request(e: WireError) -> Status {
    Status::invalid_argument(e.to_string())
}

fn encode_reply<R: serde::Serialize, E: serde::Serialize>(
    result: &Result<R, E>,
) -> Result<Response<RaftReply>, Status> {
    wire::reply(result)
        .map(Response::new)
        .map_err(|e| Status::internal(e.to_string()))
}

#[tonic::async_trait]
impl RaftService for RaftGrpcService {
    async fn append_entries(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        async {
            let payload = self.admit(request)?;
            let rpc = wire::decode("append-entries request", &payload).map_err(bad_request)?;
            encode_reply(&self.raft.append_entries(rpc).await)
        }
        .instrument(self.span("append_entries"))
        .await
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        async {
            let payload = self.admit(request)?;
            let rpc = wire::decode("vote request", &payload).map_err(bad_request)?;
            encode_reply(&self.raft.vote(rpc).await)
        }
        .instrument(self.span("vote"))
        .await
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        async {
            let payload = self.admit(request)?;
            let rpc = wire::decode("install-snapshot request", &payload).map_err(bad_request)?;
            encode_reply(&self.raft.install_snapshot(rpc).await)
        }
        .instrument(self.span("install_snapshot"))
        .await
    }
}
