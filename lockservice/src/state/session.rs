//! Sessions: opened by a log entry (the id is that entry's index, so ids are never reused),
//! ended by `CloseSession` or by a leader-proposed `ExpireSessions`. Leases themselves live on the
//! leader, outside the state machine; here a session is only live or gone.
//!
//! Each live session remembers the paths it holds locks on and its ephemeral files, so that its
//! end releases and deletes exactly those. Invariant (checked by `machine.rs`): these sets match
//! the lock table and the tree.

use std::collections::{BTreeMap, BTreeSet};

use super::command::FailReason;
use super::machine::Limits;

/// What the leader needs to track a session's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionView {
    /// The lease length the client asked for.
    pub ttl_ms: u64,
}

/// A live session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Session {
    pub(super) ttl_ms: u64,
    /// Paths whose lock it holds.
    pub(super) locks: BTreeSet<String>,
    /// Its ephemeral files.
    pub(super) ephemerals: BTreeSet<String>,
}

/// Live sessions by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Sessions {
    live: BTreeMap<u64, Session>,
}

impl Sessions {
    /// Opens session `id` (the entry's index).
    pub(super) fn open(&mut self, id: u64, ttl_ms: u64, limits: &Limits) -> Result<(), FailReason> {
        if ttl_ms == 0 || ttl_ms > limits.max_ttl_ms {
            return Err(FailReason::Invalid(format!(
                "session ttl must be in 1..={} ms, not {ttl_ms}",
                limits.max_ttl_ms
            )));
        }
        if self.live.len() >= limits.max_sessions {
            return Err(FailReason::ResourceExhausted(format!(
                "at most {} sessions",
                limits.max_sessions
            )));
        }
        self.live.insert(
            id,
            Session {
                ttl_ms,
                ..Session::default()
            },
        );
        Ok(())
    }

    /// Removes a session and returns it, so its locks and files can be let go.
    pub(super) fn end(&mut self, id: u64) -> Option<Session> {
        self.live.remove(&id)
    }

    pub(super) fn get(&self, id: u64) -> Option<&Session> {
        self.live.get(&id)
    }

    /// The live session `id`, or `SessionGone`.
    pub(super) fn live_mut(&mut self, id: u64) -> Result<&mut Session, FailReason> {
        self.live.get_mut(&id).ok_or(FailReason::SessionGone)
    }

