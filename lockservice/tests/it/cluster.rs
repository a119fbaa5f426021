//! In-process lock-service cells over real gRPC on 127.0.0.1 ephemeral ports, each node with
//! its own temporary data directory: leader election, replication to every node, failover,
//! a restarted node catching up without initializing again, and the Raft service refusing
//! requests meant for another cell or node.
//!
//! Every wait polls a condition with a deadline; nothing sleeps to "let the election finish".
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use openraft::error::RPCError;
use openraft::network::RPCOption;
use openraft::raft::VoteRequest;
use openraft::{BasicNode, RaftNetwork, RaftNetworkFactory, Vote};
use tabula_lockservice::network::{NetworkFactory, NetworkOptions};
use tabula_lockservice::node::RaftTuning;
use tabula_lockservice::state::{Op, Request};
use tabula_proto::tabula::raft::v1::RaftRequest;
use tabula_proto::tabula::raft::v1::raft_service_client::RaftServiceClient;
use tokio::net::TcpListener;

use crate::support::{CLUSTER, Cell, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_elect_a_leader_and_apply_a_write_everywhere() {
    let cell = Cell::start(3).await;
    let leader = cell.leader().await;
    let (session, index) = cell.open_session(leader).await;
    cell.applied_everywhere(index, session).await;
    // One voter set, formed once, known to everyone.
    for node in cell.nodes.values() {
        let metrics = node.raft().metrics().borrow().clone();
        let voters: Vec<u64> = metrics.membership_config.membership().voter_ids().collect();
        assert_eq!(voters, vec![1, 2, 3]);
    }
    cell.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_leader_takes_over_and_a_restarted_node_catches_up_without_initializing() {
    let mut cell = Cell::start(3).await;
    let old_leader = cell.leader().await;
    let (first, first_index) = cell.open_session(old_leader).await;
    cell.applied_everywhere(first_index, first).await;
    let membership_log_id = *cell.nodes[&old_leader]
        .raft()
        .metrics()
        .borrow()
        .membership_config
        .log_id();

    cell.stop(old_leader).await;
    let new_leader = cell.leader().await;
    assert_ne!(new_leader, old_leader);
    let (second, second_index) = cell.open_session(new_leader).await;
    cell.applied_everywhere(second_index, second).await;

    // The old leader comes back from its data directory: initialized from its own storage,
    // with the membership entry it had, and it catches up with what it missed.
    cell.restart(old_leader).await;
    let restarted = &cell.nodes[&old_leader];
    assert!(restarted.raft().is_initialized().await.unwrap());
    cell.applied_everywhere(second_index, second).await;
    assert!(restarted.state().read(|s| s.session_is_live(first)));
    let membership_now = *restarted
        .raft()
        .metrics()
        .borrow()
        .membership_config
        .log_id();
    assert_eq!(
        membership_now, membership_log_id,
        "the cell was formed again"
    );
    // It follows the new leader, and the cell still takes writes.
    let leader = cell.leader().await;
    let (third, third_index) = cell.open_session(leader).await;
    cell.applied_everywhere(third_index, third).await;

    // Node 1 is the one that formed the cell; restarted, it must not form it again.
    if old_leader != 1 {
        cell.stop(1).await;
        cell.restart(1).await;
    }
    let node_1 = &cell.nodes[&1];
    cell.applied_everywhere(third_index, third).await;
    let membership_1 = *node_1.raft().metrics().borrow().membership_config.log_id();
    assert_eq!(
        membership_1, membership_log_id,
        "node 1 formed the cell again"
    );
    let leader = cell.leader().await;
    let (fourth, fourth_index) = cell.open_session(leader).await;
    cell.applied_everywhere(fourth_index, fourth).await;
    cell.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_behind_the_purged_log_catches_up_by_snapshot() {
    // Snapshot every 10 entries and keep no log behind it: a follower that misses more than
    // that can only catch up through InstallSnapshot over the wire.
    let tuning = RaftTuning {
        snapshot_every_entries: 10,
        entries_kept_after_snapshot: 0,
        snapshot_chunk_bytes: 256,
        ..RaftTuning::default()
    };
    let mut cell = Cell::start_tuned(3, tuning).await;
    let leader = cell.leader().await;
    let follower = *cell.nodes.keys().find(|id| **id != leader).unwrap();
    cell.stop(follower).await;

    let mut sessions = Vec::new();
    let mut last_index = 0;
    for _ in 0..40 {
        let (session, index) = cell.open_session(leader).await;
        sessions.push(session);
        last_index = index;
    }
    let raft = cell.nodes[&leader].raft().clone();
    eventually("the leader to purge its log", || {
        let purged = raft.metrics().borrow().purged;
        async move { purged.filter(|p| p.index >= 20) }
    })
    .await;

    cell.restart(follower).await;
    cell.applied_everywhere(last_index, sessions[0]).await;
    let node = &cell.nodes[&follower];
    assert!(
        node.raft().metrics().borrow().snapshot.is_some(),
        "the follower caught up without a snapshot"
    );
    let live = node
        .state()
        .read(|s| sessions.iter().all(|id| s.session_is_live(*id)));
    assert!(live, "the follower misses sessions");
    cell.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_requests_for_another_cell_or_node_are_refused() {
    let cell = Cell::start(1).await;
    cell.leader().await;
    let addr = cell.addrs[&1];
    let mut client = RaftServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();

    let other_cell = client
        .vote(RaftRequest {
            cluster_id: "another-cell".to_owned(),
            target_node: 1,
            payload: Vec::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(other_cell.code(), tonic::Code::FailedPrecondition);
    assert!(
        other_cell.message().contains("another-cell"),
        "{other_cell:?}"
    );

    let other_node = client
        .append_entries(RaftRequest {
            cluster_id: CLUSTER.to_owned(),
            target_node: 7,
            payload: Vec::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(other_node.code(), tonic::Code::FailedPrecondition);
    assert!(other_node.message().contains("node 7"), "{other_node:?}");

    // Through openraft's network trait, a refusal makes openraft back off (Unreachable)
    // rather than retry at once.
    let mut factory = NetworkFactory::new(NetworkOptions {
        cluster_id: "another-cell".to_owned(),
        ..NetworkOptions::default()
    });
    let mut peer = factory
        .new_client(1, &BasicNode::new(addr.to_string()))
        .await;
    let refused = peer
        .vote(
            VoteRequest::new(Vote::new(99, 2), None),
            RPCOption::new(Duration::from_secs(5)),
        )
        .await
        .unwrap_err();
    assert!(matches!(refused, RPCError::Unreachable(_)), "{refused:?}");

    // The right cell and node get an answer from the node's Raft (a vote at a stale term is
    // simply not granted).
    let mut factory = NetworkFactory::new(NetworkOptions {
        cluster_id: CLUSTER.to_owned(),
        ..NetworkOptions::default()
    });
    let mut peer = factory
        .new_client(1, &BasicNode::new(addr.to_string()))
        .await;
    let answer = peer
        .vote(
            VoteRequest::new(Vote::new(0, 2), None),
            RPCOption::new(Duration::from_secs(5)),
        )
        .await
        .unwrap();
    assert!(!answer.vote_granted);
    cell.shutdown().await;
}

/// Accepts connections on a port of its own, counts them and relays each to `target`.
async fn counting_relay(target: std::net::SocketAddr) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut outbound = tokio::net::TcpStream::connect(target).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    (addr, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_for_one_peer_shares_one_connection() {
    // openraft asks for a fresh client for every leadership check and election; each must not
    // cost a new connection (under load, connecting outlasted the heartbeat timeout).
    let cell = Cell::start(1).await;
    cell.leader().await;
    let (relay, accepted) = counting_relay(cell.addrs[&1]).await;
    let mut factory = NetworkFactory::new(NetworkOptions {
        cluster_id: CLUSTER.to_owned(),
        ..NetworkOptions::default()
    });
    let node = BasicNode::new(relay.to_string());
    for _ in 0..5 {
        let mut peer = factory.clone().new_client(1, &node).await;
        let answer = peer
            .vote(
                VoteRequest::new(Vote::new(0, 2), None),
                RPCOption::new(Duration::from_secs(5)),
            )
            .await
            .unwrap();
        assert!(!answer.vote_granted);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    // A node that moved to another address gets a channel of its own.
    let (moved, moved_accepted) = counting_relay(cell.addrs[&1]).await;
    let mut peer = factory
        .new_client(1, &BasicNode::new(moved.to_string()))
        .await;
    peer.vote(
        VoteRequest::new(Vote::new(0, 2), None),
        RPCOption::new(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    assert_eq!(moved_accepted.load(Ordering::SeqCst), 1);
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    cell.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_peer_is_reported_as_unreachable() {
    // A port nothing listens on: bind, read, close.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let mut factory = NetworkFactory::new(NetworkOptions::default());
    let mut peer = factory
        .new_client(2, &BasicNode::new(addr.to_string()))
        .await;
    let err = peer
        .vote(
            VoteRequest::new(Vote::new(1, 1), None),
            RPCOption::new(Duration::from_secs(5)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
}

#[tokio::test]
async fn an_oversized_append_is_split_and_an_unsplittable_one_backs_off() {
    use openraft::raft::AppendEntriesRequest;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
    use tabula_lockservice::types::TypeConfig;

    let entry = |index: u64| Entry::<TypeConfig> {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Request {
            client: None,
            op: Op::Create {
                path: format!("/f{index}"),
                contents: vec![7; 8 << 10],
                ephemeral_session: None,
            },
        }),
    };
    let append = |entries: Vec<Entry<TypeConfig>>| AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(1, 1),
        prev_log_id: None,
        entries,
        leader_commit: None,
    };
    // The size check happens before any connection: no server is needed.
    let mut factory = NetworkFactory::new(NetworkOptions {
        max_message_bytes: 4096 + (12 << 10),
        ..NetworkOptions::default()
    });
    let mut peer = factory.new_client(2, &BasicNode::new("127.0.0.1:9")).await;
    let option = RPCOption::new(Duration::from_secs(1));

    let err = peer
        .append_entries(append((1..=4).map(entry).collect()), option.clone())
        .await
        .unwrap_err();
    let RPCError::PayloadTooLarge(too_large) = err else {
        panic!("expected PayloadTooLarge, got {err:?}");
    };
    assert_eq!(too_large.entries_hint(), 2);

    let err = peer
        .append_entries(
            append(vec![Entry {
                payload: EntryPayload::Normal(Request {
                    client: None,
                    op: Op::Create {
                        path: "/big".to_owned(),
                        contents: vec![7; 64 << 10],
                        ephemeral_session: None,
                    },
                }),
                ..entry(1)
            }]),
            option,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
}
