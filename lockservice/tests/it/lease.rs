//! Session leases on a real in-process cell: the leader answers KeepAlives from memory, expires
//! a neglected session with a log entry every node applies, and a new leader gives every
//! session `ttl + grace` before it expires anything.
//!
//! Waits poll a condition with a deadline (`eventually`); the only sleeps let lease time pass.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tabula_lockservice::lease::KeepAliveError;
use tabula_lockservice::node::{LockNode, RaftTuning};
use tokio::time::Instant;

use crate::support::{Cell, DEADLINE, eventually};

const TTL_MS: u64 = 1_000;
const TTL: Duration = Duration::from_millis(TTL_MS);
const GRACE: Duration = Duration::from_millis(1_000);
/// Time for a tick, a quorum round and a commit once a deadline has passed.
const SLACK: Duration = Duration::from_millis(1_500);

fn tuning() -> RaftTuning {
    RaftTuning {
        session_grace_ms: u64::try_from(GRACE.as_millis()).unwrap(),
        ..RaftTuning::default()
    }
}

async fn start(size: u64) -> Cell {
    Cell::start_tuned(size, tuning()).await
}

/// Waits for a leader whose lease table has confirmed its term and synced.
async fn ready_leader(cell: &Cell) -> u64 {
    let leader = cell.leader().await;
    eventually("the leader's lease table to be ready", || async {
        let node = cell.nodes.get(&leader)?;
        let status = node.leases().status();
        let term = node.raft().metrics().borrow().current_term;
        (status.ready && status.leading_term == Some(term)).then_some(leader)
    })
    .await
}

/// A KeepAlive through `node`, retried briefly while the leader is not ready or between quorum
/// confirmations (a client would retry too); the granted TTL.
async fn keep_alive(node: &LockNode, session: u64) -> Duration {
    let deadline = Instant::now() + Duration::from_millis(500);
    loop {
        match node.leases().keep_alive(session) {
            Ok(ttl) => return ttl,
            Err(KeepAliveError::NotReady | KeepAliveError::QuorumLost)
                if Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("keep-alive of session {session} failed: {e:?}"),
        }
    }
}

/// Whether each running node sees `session` live once it has applied what `leader` applied.
async fn live_everywhere(cell: &Cell, leader: u64, session: u64) -> Vec<(u64, bool)> {
    let index = cell.nodes[&leader]
        .state()
        .last_applied()
        .map_or(0, |l| l.index);
    let mut seen = Vec::new();
    for (id, node) in &cell.nodes {
        let applied = tokio::time::timeout(DEADLINE, node.state().wait_applied(index))
            .await
            .unwrap_or_else(|_| panic!("node {id} did not apply index {index}"));
        assert!(applied, "node {id}'s state machine is gone");
        seen.push((*id, node.state().read(|s| s.session_is_live(session))));
    }
    seen
}