    pub(super) fn is_live(&self, id: u64) -> bool {
        self.live.contains_key(&id)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (u64, &Session)> {
        self.live.iter().map(|(id, s)| (*id, s))
    }

    /// Forgets that session `id` holds the lock on `path` (no-op if it is gone).
    pub(super) fn forget_lock(&mut self, id: u64, path: &str) {
        if let Some(s) = self.live.get_mut(&id) {
            s.locks.remove(path);
        }
    }

    /// Forgets that `path` is session `id`'s ephemeral file (no-op if it is gone).
    pub(super) fn forget_ephemeral(&mut self, id: u64, path: &str) {
        if let Some(s) = self.live.get_mut(&id) {
            s.ephemerals.remove(path);
        }
    }

    /// Inserts a restored session with empty lock and file sets (snapshot restore).
    pub(super) fn insert_restored(&mut self, id: u64, ttl_ms: u64) -> Result<(), String> {
        if self
            .live
            .insert(
                id,
                Session {
                    ttl_ms,
                    ..Session::default()
                },
            )
            .is_some()
        {
            return Err(format!("session {id} appears twice"));
        }
        Ok(())
    }

    /// Checks ids and TTLs (the cross-references are checked by `machine.rs`).
    pub(super) fn check(&self, limits: &Limits, last_applied: u64) -> Result<(), String> {
        if self.live.len() > limits.max_sessions {
            return Err(format!(
                "{} sessions, more than {}",
                self.live.len(),
                limits.max_sessions
            ));
        }
        for (id, s) in &self.live {
            if *id == 0 || *id > last_applied {
                return Err(format!("session id {id} outside 1..={last_applied}"));
            }
            if s.ttl_ms == 0 || s.ttl_ms > limits.max_ttl_ms {
                return Err(format!("session {id} has ttl {} ms", s.ttl_ms));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{Harness, acquire, create, release, seq};
    use super::super::{Event, EventKind, FailReason, Limits, LockMode, Op, Response};
    use super::SessionView;

    fn ev(revision: u64, path: &str, kind: EventKind) -> Event {
        Event {
            revision,
            path: path.to_owned(),
            kind,
        }
    }

    #[test]
    fn session_id_is_the_log_index() {
        let mut h = Harness::new();
        h.mk("/a");
        assert_eq!(
            h.run(Op::OpenSession { ttl_ms: 5_000 }),
            Response::SessionOpened { session: 2 }
        );
        assert_eq!(
            h.run(Op::OpenSession { ttl_ms: 7_000 }),
            Response::SessionOpened { session: 3 }
        );
        let sessions: Vec<_> = h.state.sessions().collect();
        assert_eq!(
            sessions,
            vec![
                (2, SessionView { ttl_ms: 5_000 }),
                (3, SessionView { ttl_ms: 7_000 })
            ]
        );
        assert!(h.state.session_is_live(2));
    }

    #[test]
    fn ttl_must_be_positive_and_bounded_and_sessions_are_bounded() {
        let limits = Limits {
            max_sessions: 1,
            max_ttl_ms: 1_000,
            ..Limits::default()
        };
        let mut h = Harness::with_limits(limits);
        assert!(matches!(
            h.run(Op::OpenSession { ttl_ms: 0 }),
            Response::Failed(FailReason::Invalid(_))
        ));
        assert!(matches!(
            h.run(Op::OpenSession { ttl_ms: 1_001 }),
            Response::Failed(FailReason::Invalid(_))
        ));
        assert_eq!(
            h.run(Op::OpenSession { ttl_ms: 1_000 }),
            Response::SessionOpened { session: 3 }
        );
        assert!(matches!(
            h.run(Op::OpenSession { ttl_ms: 1 }),
            Response::Failed(FailReason::ResourceExhausted(_))
        ));
        assert_eq!(
            h.run(Op::CloseSession { session: 3 }),
            Response::Done { generation: 5 }
        );
        assert_eq!(
            h.run(Op::OpenSession { ttl_ms: 1 }),
            Response::SessionOpened { session: 6 }
        );
    }

    #[test]
    fn ops_on_gone_sessions_fail() {
        let mut h = Harness::new();
        h.mk("/f");
        let s = h.open();
        assert_eq!(
            h.run(Op::CloseSession { session: s }),
            Response::Done { generation: 3 }
        );
        assert_eq!(h.state.sessions().count(), 0);
        for unknown in [s, 1, 4, 1000] {
            assert_eq!(
                h.run(Op::CloseSession { session: unknown }),
                Response::Failed(FailReason::SessionGone)
            );
            assert_eq!(
                h.run(acquire("/f", unknown, LockMode::Shared)),
                Response::Failed(FailReason::SessionGone)
            );
            assert_eq!(
                h.run(release("/f", unknown)),
                Response::Failed(FailReason::SessionGone)
            );
            assert_eq!(
                h.run(create("/g", b"", Some(unknown))),
                Response::Failed(FailReason::SessionGone)
            );
        }
        assert_eq!(h.state.get("/g"), None);
    }

    #[test]
    fn expiring_unknown_or_closed_sessions_is_a_no_op() {
        let mut h = Harness::new();
        let s = h.open();
        h.run(Op::CloseSession { session: s });
        let before = h.state.clone();
        assert_eq!(
            h.run(Op::ExpireSessions {
                sessions: vec![s, 77]
            }),
            Response::Done { generation: 3 }
        );
        assert_eq!(h.last_events(), vec![]);
        assert_eq!(h.state.sessions().count(), before.sessions().count());
        assert_eq!(h.state.events_since(0, ""), before.events_since(0, ""));
    }

    #[test]
    fn ending_a_session_releases_its_locks_and_deletes_its_ephemeral_files() {
        for expire in [false, true] {
            let mut h = Harness::new();
            h.mk("/p"); // 1
            let s = h.open(); // 2
            let other = h.open(); // 3
            assert_eq!(
                h.run(create("/p/e2", b"", Some(s))),
                Response::Done { generation: 4 }
            );
            assert_eq!(
                h.run(create("/p/e1", b"", Some(s))),
                Response::Done { generation: 5 }
            );
            let r = h.run(acquire("/p", s, LockMode::Exclusive));
            assert_eq!(r, Response::Acquired(seq("/p", LockMode::Exclusive, 6)));
            h.run(acquire("/p/e1", s, LockMode::Shared)); // 7
            h.run(acquire("/p/e1", other, LockMode::Shared)); // 8
            h.run(acquire("/p/e2", other, LockMode::Exclusive)); // 9
            let op = if expire {
                Op::ExpireSessions { sessions: vec![s] }
            } else {
                Op::CloseSession { session: s }
            };
            assert_eq!(h.run(op), Response::Done { generation: 10 });
            let shared = LockMode::Shared;
            assert_eq!(
                h.last_events(),
                vec![
                    ev(
                        10,
                        "/p",
                        EventKind::Unlocked {
                            session: s,
                            mode: LockMode::Exclusive
                        }
                    ),
                    ev(
                        10,
                        "/p/e1",
                        EventKind::Unlocked {
                            session: s,
                            mode: shared
                        }
                    ),
                    ev(
                        10,
                        "/p/e1",
                        EventKind::Unlocked {
                            session: other,
                            mode: shared
                        }
                    ),
                    ev(10, "/p/e1", EventKind::Deleted),
                    ev(
                        10,
                        "/p/e2",
                        EventKind::Unlocked {
                            session: other,
                            mode: LockMode::Exclusive
                        }
                    ),
                    ev(10, "/p/e2", EventKind::Deleted),
                ]
            );
            assert_eq!(h.state.list("/p"), Some(vec![]));
            assert_eq!(h.state.get("/p").map(|f| f.lock_holders), Some(vec![]));
            assert!(!h.state.check_sequencer(&seq("/p", LockMode::Exclusive, 6)));
            assert_eq!(
                h.state.sessions().map(|(id, _)| id).collect::<Vec<_>>(),
                vec![other]
            );
        }
    }

    #[test]
    fn expire_several_sessions_in_the_given_order() {
        let mut h = Harness::new();
        h.mk("/a"); // 1
        let s1 = h.open(); // 2
        let s2 = h.open(); // 3
        h.run(acquire("/a", s1, LockMode::Shared)); // 4
        h.run(acquire("/a", s2, LockMode::Shared)); // 5
        assert_eq!(
            h.run(Op::ExpireSessions {
                sessions: vec![s2, s1, s2]
            }),
            Response::Done { generation: 6 }
        );
        assert_eq!(
            h.last_events(),
            vec![
                ev(
                    6,
                    "/a",
                    EventKind::Unlocked {
                        session: s2,
                        mode: LockMode::Shared
                    }
                ),
                ev(
                    6,
                    "/a",
                    EventKind::Unlocked {
                        session: s1,
                        mode: LockMode::Shared
                    }
                ),
            ]
        );
        assert_eq!(h.state.sessions().count(), 0);
    }
}
