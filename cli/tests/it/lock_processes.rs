//! The lock service as separate processes: a 3-node cell of `tabula lock serve` children on
//! 127.0.0.1, faults by signal (SIGKILL, SIGSTOP/SIGCONT), clients in the test (`LockClient`)
//! or as `tabula lock hold` children.
//!
//! A partition is approximated by SIGSTOP: a stopped node neither sends nor answers, like a
//! node cut off by the network, and when it resumes it acts on whatever it believed before
//! (which is what a healed partition does). A real per-link partition needs network
//! namespaces (root), which these tests do not assume.
//!
//! No sleep synchronizes anything: every wait polls a condition with a deadline. The only
//! timed waits let a lease run out.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tabula_common::Code;
use tabula_lockservice::client::{ClientOptions, Session, SessionState};
use tabula_lockservice::state::{LockMode, Sequencer};

use crate::support;
use crate::support::{
    Cell, DEADLINE, HoldArgs, HoldEvent, Holder, eventually, raw_client, unix_us,
};

/// Lock file every test contends for.
const LOCK: &str = "/lock";

fn options(ttl: Duration) -> ClientOptions {
    ClientOptions {
        session_ttl: ttl,
        ..ClientOptions::default()
    }
}

/// Every state a session publishes, recorded from its watch channel.
#[derive(Clone)]
struct StateLog(Arc<Mutex<Vec<SessionState>>>);

impl StateLog {
    fn follow(session: &Session) -> StateLog {
        let log = StateLog(Arc::new(Mutex::new(vec![session.state()])));
        let sink = log.clone();
        let mut rx = session.subscribe();
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let state = *rx.borrow_and_update();
                sink.0.lock().unwrap().push(state);
            }
        });
        log
    }

    fn states(&self) -> Vec<SessionState> {
        self.0.lock().unwrap().clone()
    }

    fn assert_never_expired(&self, who: &str) {
        let states = self.states();
        assert!(
            !states.contains(&SessionState::Expired),
            "{who}'s session expired: {states:?}"
        );
    }
}

/// Waits until `session` is Safe at an instant later than `since + ttl`: its lease must then
/// have been renewed by a KeepAlive sent after `since`.
async fn renewed_after(session: &Session, since: Instant, ttl: Duration, who: &str) {
    eventually(
        &format!("{who}'s session renewed after the fault"),
        DEADLINE,
        || async {
            (Instant::now() > since + ttl && session.state() == SessionState::Safe).then_some(())
        },
    )
    .await;
}

/// One `acquire` attempt of the contender.
#[derive(Debug)]
struct Attempt {
    ended: Instant,
    outcome: Result<Option<Sequencer>, tabula_common::Error>,
}

/// Test 1: SIGKILL the leader while a client holds an exclusive lock. The holder's session
/// survives the failover (never expired, Safe again, renewed by the new leader), its sequencer
/// stays current, and a contender waiting on the lock gets nothing until the holder releases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_keeps_the_holders_session_and_lock() {
    let mut cell = Cell::start(3);
    let leader = cell.wait_leader(&cell.ids()).await;
    let ttl = Duration::from_secs(3);
    let admin = cell.client(options(ttl));
    admin.create(LOCK, b"").await.unwrap();

    let holder = cell.client(options(ttl)).open_session().await.unwrap();
    let holder_states = StateLog::follow(&holder);
    let sequencer = holder
        .acquire(LOCK, LockMode::Exclusive, None)
        .await
        .unwrap()
        .expect("the free lock is granted");

    // The contender keeps trying with a short wait until it gets the lock.
    let contender = cell.client(options(ttl)).open_session().await.unwrap();
    let contender_states = StateLog::follow(&contender);
    let attempts = Arc::new(Mutex::new(Vec::<Attempt>::new()));
    let log = Arc::clone(&attempts);
    let contending = tokio::spawn(async move {
        loop {
            let outcome = contender
                .acquire(LOCK, LockMode::Exclusive, Some(Duration::from_millis(300)))
                .await;
            let got = matches!(outcome, Ok(Some(_)));
            log.lock().unwrap().push(Attempt {
                ended: Instant::now(),
                outcome,
            });
            if got {
                return contender;
            }
        }
    });
    let attempts_after = |t: Instant| {
        let all = attempts.lock().unwrap();
        all.iter().filter(|a| a.ended > t).count()
    };
    let start = Instant::now();
    eventually("the contender to try", DEADLINE, || async {
        (attempts_after(start) > 0).then_some(())
    })
    .await;

    let killed_at = Instant::now();
    cell.kill(leader);
    let others: Vec<u64> = cell.ids().into_iter().filter(|id| *id != leader).collect();
    let new_leader = cell.wait_leader(&others).await;
    assert_ne!(new_leader, leader);
    let elected_at = Instant::now();
    renewed_after(&holder, killed_at, ttl, "the holder").await;
    eventually(
        "the contender to try under the new leader",
        DEADLINE,
        || async { (attempts_after(elected_at) >= 2).then_some(()) },
    )
    .await;
    assert!(
        admin.check_sequencer(&sequencer).await.unwrap(),
        "the holder's sequencer is stale after the failover"
    );

    // The old leader comes back as a follower; nothing changes for the holder.
    cell.restart(leader);
    cell.wait_converged().await;
    assert!(admin.check_sequencer(&sequencer).await.unwrap());
    assert_eq!(holder.state(), SessionState::Safe);

    let released_at = Instant::now();
    holder.release(LOCK).await.unwrap();
    let contender = tokio::time::timeout(DEADLINE, contending)
        .await
        .expect("the contender gets the released lock")
        .unwrap();
    // Taken out so that no guard lives across the awaits below.
    let all = std::mem::take(&mut *attempts.lock().unwrap());
    let granted: Vec<&Attempt> = all
        .iter()
        .filter(|a| matches!(a.outcome, Ok(Some(_))))
        .collect();
    assert_eq!(granted.len(), 1, "{all:?}");
    assert!(
        granted[0].ended > released_at,
        "the contender got the lock before the holder released it: {all:?}"
    );
    let Ok(Some(theirs)) = &granted[0].outcome else {
        unreachable!()
    };
    assert!(
        theirs.generation > sequencer.generation,
        "{theirs:?} {sequencer:?}"
    );
    let errors = all.iter().filter(|a| a.outcome.is_err()).count();
    eprintln!(
        "contender: {} attempts, {errors} failed during the failover",
        all.len()
    );
    assert!(!admin.check_sequencer(&sequencer).await.unwrap());
    holder_states.assert_never_expired("the holder");
    contender_states.assert_never_expired("the contender");
    assert_eq!(contender.state(), SessionState::Safe);
    cell.assert_running();
}

