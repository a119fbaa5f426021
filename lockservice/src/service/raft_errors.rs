//! The public error for each way a Raft call can fail, and the leader's address for redirects.

use openraft::error::{CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError};
use openraft::{BasicNode, Raft};
use tabula_common::{Code, Error};

use crate::types::{NodeId, TypeConfig};

/// `NotLeader` with the leader's address when openraft knows it.
pub(super) fn not_leader(forward: &ForwardToLeader<NodeId, BasicNode>) -> Error {
    let hint = forward.leader_node.as_ref().map(|n| n.addr.clone());
    let message = match (&forward.leader_id, &hint) {
        (Some(id), Some(addr)) => format!("not the leader; node {id} at {addr} is"),
        _ => "not the leader, and no leader is known yet".to_owned(),
    };
    Error::new(Code::NotLeader { hint }, message)
}

/// `NotLeader` from this node's current view (for calls that do not go through openraft).
pub(super) fn not_leader_now(raft: &Raft<TypeConfig>) -> Error {
    let metrics = raft.metrics().borrow().clone();
    let leader_node = metrics.current_leader.and_then(|id| {
        metrics
            .membership_config
            .membership()
            .get_node(&id)
            .cloned()
    });
    not_leader(&ForwardToLeader {
        leader_id: metrics.current_leader,
        leader_node,
    })
}

/// A failed `client_write` or membership change.
pub(super) fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> Error {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => not_leader(&f),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            Error::new(Code::FailedPrecondition, format!("membership change: {c}"))
        }
        RaftError::Fatal(f) => Error::new(
            Code::Unavailable,
            format!("this node's raft stopped ({f}); try another node"),
        ),
    }
}

/// A failed `ensure_linearizable`.
pub(super) fn read_error(e: RaftError<NodeId, CheckIsLeaderError<NodeId, BasicNode>>) -> Error {
    match e {
        RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => not_leader(&f),
        RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)) => Error::new(
            Code::Unavailable,
            format!("the leader cannot reach a quorum ({q}); try another node"),
        ),
        RaftError::Fatal(f) => Error::new(
            Code::Unavailable,
            format!("this node's raft stopped ({f}); try another node"),
        ),
    }
}