/// Waits until `node` no longer sees `session` live; when that was observed.
async fn expired_on(node: &LockNode, session: u64) -> Instant {
    eventually("the session to expire", || async {
        (!node.state().read(|s| s.session_is_live(session))).then(Instant::now)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_kept_alive_through_the_leader_outlives_three_ttls() {
    let cell = start(3).await;
    let leader = ready_leader(&cell).await;
    let (session, _) = cell.open_session_with_ttl(leader, TTL_MS).await;
    let node = &cell.nodes[&leader];
    let until = Instant::now() + 3 * TTL + GRACE + Duration::from_millis(500);
    while Instant::now() < until {
        assert_eq!(keep_alive(node, session).await, TTL);
        tokio::time::sleep(TTL / 4).await;
    }
    for (id, live) in live_everywhere(&cell, leader, session).await {
        assert!(live, "node {id} lost a session that was kept alive");
    }
    assert!(node.leases().status().sessions >= 1);
    cell.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_neglected_session_is_expired_by_a_log_entry_on_every_node() {
    let cell = start(3).await;
    let leader = ready_leader(&cell).await;
    let before_open = Instant::now();
    let (session, open_index) = cell.open_session_with_ttl(leader, TTL_MS).await;
    let node = &cell.nodes[&leader];

    // Opened through a leader that had already taken over: its lease is the plain ttl, counted
    // from when the leader first saw it (after the open).
    tokio::time::sleep_until(before_open + TTL - Duration::from_millis(50)).await;
    assert!(
        node.state().read(|s| s.session_is_live(session)),
        "expired before ttl"
    );
    let expired_at = expired_on(node, session).await;
    let took = expired_at - before_open;
    assert!(took < TTL + SLACK, "expiry took {took:?}");

    // A replicated log entry ended it: every node agrees.
    let expiry_index = node.state().last_applied().unwrap().index;
    assert!(expiry_index > open_index);
    for (id, live) in live_everywhere(&cell, leader, session).await {
        assert!(!live, "node {id} still sees the expired session");
    }
    assert_eq!(
        node.leases().keep_alive(session),
        Err(KeepAliveError::SessionGone)
    );
    cell.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_answers_not_leader() {
    let cell = start(3).await;
    let leader = ready_leader(&cell).await;
    let (session, index) = cell.open_session_with_ttl(leader, TTL_MS).await;
    cell.applied_everywhere(index, session).await;
    for (id, node) in &cell.nodes {
        if *id == leader {
            continue;
        }
        assert_eq!(
            node.leases().keep_alive(session),
            Err(KeepAliveError::NotLeader),
            "follower {id}"
        );
        let status = node.leases().status();
        assert_eq!(status.leading_term, None, "follower {id}");
        assert!(!status.ready);
        assert_eq!(status.sessions, 0);
    }
    cell.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_of_an_unknown_session_is_session_gone() {
    let cell = start(1).await;
    let leader = ready_leader(&cell).await;
    let node = &cell.nodes[&leader];
    // Wait for a confirmed quorum so that the answer is about the session.
    let (session, _) = cell.open_session_with_ttl(leader, TTL_MS).await;
    keep_alive(node, session).await;
    assert_eq!(
        node.leases().keep_alive(session + 1_000),
        Err(KeepAliveError::SessionGone)
    );
    cell.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_leader_grants_ttl_plus_grace_then_expires_the_neglected_session() {
    let mut cell = start(3).await;
    let old_leader = ready_leader(&cell).await;
    let (session, index) = cell.open_session_with_ttl(old_leader, TTL_MS).await;
    assert_eq!(keep_alive(&cell.nodes[&old_leader], session).await, TTL);
    cell.applied_everywhere(index, session).await;

    // The old leader stops granting and expiring when it stops; nobody keeps the session
    // alive after this point.
    let stopped = Instant::now();
    cell.stop(old_leader).await;
    let new_leader = ready_leader(&cell).await;
    let ready_at = Instant::now();
    assert_ne!(new_leader, old_leader);
    let node = &cell.nodes[&new_leader];
    assert!(node.leases().status().sessions >= 1);

    // The new leader synced (just before `ready_at`, after the old leader stopped) and gave the
    // session ttl + grace, though no KeepAlive reached it: it lives well past `ready_at + ttl`,
    // when it would have expired without the grace, and more than ttl after the failover.
    let check_at = ready_at + TTL + GRACE - Duration::from_millis(300);
    assert!(check_at > stopped + TTL);
    tokio::time::sleep_until(check_at).await;
    for (id, live) in live_everywhere(&cell, new_leader, session).await {
        assert!(
            live,
            "node {id} lost the session within ttl + grace of the failover"
        );
    }

    // Then it expires, through the new leader's log.
    let expired_at = expired_on(node, session).await;
    let took = expired_at - stopped;
    let election = Duration::from_millis(cell.tuning.election_timeout_max_ms);
    assert!(
        took < TTL + GRACE + election + SLACK,
        "expiry took {took:?} after the failover"
    );
    for (id, live) in live_everywhere(&cell, new_leader, session).await {
        assert!(!live, "node {id} still sees the expired session");
    }
    cell.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_that_lost_its_quorum_stops_granting() {
    let mut cell = start(3).await;
    let leader = ready_leader(&cell).await;
    let (session, index) = cell.open_session_with_ttl(leader, TTL_MS).await;
    cell.applied_everywhere(index, session).await;
    assert_eq!(keep_alive(&cell.nodes[&leader], session).await, TTL);

    // Alone, the leader keeps believing it leads (openraft does not step down), but it can no
    // longer confirm a quorum, so it stops granting within the quorum window.
    let followers: Vec<u64> = cell
        .nodes
        .keys()
        .copied()
        .filter(|id| *id != leader)
        .collect();
    for id in followers {
        cell.stop(id).await;
    }
    let alone = Instant::now();
    let node = &cell.nodes[&leader];
    let refused = eventually("the isolated leader to refuse KeepAlives", || async {
        node.leases().keep_alive(session).err()
    })
    .await;
    assert!(
        matches!(
            refused,
            KeepAliveError::QuorumLost | KeepAliveError::NotLeader
        ),
        "{refused:?}"
    );
    let window = tuning().lease_options().quorum_window;
    assert!(alone.elapsed() < window + Duration::from_millis(500));
    // Nor does it propose expiries without a quorum: past the session's deadline, its log has
    // not grown.
    let last_log = node.raft().metrics().borrow().last_log_index;
    tokio::time::sleep(TTL + GRACE + Duration::from_millis(300)).await;
    assert_eq!(node.raft().metrics().borrow().last_log_index, last_log);
    assert!(node.state().read(|s| s.session_is_live(session)));
    cell.shutdown().await;
}

/// Regression: the grace is for sessions a new leader takes over, not for sessions opened
/// under a leader that has already taken over. With a long grace, an abandoned session must
/// still go after about its ttl, or a dead client's locks would be held `ttl + grace`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_opened_under_a_settled_leader_gets_no_grace() {
    let long_grace = Duration::from_secs(30);
    let tuning = RaftTuning {
        session_grace_ms: u64::try_from(long_grace.as_millis()).unwrap(),
        ..RaftTuning::default()
    };
    let cell = Cell::start_tuned(3, tuning).await;
    let leader = ready_leader(&cell).await;
    let before_open = Instant::now();
    let (session, _) = cell.open_session_with_ttl(leader, TTL_MS).await;
    let expired_at = expired_on(&cell.nodes[&leader], session).await;
    let took = expired_at - before_open;
    assert!(
        took < TTL + long_grace,
        "an abandoned session lived {took:?}, past ttl + grace"
    );
    cell.shutdown().await;
}