/// Test 2: a holder stopped past its lease loses the lock to a waiter, and when it resumes it
/// learns that its session expired before it claims the lock again: it prints `expired` and
/// exits 1, and none of its `holding` claims is later than the instant it was stopped (which
/// precedes the waiter's acquisition).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_stopped_past_its_lease_loses_the_lock_and_sees_expired_on_resume() {
    let mut cell = Cell::start(3);
    cell.wait_leader(&cell.ids()).await;
    let admin = cell.client(options(Duration::from_secs(10)));
    admin.create(LOCK, b"").await.unwrap();
    let args = HoldArgs {
        path: LOCK.to_owned(),
        ttl_ms: 2000,
        report_ms: 50,
    };
    let mut first = Holder::spawn(&cell, "holder-1", &args);
    let old_generation = first
        .wait_event("acquired", DEADLINE, |e| match e {
            HoldEvent::Acquired { generation, .. } => Some(*generation),
            _ => None,
        })
        .await;
    first
        .wait_event("a holding claim", DEADLINE, |e| {
            matches!(e, HoldEvent::Holding { .. }).then_some(())
        })
        .await;
    let mut second = Holder::spawn(&cell, "holder-2", &args);
    second
        .wait_event("waiting", DEADLINE, |e| {
            (*e == HoldEvent::Waiting).then_some(())
        })
        .await;

    let stopped_at_us = unix_us();
    assert!(first.signal(libc::SIGSTOP));
    let new_generation = second
        .wait_event(
            "the lock after the holder's lease ran out",
            DEADLINE,
            |e| match e {
                HoldEvent::Acquired { generation, .. } => Some(*generation),
                _ => None,
            },
        )
        .await;
    assert!(new_generation > old_generation);
    second
        .wait_event("a holding claim of the new holder", DEADLINE, |e| match e {
            HoldEvent::Holding { generation, .. } if *generation == new_generation => Some(()),
            _ => None,
        })
        .await;
    assert!(first.signal(libc::SIGCONT));
    let status = first.wait_exit(DEADLINE).await;
    assert_eq!(status.code(), Some(1), "{}", first.dump());

    let events = first.events();
    assert!(
        events.contains(&HoldEvent::Expired),
        "the resumed holder did not say expired: {events:?}"
    );
    let old_claims: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            HoldEvent::Holding {
                generation,
                at_unix_us,
            } if *generation == old_generation => Some(*at_unix_us),
            _ => None,
        })
        .collect();
    assert!(!old_claims.is_empty());
    let last_old = *old_claims.iter().max().unwrap();
    assert!(
        last_old < stopped_at_us,
        "the stopped holder claimed the lock at {last_old} after it was stopped at \
         {stopped_at_us}:\n{}",
        first.dump()
    );
    let first_new = second
        .events()
        .iter()
        .find_map(|e| match e {
            HoldEvent::Holding {
                generation,
                at_unix_us,
            } if *generation == new_generation => Some(*at_unix_us),
            _ => None,
        })
        .unwrap();
    assert!(last_old < first_new, "{last_old} >= {first_new}");
    // The new holder keeps it.
    assert!(second.try_exit().is_none(), "{}", second.dump());
    let holders = admin.get(LOCK).await.unwrap().lock_holders;
    assert_eq!(holders.len(), 1, "{holders:?}");
    assert_eq!(holders[0].generation, new_generation);
    cell.assert_running();
}

