//! `Status`: the cell as this node sees it (leader, term, members, the leader's replication
//! progress, its own applied index) and, when asked (`ask_members`), every other member's own
//! applied index.
//!
//! Invariants:
//! - The members are asked for their local status only (`ask_members` false), so a `Status`
//!   never fans out further.
//! - Every member is asked at once, each within `timeout` (one task per member, owned by the
//!   call's `JoinSet`), so the call takes about `timeout` at most, whatever the members do.
//! - A member that does not answer in time, or answers as another node, is marked unreachable
//!   with the reason; it never fails the call.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::Raft;
use tabula_common::Error;
use tabula_proto::tabula::lock::v1 as pb;
use tabula_proto::tabula::lock::v1::lock_service_client::LockServiceClient;
use tokio::task::JoinSet;
use tonic::transport::Channel;

use crate::network::NetworkFactory;
use crate::types::{NodeId, TypeConfig};

/// What this node knows about the cell: replication progress only if it leads, the applied
/// index of itself only.
pub(super) fn local(raft: &Raft<TypeConfig>) -> pb::StatusResponse {
    let m = raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let applied_index = m.last_applied.map_or(0, |l| l.index);
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
            let me = *id == m.id;
            pb::Member {
                id: *id,
                addr: node.addr.clone(),
                voter: voters.contains(id),
                has_matched: matched.is_some(),
                matched_index: matched.unwrap_or(0),
                has_applied: me,
                applied_index: if me { applied_index } else { 0 },
                unreachable: String::new(),
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
        applied_index,
        members,
    }
}

/// `local`, with every other member's applied index as it answered within `timeout`, or why
/// it did not.
pub(super) async fn with_members(
    raft: &Raft<TypeConfig>,
    peers: &NetworkFactory,
    timeout: Duration,
) -> pb::StatusResponse {
    let mut status = local(raft);
    let mut asks = JoinSet::new();
    for member in &mut status.members {
        if member.id == status.node_id {
            continue;
        }
        // Stays so only if its task fails without an answer.
        member.unreachable = "no answer".to_owned();
        let (id, channel) = (member.id, peers.channel(member.id, &member.addr));
        asks.spawn(async move { (id, ask(id, channel, timeout).await) });
    }
    while let Some(joined) = asks.join_next().await {
        let Ok((id, answer)) = joined else {
            continue;
        };
        let Some(member) = status.members.iter_mut().find(|m| m.id == id) else {
            continue;
        };
        match answer {
            Ok(applied) => {
                member.has_applied = true;
                member.applied_index = applied;
                member.unreachable.clear();
            }
            Err(why) => member.unreachable = why,
        }
    }
    status
}

/// Member `id`'s own applied index, asked over `channel` (its local status only).
async fn ask(
    id: NodeId,
    channel: Result<Channel, String>,
    timeout: Duration,
) -> Result<u64, String> {
    let mut client = LockServiceClient::new(channel?);
    let request = pb::StatusRequest { ask_members: false };
    // The deadline is ours (not a grpc-timeout, whose expiry tonic reports as a transport
    // error): the call is dropped, which resets its stream.
    match tokio::time::timeout(timeout, client.status(request)).await {
        Err(_) => Err(format!("no answer within {timeout:?}")),
        Ok(Err(status)) => Err(Error::from(status).to_string()),
        Ok(Ok(answer)) => {
            let answer = answer.into_inner();
            if answer.node_id == id {
                Ok(answer.applied_index)
            } else {
                Err(format!("answered as node {}", answer.node_id))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn a_member_that_accepts_but_never_answers_is_unreachable_after_the_timeout() {
        // Connections are accepted by the kernel (the backlog), nobody speaks HTTP/2 on them.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap();
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy();
        let timeout = Duration::from_millis(200);
        let started = tokio::time::Instant::now();
        let answer = ask(2, Ok(channel), timeout).await;
        assert_eq!(answer, Err("no answer within 200ms".to_owned()));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_member_whose_address_makes_no_channel_is_unreachable_with_the_reason() {
        let answer = ask(2, Err("invalid uri".to_owned()), Duration::from_secs(1)).await;
        assert_eq!(answer, Err("invalid uri".to_owned()));
    }
}
