//! The cell's status and membership changes: a node joins as a learner, becomes a voter once it
//! has caught up (`add_learner` blocks until then), and leaves by a joint-consensus change.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::{BasicNode, ChangeMembers, Raft};
use tabula_common::{Code, Error};
use tabula_proto::tabula::lock::v1 as pb;

use super::raft_errors::{not_leader_now, write_error};
use crate::types::{NodeId, TypeConfig};

/// What this node knows about the cell (replication progress only if it leads).
pub(super) fn status(raft: &Raft<TypeConfig>) -> pb::StatusResponse {
    let m = raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let members = membership
        .nodes()
        .map(|(id, node)| {
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(id))
                .map(|log_id| log_id.map_or(0, |l| l.index));
            // The leader's own progress is not in its replication map.
            let matched = matched.or_else(|| {
                (m.current_leader == Some(m.id) && *id == m.id)
                    .then(|| m.last_log_index.unwrap_or(0))
            });
            pb::Member {
                id: *id,
                addr: node.addr.clone(),
                voter: voters.contains(id),
                has_matched: matched.is_some(),
                matched_index: matched.unwrap_or(0),
            }
        })
        .collect();
    let leader_addr = m
        .current_leader
        .and_then(|id| membership.get_node(&id))
        .map(|n| n.addr.clone())
        .unwrap_or_default();
    pb::StatusResponse {
        node_id: m.id,
        leader_id: m.current_leader.unwrap_or(0),
        leader_addr,
        term: m.current_term,
        applied_index: m.last_applied.map_or(0, |l| l.index),
        members,
    }
}

/// Adds node `id` at `addr`: as a learner (waiting until it has caught up), then as a voter.
pub(super) async fn add_node(
    raft: &Raft<TypeConfig>,
    id: NodeId,
    addr: &str,
    timeout: Duration,
) -> Result<(), Error> {
    if id == 0 {
        return Err(Error::invalid_argument("node id 0 is reserved"));
    }
    if !is_host_port(addr) {
        return Err(Error::invalid_argument(format!(
            "node address {addr:?} is not host:port"
        )));
    }
    require_leader(raft)?;
    let existing = raft.metrics().borrow().membership_config.clone();
    let membership = existing.membership();
    if membership.voter_ids().any(|v| v == id) {
        return Err(Error::new(
            Code::AlreadyExists,
            format!("node {id} is already a voter"),
        ));
    }
    if let Some(node) = membership.get_node(&id)
        && node.addr != addr
    {
        return Err(Error::new(
            Code::FailedPrecondition,
            format!(
                "node {id} is already a learner at {}; remove it before adding it at {addr}",
                node.addr
            ),
        ));
    }
    bounded(timeout, "adding the learner", async {
        raft.add_learner(id, BasicNode::new(addr), true)
            .await
            .map_err(write_error)
    })
    .await?;
    let voters = BTreeSet::from([id]);
    bounded(timeout, "promoting the learner", async {
        raft.change_membership(ChangeMembers::AddVoterIds(voters), false)
            .await
            .map_err(write_error)
    })
    .await?;
    Ok(())
}

/// Removes node `id` from the voters (then the node entirely) or from the learners.
pub(super) async fn remove_node(
    raft: &Raft<TypeConfig>,
    id: NodeId,
    timeout: Duration,
) -> Result<(), Error> {
    require_leader(raft)?;
    let existing = raft.metrics().borrow().membership_config.clone();
    let membership = existing.membership();
    let ids = BTreeSet::from([id]);
    let change = if membership.voter_ids().any(|v| v == id) {
        if membership.voter_ids().count() == 1 {
            return Err(Error::invalid_argument(format!(
                "node {id} is the only voter; a cell cannot remove its last voter"
            )));
        }
        ChangeMembers::RemoveVoters(ids)
    } else if membership.get_node(&id).is_some() {
        ChangeMembers::RemoveNodes(ids)
    } else {
        return Err(Error::new(
            Code::NotFound,
            format!("node {id} is not a member"),
        ));
    };
    bounded(timeout, "changing the membership", async {
        raft.change_membership(change, false)
            .await
            .map_err(write_error)
    })
    .await?;
    Ok(())
}

fn require_leader(raft: &Raft<TypeConfig>) -> Result<(), Error> {
    let m = raft.metrics().borrow().clone();
    if m.current_leader == Some(m.id) {
        Ok(())
    } else {
        Err(not_leader_now(raft))
    }
}

async fn bounded<T>(
    timeout: Duration,
    what: &str,
    f: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    tokio::time::timeout(timeout, f).await.unwrap_or_else(|_| {
        Err(Error::new(
            Code::DeadlineExceeded,
            format!("{what} did not finish within {timeout:?}; check `tabula lock status`"),
        ))
    })
}

fn is_host_port(addr: &str) -> bool {
    matches!(addr.rsplit_once(':'), Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0))
}