/// Test 3: SIGKILL all three nodes and start them again on the same directories. Persistent
/// files come back with their contents and generation; a session a client kept alive across
/// the restart still holds its lock and its ephemeral file; a session nobody kept alive is
/// expired by the restarted cell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_every_node_keeps_files_and_the_locks_of_live_sessions() {
    let mut cell = Cell::start(3);
    cell.wait_leader(&cell.ids()).await;
    let admin = cell.client(options(Duration::from_secs(10)));
    admin.create("/persist", b"one").await.unwrap();
    let generation = admin.set("/persist", b"two", None).await.unwrap();
    admin.create(LOCK, b"").await.unwrap();

    let ttl = Duration::from_secs(4);
    let live = cell.client(options(ttl)).open_session().await.unwrap();
    let live_states = StateLog::follow(&live);
    let sequencer = live
        .acquire(LOCK, LockMode::Exclusive, None)
        .await
        .unwrap()
        .unwrap();
    live.create_ephemeral("/live-eph", b"x").await.unwrap();
    let dead = cell
        .client(options(Duration::from_secs(1)))
        .open_session()
        .await
        .unwrap();
    dead.create_ephemeral("/dead-eph", b"y").await.unwrap();
    // Stops its KeepAlives: the session is left to expire.
    drop(dead);

    let killed_at = Instant::now();
    for id in cell.ids() {
        cell.kill(id);
    }
    for id in cell.ids() {
        cell.restart(id);
    }
    cell.wait_leader(&cell.ids()).await;
    renewed_after(&live, killed_at, ttl, "the live session").await;

    let file = admin.get("/persist").await.unwrap();
    assert_eq!(file.contents, b"two");
    assert_eq!(file.generation, generation);
    let lock = admin.get(LOCK).await.unwrap();
    assert_eq!(lock.lock_holders.len(), 1, "{:?}", lock.lock_holders);
    assert_eq!(lock.lock_holders[0].session, live.id());
    assert_eq!(lock.lock_holders[0].generation, sequencer.generation);
    assert!(admin.check_sequencer(&sequencer).await.unwrap());
    let eph = admin.get("/live-eph").await.unwrap();
    assert_eq!(eph.ephemeral_session, Some(live.id()));
    assert_eq!(eph.contents, b"x");

    eventually("the unattended session's file to go", DEADLINE, || async {
        match admin.get("/dead-eph").await {
            Err(e) if e.code == Code::NotFound => Some(()),
            Ok(_) => None,
            Err(e) => panic!("get /dead-eph: {e}"),
        }
    })
    .await;
    // The live session is still there after the other one expired.
    assert!(admin.check_sequencer(&sequencer).await.unwrap());
    assert_eq!(live.state(), SessionState::Safe);
    live_states.assert_never_expired("the live session");
    cell.assert_running();
}

/// Whether a KeepAlive answer is a refusal that sends the client elsewhere (not OK, and not a
/// verdict on the session).
fn refused(answer: &Result<u64, tabula_common::Error>) -> bool {
    match answer {
        Ok(_) => false,
        Err(e) => matches!(
            e.code,
            Code::NotLeader { .. } | Code::Unavailable | Code::DeadlineExceeded
        ),
    }
}

