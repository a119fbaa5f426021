//! The `LockService` gRPC API at the wire level, against an in-process 3-node cell: redirects
//! from followers, the error code of every failure a client acts on, blocking acquisition woken
//! by a release, watches in log order, and membership changes.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::support::{Cell, eventually};
use tabula_common::{Code, Error};
use tabula_proto::tabula::lock::v1 as pb;
use tabula_proto::tabula::lock::v1::lock_service_client::LockServiceClient;
use tonic::transport::Channel;

async fn client(cell: &Cell, id: u64) -> LockServiceClient<Channel> {
    LockServiceClient::connect(format!("http://{}", cell.addrs[&id]))
        .await
        .unwrap()
}

fn code<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> Code {
    Error::from(result.unwrap_err()).code
}

fn write_id(client_id: u64, seq: u64) -> Option<pb::WriteId> {
    Some(pb::WriteId { client_id, seq })
}

fn set(path: &str, contents: &[u8], seq: u64, if_generation: Option<u64>) -> pb::SetRequest {
    pb::SetRequest {
        write_id: write_id(7, seq),
        path: path.to_owned(),
        contents: contents.to_vec(),
        if_generation,
    }
}

async fn open_session(leader: &mut LockServiceClient<Channel>, ttl_ms: u64, seq: u64) -> u64 {
    leader
        .open_session(pb::OpenSessionRequest {
            write_id: write_id(7, seq),
            ttl_ms,
        })
        .await
        .unwrap()
        .into_inner()
        .session_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn followers_redirect_and_every_failure_has_its_code() {
    let cell = Cell::start(3).await;
    let leader_id = cell.leader().await;
    let follower_id = *cell.addrs.keys().find(|id| **id != leader_id).unwrap();
    let mut follower = client(&cell, follower_id).await;
    let mut leader = client(&cell, leader_id).await;

    let create = pb::CreateRequest {
        write_id: write_id(7, 1),
        path: "/a".into(),
        contents: b"one".to_vec(),
        ephemeral_session_id: 0,
    };
    let redirected = Error::from(follower.create(create.clone()).await.unwrap_err());
    assert_eq!(
        redirected.code,
        Code::NotLeader {
            hint: Some(cell.addrs[&leader_id].to_string())
        },
        "{redirected}"
    );
    let created = leader.create(create.clone()).await.unwrap().into_inner();
    // The same write id again: deduplicated, same answer, not AlreadyExists.
    let retried = leader.create(create).await.unwrap().into_inner();
    assert_eq!(retried, created);

    let got = leader
        .get(pb::GetRequest { path: "/a".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.contents, b"one");
    assert_eq!(got.generation, created.generation);
    assert!(got.revision >= created.generation);

    // Compare-and-set: a stale generation aborts, the current one succeeds.
    let stale = leader
        .set(set("/a", b"two", 2, Some(got.generation + 100)))
        .await;
    assert_eq!(code(stale), Code::Aborted);
    let changed = leader
        .set(set("/a", b"two", 3, Some(got.generation)))
        .await
        .unwrap()
        .into_inner();
    assert!(changed.generation > got.generation);

    let duplicate = pb::CreateRequest {
        write_id: write_id(7, 4),
        path: "/a".into(),
        contents: vec![],
        ephemeral_session_id: 0,
    };
    assert_eq!(code(leader.create(duplicate).await), Code::AlreadyExists);
    let orphan = pb::CreateRequest {
        write_id: write_id(7, 5),
        path: "/no/parent".into(),
        contents: vec![],
        ephemeral_session_id: 0,
    };
    assert_eq!(code(leader.create(orphan).await), Code::FailedPrecondition);
    let missing = leader.get(pb::GetRequest { path: "/b".into() }).await;
    assert_eq!(code(missing), Code::NotFound);
    let bad = leader
        .get(pb::GetRequest {
            path: "a/../b".into(),
        })
        .await;
    assert_eq!(code(bad), Code::InvalidArgument);
    let bad_list = leader
        .list(pb::ListRequest {
            path: String::new(),
        })
        .await;
    assert_eq!(code(bad_list), Code::InvalidArgument);
    let no_mode = leader
        .acquire(pb::AcquireRequest {
            path: "/a".into(),
            session_id: 1,
            mode: 0,
            wait_ms: 0,
        })
        .await;
    assert_eq!(code(no_mode), Code::InvalidArgument);
    // Until the new leader's lease keeper has confirmed its quorum it answers Unavailable.
    let no_session = eventually("the lease keeper to be ready", || {
        let mut leader = leader.clone();
        async move {
            let r = leader
                .keep_alive(pb::KeepAliveRequest {
                    session_id: 999_999,
                })
                .await;
            let c = code(r);
            (c != Code::Unavailable).then_some(c)
        }
    })
    .await;
    assert_eq!(no_session, Code::SessionExpired);
    let zero_ttl = leader
        .open_session(pb::OpenSessionRequest {
            write_id: write_id(7, 6),
            ttl_ms: 0,
        })
        .await;
    assert_eq!(code(zero_ttl), Code::InvalidArgument);
    let listed = leader
        .list(pb::ListRequest { path: "/".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.children, vec!["a".to_owned()]);
    cell.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blocked_acquire_gets_the_lock_when_the_holder_releases_and_watches_see_it_in_order() {
    let cell = Cell::start(3).await;
    let leader_id = cell.leader().await;
    let follower_id = *cell.addrs.keys().find(|id| **id != leader_id).unwrap();
    let mut leader = client(&cell, leader_id).await;
    let first = open_session(&mut leader, 10_000, 1).await;
    let second = open_session(&mut leader, 10_000, 2).await;
    let created = leader
        .create(pb::CreateRequest {
            write_id: write_id(7, 3),
            path: "/lock".into(),
            contents: vec![],
            ephemeral_session_id: 0,
        })
        .await
        .unwrap()
        .into_inner();

    // A watch on a follower, from the creation on.
    let mut watch = client(&cell, follower_id)
        .await
        .watch(pb::WatchRequest {
            prefix: "/lock".into(),
            from_revision: created.generation,
        })
        .await
        .unwrap()
        .into_inner();

    let acquire = |session: u64, wait_ms: u64| pb::AcquireRequest {
        path: "/lock".into(),
        session_id: session,
        mode: pb::LockMode::Exclusive as i32,
        wait_ms,
    };
    let held = leader
        .acquire(acquire(first, 0))
        .await
        .unwrap()
        .into_inner();
    let held = held.sequencer.unwrap();
    // Acquiring again is idempotent: the same sequencer.
    let again = leader
        .acquire(acquire(first, 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.sequencer.as_ref(), Some(&held));
    let tried = leader
        .acquire(acquire(second, 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tried.sequencer, None);

    let mut waiter = leader.clone();
    let mut blocked = tokio::spawn(async move { waiter.acquire(acquire(second, 20_000)).await });
    // The waiter is blocked: nothing granted while the first session holds the lock.
    let early = tokio::time::timeout(Duration::from_millis(300), &mut blocked).await;
    assert!(early.is_err(), "granted while held: {early:?}");
    leader
        .release(pb::ReleaseRequest {
            write_id: write_id(7, 4),
            path: "/lock".into(),
            session_id: first,
        })
        .await
        .unwrap();
    let granted = blocked
        .await
        .unwrap()
        .unwrap()
        .into_inner()
        .sequencer
        .unwrap();
    assert!(granted.generation > held.generation);
    let check = |s: pb::Sequencer| pb::CheckSequencerRequest { sequencer: Some(s) };
    let old = leader.check_sequencer(check(held.clone())).await.unwrap();
    assert!(!old.into_inner().current);
    let new = leader
        .check_sequencer(check(granted.clone()))
        .await
        .unwrap();
    assert!(new.into_inner().current);

    // A bounded wait that runs out answers "not acquired", not an error.
    let timed_out = leader.acquire(acquire(first, 200)).await.unwrap();
    assert_eq!(timed_out.into_inner().sequencer, None);

    let mut seen = Vec::new();
    while seen.len() < 4 {
        let batch = watch.message().await.unwrap().unwrap();
        seen.extend(batch.events);
    }
    use pb::event::Kind;
    let kinds: Vec<_> = seen
        .iter()
        .map(|e| match &e.kind {
            Some(Kind::Created(_)) => "created".to_owned(),
            Some(Kind::Locked(l)) => format!("locked {}", l.session_id),
            Some(Kind::Unlocked(u)) => format!("unlocked {}", u.session_id),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            "created".to_owned(),
            format!("locked {first}"),
            format!("unlocked {first}"),
            format!("locked {second}"),
        ]
    );
    assert!(seen.windows(2).all(|w| w[0].revision <= w[1].revision));
    cell.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_nobody_answers_for_is_refused_a_vote() {
    let cell = Cell::start(3).await;
    let leader_id = cell.leader().await;
    let mut leader = client(&cell, leader_id).await;
    // A port that was free a moment ago: nothing answers there.
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let started = std::time::Instant::now();
    let refused = leader
        .add_node(pb::AddNodeRequest {
            id: 4,
            addr: addr.to_string(),
        })
        .await;
    let message = refused
        .as_ref()
        .map_or_else(|s| s.message().to_owned(), |_| String::new());
    assert_eq!(code(refused), Code::FailedPrecondition, "{message}");
    assert!(message.contains("without a vote"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(30));
    let status = leader
        .status(pb::StatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    let voters: Vec<u64> = status
        .members
        .iter()
        .filter(|m| m.voter)
        .map(|m| m.id)
        .collect();
    assert_eq!(voters, [1, 2, 3], "{status:?}");
    // It stays a learner until removed, and the cell still writes with its three voters.
    assert!(status.members.iter().any(|m| m.id == 4 && !m.voter));
    leader
        .remove_node(pb::RemoveNodeRequest { id: 4 })
        .await
        .unwrap();
    cell.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fourth_node_joins_as_a_voter_and_leaves_again() {
    let mut cell = Cell::start(3).await;
    let leader_id = cell.leader().await;
    let mut leader = client(&cell, leader_id).await;
    // Node 4 uses a fresh directory and knows the cell only by its peers list.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr4 = listener.local_addr().unwrap();
    let dir4 = tempfile::tempdir().unwrap();
    let mut config = cell.config(1);
    config.id = 4;
    config.listen = addr4;
    config.data_dir = dir4.path().to_path_buf();
    config.peers.insert(4, addr4.to_string());
    let node4 = tabula_lockservice::node::LockNode::start_on(config, listener)
        .await
        .unwrap();

    let status = leader
        .add_node(pb::AddNodeRequest {
            id: 4,
            addr: addr4.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    let member4 = status.members.iter().find(|m| m.id == 4).unwrap();
    assert!(member4.voter, "{status:?}");
    assert_eq!(status.leader_id, leader_id);
    let again = leader
        .add_node(pb::AddNodeRequest {
            id: 4,
            addr: addr4.to_string(),
        })
        .await;
    assert_eq!(code(again), Code::AlreadyExists);

    let removed = leader
        .remove_node(pb::RemoveNodeRequest { id: 4 })
        .await
        .unwrap()
        .into_inner();
    assert!(removed.members.iter().all(|m| m.id != 4), "{removed:?}");
    let unknown = leader.remove_node(pb::RemoveNodeRequest { id: 9 }).await;
    assert_eq!(code(unknown), Code::NotFound);
    eventually("every node to see three members", || async {
        let mut c = client(&cell, leader_id).await;
        let s = c
            .status(pb::StatusRequest::default())
            .await
            .ok()?
            .into_inner();
        (s.members.len() == 3 && s.members.iter().all(|m| m.has_matched)).then_some(())
    })
    .await;
    node4.shutdown().await.unwrap();
    cell.stop(leader_id).await;
    cell.shutdown().await;
}

/// `Status` with every member's own applied index, from any member: `ask_members`.
async fn status_with_members(cell: &Cell, id: u64) -> pb::StatusResponse {
    client(cell, id)
        .await
        .status(pb::StatusRequest { ask_members: true })
        .await
        .unwrap()
        .into_inner()
}

/// Each member's applied index as `status` reports it (`None`: unknown), in id order.
fn applied(status: &pb::StatusResponse) -> Vec<(u64, Option<u64>)> {
    status
        .members
        .iter()
        .map(|m| (m.id, m.has_applied.then_some(m.applied_index)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_reports_every_members_applied_index_and_marks_a_stopped_one_unreachable() {
    let mut cell = Cell::start(3).await;
    let leader_id = cell.leader().await;
    let follower_id = *cell.addrs.keys().find(|id| **id != leader_id).unwrap();
    let mut leader = client(&cell, leader_id).await;
    leader
        .create(pb::CreateRequest {
            write_id: write_id(7, 1),
            path: "/applied".into(),
            contents: vec![],
            ephemeral_session_id: 0,
        })
        .await
        .unwrap();
    for seq in 2..=5 {
        leader
            .set(set("/applied", format!("v{seq}").as_bytes(), seq, None))
            .await
            .unwrap();
    }
    let target = cell.nodes[&leader_id]
        .raft()
        .metrics()
        .borrow()
        .last_applied
        .unwrap()
        .index;

    // Asked of the leader or of a follower, every member reports its own applied index, which
    // reaches what the leader had applied after the writes; the leader's replication progress
    // is still there (only the leader knows it).
    for asked in [leader_id, follower_id] {
        let status = eventually(
            "every member to report the leader's applied index",
            || async {
                let status = status_with_members(&cell, asked).await;
                applied(&status)
                    .iter()
                    .all(|(_, a)| a.is_some_and(|a| a >= target))
                    .then_some(status)
            },
        )
        .await;
        assert_eq!(status.node_id, asked);
        assert_eq!(
            status.members.iter().map(|m| m.id).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert!(status.members.iter().all(|m| m.unreachable.is_empty()));
        assert_eq!(
            status.members.iter().all(|m| m.has_matched),
            asked == leader_id,
            "{status:?}"
        );
    }
    // Without `ask_members` a node reports only its own applied index and asks nobody.
    let plain = client(&cell, follower_id)
        .await
        .status(pb::StatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    for m in &plain.members {
        assert_eq!(m.has_applied, m.id == follower_id, "{plain:?}");
        assert!(m.unreachable.is_empty(), "{plain:?}");
    }
    let me = plain.members.iter().find(|m| m.id == follower_id).unwrap();
    assert_eq!(me.applied_index, plain.applied_index);

    // A stopped member: the Status still answers at once, that member unknown with a reason,
    // the others with their applied index.
    cell.stop(follower_id).await;
    let started = std::time::Instant::now();
    let status = status_with_members(&cell, leader_id).await;
    assert!(started.elapsed() < Duration::from_secs(5), "{status:?}");
    for m in &status.members {
        if m.id == follower_id {
            assert!(!m.has_applied, "{status:?}");
            assert!(m.unreachable.contains("unavailable"), "{status:?}");
        } else {
            assert!(m.has_applied && m.applied_index >= target, "{status:?}");
            assert!(m.unreachable.is_empty(), "{status:?}");
        }
    }
    cell.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watch_from_before_the_retained_history_ends_with_compacted_and_its_oldest_revision() {
    let tuning = tabula_lockservice::node::RaftTuning {
        watch_history_events: 4,
        ..tabula_lockservice::node::RaftTuning::default()
    };
    let cell = Cell::start_tuned(3, tuning).await;
    let leader_id = cell.leader().await;
    let follower_id = *cell.addrs.keys().find(|id| **id != leader_id).unwrap();
    let mut leader = client(&cell, leader_id).await;
    // Ten creations, one event each: the history keeps the last four.
    let mut generations = Vec::new();
    for seq in 1..=10 {
        let written = leader
            .create(pb::CreateRequest {
                write_id: write_id(7, seq),
                path: format!("/h{seq}"),
                contents: vec![],
                ephemeral_session_id: 0,
            })
            .await
            .unwrap()
            .into_inner();
        generations.push(written.generation);
    }
    let oldest = generations[5] + 1;
    for id in [leader_id, follower_id] {
        // The follower may not have applied the last creations yet: wait until it has.
        let applied = cell.nodes[&id].state().wait_applied(generations[9]).await;
        assert!(applied, "node {id}'s state machine is gone");
        // The call itself fails, before any stream: from the first creation, and from just
        // before the oldest watchable revision.
        let mut node = client(&cell, id).await;
        for from in [generations[0], oldest - 1] {
            let status = node
                .watch(pb::WatchRequest {
                    prefix: "/h".into(),
                    from_revision: from,
                })
                .await
                .unwrap_err();
            assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
            assert_eq!(
                Error::from(status).code,
                Code::Compacted { oldest },
                "node {id}"
            );
        }

        // From the oldest watchable revision on, the retained events.
        let mut stream = node
            .watch(pb::WatchRequest {
                prefix: "/h".into(),
                from_revision: oldest,
            })
            .await
            .unwrap()
            .into_inner();
        let mut seen = Vec::new();
        while seen.len() < 4 {
            let batch = stream.message().await.unwrap().unwrap();
            seen.extend(batch.events.into_iter().map(|e| (e.revision, e.path)));
        }
        let expected: Vec<(u64, String)> = (7..=10)
            .map(|seq| (generations[seq - 1], format!("/h{seq}")))
            .collect();
        assert_eq!(seen, expected, "node {id}");
    }
    cell.shutdown().await;
}
