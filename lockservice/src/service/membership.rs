//! Membership changes: a node joins as a learner, becomes a voter once it has caught up
//! (`wait_caught_up`), and leaves by a joint-consensus change.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::{BasicNode, ChangeMembers, Raft};
use tabula_common::{Code, Error};

use super::raft_errors::{not_leader_now, write_error};
use crate::types::{NodeId, TypeConfig};

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
    // Not openraft's blocking mode: it gives up waiting after 500 ms and reports success
    // anyway, so an unreachable node would become a voter the cell cannot count on.
    let added = bounded(timeout, "adding the learner", async {
        raft.add_learner(id, BasicNode::new(addr), false)
            .await
            .map_err(write_error)
    })
    .await?;
    wait_caught_up(raft, id, addr, added.log_id.index, timeout).await?;
    let voters = BTreeSet::from([id]);
    bounded(timeout, "promoting the learner", async {
        raft.change_membership(ChangeMembers::AddVoterIds(voters), false)
            .await
            .map_err(write_error)
    })
    .await?;
    Ok(())
}

/// How long a new learner has to answer replication at all before `add_node` gives up on it.
const FIRST_CONTACT: Duration = Duration::from_secs(10);

/// Waits until the leader has replicated to learner `id` up to `index` (the entry that added
/// it). Fails with FailedPrecondition when the learner answers nothing within `FIRST_CONTACT`,
/// or has not caught up within `timeout`; it then stays a learner, which has no vote.
async fn wait_caught_up(
    raft: &Raft<TypeConfig>,
    id: NodeId,
    addr: &str,
    index: u64,
    timeout: Duration,
) -> Result<(), Error> {
    let start = tokio::time::Instant::now();
    let deadline = start + timeout;
    let first_contact_by = start + timeout.min(FIRST_CONTACT);
    let mut metrics = raft.metrics();
    loop {
        let matched = {
            let m = metrics.borrow_and_update();
            m.replication
                .as_ref()
                .and_then(|r| r.get(&id).copied())
                .flatten()
                .map(|log_id| log_id.index)
        };
        if matched.is_some_and(|m| m >= index) {
            return Ok(());
        }
        let by = if matched.is_some() {
            deadline
        } else {
            first_contact_by
        };
        let changed = tokio::time::timeout_at(by, metrics.changed()).await;
        if !matches!(changed, Ok(Ok(()))) {
            let how = match matched {
                None => format!(
                    "accepted no replication within {:?} (is it running, and reachable at that address?)",
                    by - start
                ),
                Some(m) => format!("has caught up to index {m} of {index} after {timeout:?}"),
            };
            return Err(Error::new(
                Code::FailedPrecondition,
                format!(
                    "node {id} at {addr} {how}; it was added as a learner only, without a vote: \
                     start it and add it again, or remove it with `tabula lock remove-node {id}`"
                ),
            ));
        }
    }
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