/// Test 4: a leader cut off (SIGSTOP, standing in for a partition) while a client holds a lock.
/// The others elect a new leader, the client's KeepAlives go there; when the old leader
/// resumes it grants no KeepAlive (requests queued while it was stopped included) and the
/// cell converges with the session and the lock intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_old_leader_grants_no_keepalive() {
    let mut cell = Cell::start(3);
    let old = cell.wait_leader(&cell.ids()).await;
    let ttl = Duration::from_secs(3);
    let admin = cell.client(options(ttl));
    admin.create(LOCK, b"").await.unwrap();
    let session = cell.client(options(ttl)).open_session().await.unwrap();
    let states = StateLog::follow(&session);
    let sequencer = session
        .acquire(LOCK, LockMode::Exclusive, None)
        .await
        .unwrap()
        .unwrap();
    let id = session.id();
    // Connected while the old leader runs, so that requests can be queued while it is stopped.
    let old_rpc = raw_client(&cell.addr(old)).await.unwrap();

    let stopped_at = Instant::now();
    cell.stop(old);
    let others: Vec<u64> = cell.ids().into_iter().filter(|i| *i != old).collect();
    let new = cell.wait_leader(&others).await;
    renewed_after(&session, stopped_at, ttl, "the session").await;

    // KeepAlives queued at the stopped node: the first thing it reads when it resumes.
    let mut queued = Vec::new();
    for _ in 0..4 {
        let mut rpc = old_rpc.clone();
        queued.push(tokio::spawn(async move {
            let call =
                rpc.keep_alive(tabula_proto::tabula::lock::v1::KeepAliveRequest { session_id: id });
            match tokio::time::timeout(Duration::from_secs(10), call).await {
                Ok(r) => r
                    .map(|r| r.into_inner().ttl_ms)
                    .map_err(tabula_common::Error::from),
                Err(_) => Err(tabula_common::Error::new(Code::Unavailable, "timed out")),
            }
        }));
    }
    cell.cont(old);
    for q in queued {
        let answer = q.await.unwrap();
        assert!(
            refused(&answer),
            "the resumed old leader answered a queued KeepAlive: {answer:?}"
        );
    }
    // Fresh ones, until it knows it is a follower and a bit beyond.
    let resumed_at = Instant::now();
    let mut asked = 0;
    loop {
        let answer = support::raw_keep_alive(&cell.addr(old), id, Duration::from_secs(2)).await;
        assert!(
            refused(&answer),
            "the resumed old leader answered a KeepAlive: {answer:?}"
        );
        asked += 1;
        let follows = cell
            .status_of(old)
            .await
            .is_some_and(|s| s.leader_id != old && s.leader_id != 0);
        if follows && asked >= 10 && resumed_at.elapsed() > Duration::from_millis(500) {
            break;
        }
        assert!(
            resumed_at.elapsed() < DEADLINE,
            "the old leader never follows"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let leader = cell.wait_converged().await;
    eprintln!("old leader {old}, new leader {new}, converged on {leader}");
    assert!(admin.check_sequencer(&sequencer).await.unwrap());
    renewed_after(&session, resumed_at, ttl, "the session").await;
    states.assert_never_expired("the session");
    cell.assert_running();
}

/// Test 4, the other half: a leader that cannot reach a quorum (both followers stopped) stops
/// granting KeepAlives, and grants none while the quorum is away. The client's session
/// survives the outage (its TTL is longer than it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_without_its_quorum_grants_no_keepalive() {
    let mut cell = Cell::start(3);
    let leader = cell.wait_leader(&cell.ids()).await;
    let ttl = Duration::from_secs(10);
    let admin = cell.client(options(ttl));
    admin.create(LOCK, b"").await.unwrap();
    let session = cell.client(options(ttl)).open_session().await.unwrap();
    let states = StateLog::follow(&session);
    let sequencer = session
        .acquire(LOCK, LockMode::Exclusive, None)
        .await
        .unwrap()
        .unwrap();
    let id = session.id();
    let addr = cell.addr(leader);
    // A new leader grants KeepAlives once it has confirmed its term and synced its leases.
    eventually("the leader to grant a raw KeepAlive", DEADLINE, || async {
        support::raw_keep_alive(&addr, id, Duration::from_secs(2))
            .await
            .ok()
    })
    .await;

    let followers: Vec<u64> = cell.ids().into_iter().filter(|i| *i != leader).collect();
    for f in &followers {
        cell.stop(*f);
    }
    eventually(
        "the cut-off leader to refuse KeepAlives",
        DEADLINE,
        || async {
            refused(&support::raw_keep_alive(&addr, id, Duration::from_secs(2)).await).then_some(())
        },
    )
    .await;
    let refusing_since = Instant::now();
    let mut asked = 0;
    while asked < 10 || refusing_since.elapsed() < Duration::from_millis(1500) {
        let answer = support::raw_keep_alive(&addr, id, Duration::from_secs(2)).await;
        assert!(
            refused(&answer),
            "a leader without a quorum granted a KeepAlive: {answer:?}"
        );
        asked += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for f in &followers {
        cell.cont(*f);
    }
    cell.wait_converged().await;
    // Right after SIGCONT the followers may still name the old leader before their election
    // timers fire, so the cell can converge on it and then elect another: ask whoever leads
    // now, each time.
    let ids = cell.ids();
    eventually("KeepAlives granted again", DEADLINE, || async {
        let leader = cell.leader_among(&ids).await?;
        support::raw_keep_alive(&cell.addr(leader), id, Duration::from_secs(2))
            .await
            .ok()
    })
    .await;
    assert_eq!(session.state(), SessionState::Safe);
    assert!(admin.check_sequencer(&sequencer).await.unwrap());
    states.assert_never_expired("the session");
    cell.assert_running();
}
