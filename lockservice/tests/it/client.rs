//! `LockClient` against an in-process 3-node cell: files and compare-and-set, writes sent to a
//! follower, session leases kept across several TTLs and across the leader's shutdown,
//! ephemeral files, contending sessions and sequencers, watches that resume on another node
//! without repeats, and the cell's status.
//!
//! Every wait polls a condition with a deadline; nothing sleeps to "let the election finish".
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::support::{Cell, eventually};
use tabula_common::Code;
use tabula_lockservice::client::{
    ClientOptions, LockClient, MemberStatus, SessionState, WatchStream,
};
use tabula_lockservice::state::{Event, EventKind, LockMode};

/// A client of `cell` that knows the nodes in the order `ids`.
fn client_of(cell: &Cell, ids: &[u64], options: ClientOptions) -> LockClient {
    let addrs: Vec<String> = ids.iter().map(|id| cell.addrs[id].to_string()).collect();
    LockClient::new(&addrs, options).unwrap()
}

fn client(cell: &Cell) -> LockClient {
    let ids: Vec<u64> = cell.addrs.keys().copied().collect();
    client_of(cell, &ids, ClientOptions::default())
}

fn followers(cell: &Cell, leader: u64) -> Vec<u64> {
    cell.addrs
        .keys()
        .copied()
        .filter(|id| *id != leader)
        .collect()
}

/// The next event, failing the test if none comes within 10 s.
async fn next_event(watch: &mut WatchStream) -> Event {
    tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("no event within 10 s")
        .expect("the watch ended")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn files_are_created_read_set_with_compare_and_set_listed_and_deleted() {
    let cell = Cell::start(3).await;
    cell.leader().await;
    let c = client(&cell);

    let g1 = c.create("/a", b"one").await.unwrap();
    let file = c.get("/a").await.unwrap();
    assert_eq!(file.contents, b"one");
    assert_eq!(file.generation, g1);
    assert_eq!(file.ephemeral_session, None);
    assert!(file.lock_holders.is_empty());
    assert!(file.revision >= g1);
    assert_eq!(
        c.create("/a", b"again").await.unwrap_err().code,
        Code::AlreadyExists
    );

    let g2 = c.set("/a", b"two", Some(g1)).await.unwrap();
    assert!(g2 > g1);
    let stale = c.set("/a", b"three", Some(g1)).await.unwrap_err();
    assert_eq!(stale.code, Code::Aborted, "{stale}");
    assert_eq!(c.get("/a").await.unwrap().contents, b"two");
    let g3 = c.set("/a", b"three", None).await.unwrap();
    assert!(g3 > g2);

    c.create("/a/b", b"").await.unwrap();
    c.create("/c", b"").await.unwrap();
    let root = c.list("/").await.unwrap();
    assert_eq!(root.children, ["a", "c"]);
    assert!(root.revision > g3);
    assert_eq!(c.list("/a").await.unwrap().children, ["b"]);

    let has_children = c.delete("/a", None).await.unwrap_err();
    assert_eq!(has_children.code, Code::FailedPrecondition);
    c.delete("/a/b", None).await.unwrap();
    assert_eq!(
        c.delete("/a", Some(g2)).await.unwrap_err().code,
        Code::Aborted
    );
    c.delete("/a", Some(g3)).await.unwrap();
    assert_eq!(c.get("/a").await.unwrap_err().code, Code::NotFound);
    assert_eq!(c.list("/").await.unwrap().children, ["c"]);

    // Bad input is the server's InvalidArgument, not a panic.
    assert_eq!(
        c.create("", b"").await.unwrap_err().code,
        Code::InvalidArgument
    );
    assert_eq!(
        c.get("no-slash").await.unwrap_err().code,
        Code::InvalidArgument
    );
    cell.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_sent_to_a_follower_succeeds_through_the_redirect() {
    let cell = Cell::start(3).await;
    let leader = cell.leader().await;
    let follower = followers(&cell, leader)[0];
    // The client knows only the follower: the leader's address comes from the hint.
    let c = client_of(&cell, &[follower], ClientOptions::default());
    let generation = c.create("/via-follower", b"x").await.unwrap();
    assert_eq!(c.get("/via-follower").await.unwrap().generation, generation);
    let status = c.status().await.unwrap();
    assert_eq!(status.node_id, leader);
    assert_eq!(
        status.leader,
        Some((leader, cell.addrs[&leader].to_string()))
    );
    cell.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_status_comes_from_the_leader_with_every_members_progress() {
    let cell = Cell::start(3).await;
    let leader = cell.leader().await;
    let follower = followers(&cell, leader)[0];
    let c = client_of(&cell, &[follower], ClientOptions::default());
    let created = c.create("/s", b"").await.unwrap();
    let status = c.status().await.unwrap();
    assert_eq!(status.node_id, leader);
    assert!(status.term > 0);
    assert!(status.applied_index > 0);
    assert_eq!(status.members.len(), 3);
    for m in &status.members {
        assert!(m.voter);
        assert_eq!(m.addr, cell.addrs[&m.id].to_string());
        assert!(m.matched_index.is_some(), "{m:?}");
    }
    // Every member's own applied index, asked by the leader, reaches the creation.
    let status = eventually("every member to have applied the creation", || async {
        let status = c.status().await.ok()?;
        let applied = |m: &MemberStatus| m.applied.index().is_some_and(|a| a >= created);
        status.members.iter().all(applied).then_some(status)
    })
    .await;
    let me = status.members.iter().find(|m| m.id == leader).unwrap();
    assert!(
        me.applied.index() <= Some(status.applied_index),
        "{status:?}"
    );
    // JSON, as the CLI prints it.
    let json = serde_json::to_string(&status).unwrap();
    assert!(json.contains("matched_index"), "{json}");
    assert!(json.contains("applied"), "{json}");

    // Membership changes go to the leader too; the answer is the new membership.
    let other = followers(&cell, leader)[1];
    let after = c.remove_node(other).await.unwrap();
    let ids: Vec<u64> = after.members.iter().map(|m| m.id).collect();
    assert!(!ids.contains(&other), "{after:?}");
    assert_eq!(ids.len(), 2);
    c.create("/after-removal", b"").await.unwrap();
    cell.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_keeps_its_lease_for_several_ttls() {
    let cell = Cell::start(3).await;
    cell.leader().await;
    let options = ClientOptions {
        session_ttl: Duration::from_secs(1),
        ..ClientOptions::default()
    };
    let c = client_of(&cell, &[1, 2, 3], options);
    let session = c.open_session().await.unwrap();
    let mut changes = session.subscribe();
    session.create_ephemeral("/alive", b"").await.unwrap();
    let until = tokio::time::Instant::now() + Duration::from_millis(3_500);
    while tokio::time::Instant::now() < until {
        assert_eq!(session.state(), SessionState::Safe);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !changes.has_changed().unwrap(),
        "the state moved: {:?}",
        *changes.borrow_and_update()
    );
    // The cell agrees: the session's ephemeral file is still there.
    let file = c.get("/alive").await.unwrap();
    assert_eq!(file.ephemeral_session, Some(session.id()));
    assert_eq!(format!("{}", session.state()), "safe");
    session.close().await.unwrap();
    cell.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ephemeral_file_goes_when_its_session_closes() {
    let cell = Cell::start(3).await;
    cell.leader().await;
    let c = client(&cell);
    c.create("/servers", b"").await.unwrap();
    let session = c.open_session().await.unwrap();
    let id = session.id();
    let mut changes = session.subscribe();
    session
        .create_ephemeral("/servers/1", b"host:1")
        .await
        .unwrap();
    assert_eq!(
        c.get("/servers/1").await.unwrap().ephemeral_session,
        Some(id)
    );
    session.close().await.unwrap();
    assert_eq!(c.get("/servers/1").await.unwrap_err().code, Code::NotFound);
    assert_eq!(
        c.list("/servers").await.unwrap().children,
        Vec::<String>::new()
    );
    // Subscribers hear the end.
    changes.changed().await.unwrap();
    assert_eq!(*changes.borrow(), SessionState::Expired);
    cell.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contending_sessions_take_the_lock_in_turn_and_old_sequencers_go_stale() {
    let cell = Cell::start(3).await;
    cell.leader().await;
    let c = client(&cell);
    c.create("/master", b"").await.unwrap();
    let first = c.open_session().await.unwrap();
    let second = c.open_session().await.unwrap();

    let s1 = first
        .acquire("/master", LockMode::Exclusive, None)
        .await
        .unwrap()
        .expect("a free lock is granted");
    assert_eq!(s1.path, "/master");
    assert_eq!(s1.mode, LockMode::Exclusive);
    // Acquiring again answers the same sequencer (retries are safe).
    let again = first
        .acquire("/master", LockMode::Exclusive, None)
        .await
        .unwrap();
    assert_eq!(again, Some(s1.clone()));
    assert!(c.check_sequencer(&s1).await.unwrap());

    // The second session: a try fails, a short wait runs out.
    assert_eq!(
        second
            .acquire("/master", LockMode::Exclusive, None)
            .await
            .unwrap(),
        None
    );
    let short = second
        .acquire(
            "/master",
            LockMode::Shared,
            Some(Duration::from_millis(200)),
        )
        .await
        .unwrap();
    assert_eq!(short, None);

    // A long wait is woken by the release.
    let mut waiter = tokio::spawn(async move {
        let got = second
            .acquire(
                "/master",
                LockMode::Exclusive,
                Some(Duration::from_secs(10)),
            )
            .await;
        (second, got)
    });
    // Not granted while the first session holds the lock.
    let early = tokio::time::timeout(Duration::from_millis(200), &mut waiter).await;
    assert!(early.is_err(), "granted while held");
    first.release("/master").await.unwrap();
    let (second, got) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    let s2 = got.unwrap().expect("the lock came free");
    assert!(s2.generation > s1.generation);
    assert!(!c.check_sequencer(&s1).await.unwrap());
    assert!(c.check_sequencer(&s2).await.unwrap());
    let holders = c.get("/master").await.unwrap().lock_holders;
    assert_eq!(holders.len(), 1);
    assert_eq!(holders[0].session, second.id());

    // A closed session's lock frees.
    second.close().await.unwrap();
    assert!(!c.check_sequencer(&s2).await.unwrap());
    first.close().await.unwrap();
    cell.shutdown().await;
}

/// `(path, kind)` of events, for comparing with what was done.
fn shape(events: &[Event]) -> Vec<(String, EventKind)> {
    events
        .iter()
        .map(|e| (e.path.clone(), e.kind.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watch_delivers_events_in_order_and_resumes_on_another_node_without_repeats() {
    let mut cell = Cell::start(3).await;
    let leader = cell.leader().await;
    let follower = followers(&cell, leader)[0];
    let writer = client(&cell);
    let created = writer.create("/w", b"").await.unwrap();
    // The watching client has no leader cached and lists the follower first: its stream is
    // served there.
    let mut order = vec![follower];
    order.extend(cell.addrs.keys().copied().filter(|id| *id != follower));
    let watcher = client_of(&cell, &order, ClientOptions::default());
    let mut watch = watcher.watch("/w/", created + 1).await.unwrap();
    // Another from "now on" (a read's revision + 1), through the leader.
    let mut from_now = writer.watch("/w/", 0).await.unwrap();

    let session = writer.open_session().await.unwrap();
    let sid = session.id();
    writer.create("/w/f", b"1").await.unwrap();
    writer.set("/w/f", b"2", None).await.unwrap();
    let seq = session
        .acquire("/w/f", LockMode::Exclusive, None)
        .await
        .unwrap()
        .unwrap();
    session.release("/w/f").await.unwrap();
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(next_event(&mut watch).await);
    }
    assert_eq!(
        shape(&got),
        [
            (
                "/w/f".to_owned(),
                EventKind::Created {
                    ephemeral_session: None
                }
            ),
            ("/w/f".to_owned(), EventKind::Changed),
            (
                "/w/f".to_owned(),
                EventKind::Locked {
                    session: sid,
                    mode: LockMode::Exclusive,
                    generation: seq.generation
                }
            ),
            (
                "/w/f".to_owned(),
                EventKind::Unlocked {
                    session: sid,
                    mode: LockMode::Exclusive
                }
            ),
        ]
    );

    // The node serving the stream stops; the cell goes on with the other two.
    cell.stop(follower).await;
    // An ephemeral file locked by its session: closing the session deletes and unlocks it in
    // one log entry (several events at one revision).
    session.create_ephemeral("/w/e", b"").await.unwrap();
    session
        .acquire("/w/e", LockMode::Shared, None)
        .await
        .unwrap()
        .unwrap();
    writer.delete("/w/f", None).await.unwrap();
    session.close().await.unwrap();
    writer.create("/w/g", b"").await.unwrap();

    // Everything after the stop, once, in order.
    let mut after = Vec::new();
    while !after.iter().any(|e: &Event| e.path == "/w/g") {
        after.push(next_event(&mut watch).await);
    }
    let after_shape = shape(&after);
    assert_eq!(
        after_shape[0],
        (
            "/w/e".to_owned(),
            EventKind::Created {
                ephemeral_session: Some(sid)
            }
        )
    );
    assert!(
        matches!(after_shape[1], (ref p, EventKind::Locked { session, mode: LockMode::Shared, .. }) if p == "/w/e" && session == sid)
    );
    assert_eq!(after_shape[2], ("/w/f".to_owned(), EventKind::Deleted));
    // Closing the session: /w/e unlocked and deleted (one revision), in the cell's order.
    let closing: Vec<_> = after_shape[3..after_shape.len() - 1].to_vec();
    assert_eq!(closing.len(), 2, "{closing:?}");
    assert!(closing.contains(&("/w/e".to_owned(), EventKind::Deleted)));
    assert!(closing.contains(&(
        "/w/e".to_owned(),
        EventKind::Unlocked {
            session: sid,
            mode: LockMode::Shared
        }
    )));
    assert_eq!(after[3].revision, after[4].revision);
    assert_eq!(
        after_shape.last().unwrap(),
        &(
            "/w/g".to_owned(),
            EventKind::Created {
                ephemeral_session: None
            }
        )
    );
    let all: Vec<Event> = got.into_iter().chain(after).collect();
    for e in &all {
        assert_eq!(&next_event(&mut from_now).await, e);
    }
    assert!(
        all.windows(2).all(|w| w[0].revision <= w[1].revision),
        "{all:?}"
    );
    assert!(all.windows(2).all(|w| w[0] != w[1]), "{all:?}");
    cell.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_survives_the_leaders_shutdown() {
    let mut cell = Cell::start(3).await;
    let leader = cell.leader().await;
    let options = ClientOptions {
        session_ttl: Duration::from_secs(2),
        ..ClientOptions::default()
    };
    let c = client_of(&cell, &[1, 2, 3], options);
    c.create("/lock", b"").await.unwrap();
    let session = c.open_session().await.unwrap();
    session.create_ephemeral("/mine", b"").await.unwrap();
    let seq = session
        .acquire("/lock", LockMode::Exclusive, None)
        .await
        .unwrap()
        .unwrap();

    // Record every state the session goes through.
    let mut changes = session.subscribe();
    let recorder = tokio::spawn(async move {
        let mut seen = Vec::new();
        while changes.changed().await.is_ok() {
            let state = *changes.borrow_and_update();
            seen.push(state);
            if state == SessionState::Expired {
                break;
            }
        }
        seen
    });

    cell.stop(leader).await;
    let new_leader = cell.leader().await;
    assert_ne!(new_leader, leader);
    // Through the failover and two more TTLs the session is never expired, and ends safe.
    eventually("the session safe under the new leader", || async {
        (session.state() == SessionState::Safe).then_some(())
    })
    .await;
    let until = tokio::time::Instant::now() + Duration::from_secs(4);
    while tokio::time::Instant::now() < until {
        assert_ne!(session.state(), SessionState::Expired);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(session.state(), SessionState::Safe);
    // The cell kept the session's lock and ephemeral file.
    assert!(c.check_sequencer(&seq).await.unwrap());
    assert_eq!(
        c.get("/mine").await.unwrap().ephemeral_session,
        Some(session.id())
    );
    session.release("/lock").await.unwrap();
    session.close().await.unwrap();
    let seen = recorder.await.unwrap();
    // Closing is the only way it ended.
    assert_eq!(seen.last(), Some(&SessionState::Expired), "{seen:?}");
    assert!(
        seen[..seen.len() - 1]
            .iter()
            .all(|s| *s != SessionState::Expired),
        "{seen:?}"
    );
    cell.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_whose_cell_is_gone_goes_into_jeopardy_then_expires() {
    let mut cell = Cell::start(1).await;
    cell.leader().await;
    let options = ClientOptions {
        session_ttl: Duration::from_secs(1),
        grace: Duration::from_secs(1),
        op_deadline: Duration::from_secs(1),
        ..ClientOptions::default()
    };
    let c = client_of(&cell, &[1], options);
    let session = c.open_session().await.unwrap();
    let mut changes = session.subscribe();
    let recorder = tokio::spawn(async move {
        let mut seen = Vec::new();
        while changes.changed().await.is_ok() {
            seen.push(*changes.borrow_and_update());
        }
        seen
    });
    cell.stop(1).await;
    eventually("jeopardy once the local lease ends", || async {
        (session.state() == SessionState::Jeopardy).then_some(())
    })
    .await;
    eventually("expiry once the grace ends", || async {
        (session.state() == SessionState::Expired).then_some(())
    })
    .await;
    let e = session
        .acquire("/x", LockMode::Shared, None)
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::SessionExpired);
    // Nobody answers: a call gives up at its deadline and names the node it tried.
    let e = c.get("/x").await.unwrap_err();
    assert!(
        matches!(e.code, Code::Unavailable | Code::DeadlineExceeded),
        "{e}"
    );
    assert!(e.message.contains(&cell.addrs[&1].to_string()), "{e}");
    // Subscribers saw jeopardy, then expiry, and the keepalive task is done (channel closed
    // once the session is dropped).
    drop(session);
    let seen = tokio::time::timeout(Duration::from_secs(5), recorder)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen, [SessionState::Jeopardy, SessionState::Expired]);
}

#[test]
fn a_client_needs_nodes() {
    let e = LockClient::new(&[], ClientOptions::default()).unwrap_err();
    assert_eq!(e.code, Code::InvalidArgument);
    let e = LockClient::new(&["".to_owned()], ClientOptions::default()).unwrap_err();
    assert_eq!(e.code, Code::InvalidArgument);
    // Lazy: no runtime, no connection needed to make one.
    LockClient::new(&["127.0.0.1:1".to_owned()], ClientOptions::default()).unwrap();
}
