//! Locks: advisory reader/writer locks on files. Per file, either one exclusive holder or any
//! number of shared holders. A holder's generation is the log index of its acquisition, which is
//! also its sequencer's generation, so sequencers for a path only grow and a sequencer stays
//! current exactly while that holder keeps the lock.
//!
//! No upgrade or downgrade: a session holding the lock in one mode and asking for the other gets
//! `LockHeld` like anybody else; it releases first.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::command::{LockMode, Sequencer};

/// One holder of a file's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    /// The holding session.
    pub session: u64,
    /// How it holds it.
    pub mode: LockMode,
    /// The log index of its acquisition (its sequencer's generation).
    pub generation: u64,
}

/// What an acquisition did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Acquired {
    /// The session took the lock now.
    New(Sequencer),
    /// The session already held it in that mode: its existing sequencer.
    Again(Sequencer),
    /// Somebody holds it in a conflicting mode.
    Held,
}

/// Holders by path, then by session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Locks {
    by_path: BTreeMap<String, BTreeMap<u64, LockHolder>>,
}

impl Locks {
    /// Tries to give `path`'s lock to `session` at log `index`. The file exists and the session
    /// is live (checked by the caller).
    pub(super) fn acquire(
        &mut self,
        path: &str,
        session: u64,
        mode: LockMode,
        index: u64,
    ) -> Acquired {
        let holders = self.by_path.get(path);
        if let Some(h) = holders.and_then(|h| h.get(&session)) {
            if h.mode == mode {
                return Acquired::Again(sequencer(path, h));
            }
            return Acquired::Held;
        }
        let conflict = holders.is_some_and(|h| {
            mode == LockMode::Exclusive && !h.is_empty()
                || h.values().any(|x| x.mode == LockMode::Exclusive)
        });
        if conflict {
            return Acquired::Held;
        }
        let holder = LockHolder {
            session,
            mode,
            generation: index,
        };
        self.by_path
            .entry(path.to_owned())
            .or_default()
            .insert(session, holder);
        Acquired::New(sequencer(path, &holder))
    }

    /// Takes `session`'s lock on `path` away; `None` if it did not hold it.
    pub(super) fn release(&mut self, path: &str, session: u64) -> Option<LockHolder> {
        let holders = self.by_path.get_mut(path)?;
        let released = holders.remove(&session)?;
        if holders.is_empty() {
            self.by_path.remove(path);
        }
        Some(released)
    }

    /// Takes every lock on `path` away (its file is being deleted), by session id.
    pub(super) fn release_all(&mut self, path: &str) -> Vec<LockHolder> {
        self.by_path
            .remove(path)
            .map(|h| h.into_values().collect())
            .unwrap_or_default()
    }

    /// `path`'s holders, by session id.
    pub(super) fn holders(&self, path: &str) -> Vec<LockHolder> {
        self.by_path
            .get(path)
            .map(|h| h.values().copied().collect())
            .unwrap_or_default()
    }

    /// Whether the holder that `s` was issued to still holds the lock in that mode.
    pub(super) fn is_current(&self, s: &Sequencer) -> bool {
        self.by_path.get(&s.path).is_some_and(|h| {
            h.values()
                .any(|x| x.mode == s.mode && x.generation == s.generation)
        })
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&String, &BTreeMap<u64, LockHolder>)> {
        self.by_path.iter()
    }

    /// Inserts a restored holder (snapshot restore; `check` validates the result).
    pub(super) fn insert_restored(&mut self, path: &str, holder: LockHolder) -> Result<(), String> {
        let holders = self.by_path.entry(path.to_owned()).or_default();
        if holders.insert(holder.session, holder).is_some() {
            return Err(format!("session {} holds {path:?} twice", holder.session));
        }
        Ok(())
    }

    /// Checks the mode rule and generations.
    pub(super) fn check(&self, last_applied: u64) -> Result<(), String> {
        for (path, holders) in &self.by_path {
            if holders.is_empty() {
                return Err(format!("{path:?} has an empty holder set"));
            }
            let exclusive = holders
                .values()
                .filter(|h| h.mode == LockMode::Exclusive)
                .count();
            if exclusive > 0 && holders.len() > 1 {
                return Err(format!(
                    "{path:?} has an exclusive holder among {}",
                    holders.len()
                ));
            }
            for (session, h) in holders {
                if *session != h.session {
                    return Err(format!(
                        "{path:?}: holder filed under {session} is {}",
                        h.session
                    ));
                }
                if h.generation == 0 || h.generation > last_applied {
                    return Err(format!(
                        "{path:?}: lock generation {} outside 1..={last_applied}",
                        h.generation
                    ));
                }
            }
        }
        Ok(())
    }
}

fn sequencer(path: &str, h: &LockHolder) -> Sequencer {
    Sequencer {
        path: path.to_owned(),
        mode: h.mode,
        generation: h.generation,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{Harness, acquire, create, delete, release, seq};
    use super::super::{Event, EventKind, FailReason, LockMode, Response};
    use super::LockHolder;
    use LockMode::{Exclusive, Shared};

    fn ev(revision: u64, path: &str, kind: EventKind) -> Event {
        Event {
            revision,
            path: path.to_owned(),
            kind,
        }
    }

    #[test]
    fn exclusive_excludes_everyone() {
        let mut h = Harness::new();
        h.mk("/l"); // 1
        let a = h.open(); // 2
        let b = h.open(); // 3
        assert_eq!(
            h.run(acquire("/l", a, Exclusive)),
            Response::Acquired(seq("/l", Exclusive, 4))
        );
        assert_eq!(
            h.last_events(),
            vec![ev(
                4,
                "/l",
                EventKind::Locked {
                    session: a,
                    mode: Exclusive,
                    generation: 4
                }
            )]
        );
        assert_eq!(h.run(acquire("/l", b, Exclusive)), Response::LockHeld);
        assert_eq!(h.run(acquire("/l", b, Shared)), Response::LockHeld);
        assert_eq!(
            h.run(acquire("/l", a, Shared)),
            Response::LockHeld,
            "no downgrade"
        );
        assert_eq!(h.last_events(), vec![]);
        let holders = h.state.get("/l").map(|f| f.lock_holders);
        assert_eq!(
            holders,
            Some(vec![LockHolder {
                session: a,
                mode: Exclusive,
                generation: 4
            }])
        );
    }

    #[test]
    fn shared_admits_shared_only() {
        let mut h = Harness::new();
        h.mk("/l"); // 1
        let a = h.open(); // 2
        let b = h.open(); // 3
        let c = h.open(); // 4
        assert_eq!(
            h.run(acquire("/l", a, Shared)),
            Response::Acquired(seq("/l", Shared, 5))
        );
        assert_eq!(
            h.run(acquire("/l", b, Shared)),
            Response::Acquired(seq("/l", Shared, 6))
        );
        assert_eq!(h.run(acquire("/l", c, Exclusive)), Response::LockHeld);
        assert_eq!(
            h.run(acquire("/l", a, Exclusive)),
            Response::LockHeld,
            "no upgrade"
        );
        assert!(h.state.check_sequencer(&seq("/l", Shared, 5)));
        assert!(h.state.check_sequencer(&seq("/l", Shared, 6)));
        assert!(!h.state.check_sequencer(&seq("/l", Exclusive, 5)));
        assert_eq!(h.run(release("/l", a)), Response::Done { generation: 9 });
        assert_eq!(
            h.last_events(),
            vec![ev(
                9,
                "/l",
                EventKind::Unlocked {
                    session: a,
                    mode: Shared
                }
            )]
        );
        assert_eq!(h.run(release("/l", b)), Response::Done { generation: 10 });
        assert_eq!(
            h.run(acquire("/l", c, Exclusive)),
            Response::Acquired(seq("/l", Exclusive, 11))
        );
    }

    #[test]
    fn reacquire_in_the_same_mode_is_idempotent() {
        let mut h = Harness::new();
        h.mk("/l"); // 1
        let a = h.open(); // 2
        let first = h.run(acquire("/l", a, Exclusive)); // 3
        assert_eq!(first, Response::Acquired(seq("/l", Exclusive, 3)));
        assert_eq!(h.run(acquire("/l", a, Exclusive)), first);
        assert_eq!(h.last_events(), vec![]);
    }

    #[test]
    fn generations_grow_and_old_sequencers_expire() {
        let mut h = Harness::new();
        h.mk("/l"); // 1
        let a = h.open(); // 2
        let b = h.open(); // 3
        assert_eq!(
            h.run(acquire("/l", a, Exclusive)),
            Response::Acquired(seq("/l", Exclusive, 4))
        );
        assert!(h.state.check_sequencer(&seq("/l", Exclusive, 4)));
        assert_eq!(h.run(release("/l", a)), Response::Done { generation: 5 });
        assert!(!h.state.check_sequencer(&seq("/l", Exclusive, 4)));
        assert_eq!(
            h.run(acquire("/l", b, Exclusive)),
            Response::Acquired(seq("/l", Exclusive, 6))
        );
        assert!(!h.state.check_sequencer(&seq("/l", Exclusive, 4)));
        assert!(h.state.check_sequencer(&seq("/l", Exclusive, 6)));
        assert!(!h.state.check_sequencer(&seq("/other", Exclusive, 6)));
    }

    #[test]
    fn release_by_a_non_holder_or_of_a_missing_file_is_not_found() {
        let mut h = Harness::new();
        h.mk("/l"); // 1
        let a = h.open(); // 2
        let b = h.open(); // 3
        h.run(acquire("/l", a, Exclusive)); // 4
        assert_eq!(
            h.run(release("/l", b)),
            Response::Failed(FailReason::NotFound)
        );
        assert_eq!(
            h.run(release("/nope", a)),
            Response::Failed(FailReason::NotFound)
        );
        assert_eq!(
            h.run(acquire("/nope", a, Shared)),
            Response::Failed(FailReason::NotFound)
        );
        assert!(matches!(
            h.run(acquire("nope", a, Shared)),
            Response::Failed(FailReason::Invalid(_))
        ));
        assert!(matches!(
            h.run(release("/l/", a)),
            Response::Failed(FailReason::Invalid(_))
        ));
        assert!(h.state.check_sequencer(&seq("/l", Exclusive, 4)));
    }

    #[test]
    fn deleting_a_locked_file_releases_its_locks() {
        let mut h = Harness::new();
        h.mk("/l"); // 1
        let a = h.open(); // 2
        let b = h.open(); // 3
        h.run(acquire("/l", b, Shared)); // 4
        h.run(acquire("/l", a, Shared)); // 5
        assert_eq!(h.run(delete("/l", None)), Response::Done { generation: 6 });
        assert_eq!(
            h.last_events(),
            vec![
                ev(
                    6,
                    "/l",
                    EventKind::Unlocked {
                        session: a,
                        mode: Shared
                    }
                ),
                ev(
                    6,
                    "/l",
                    EventKind::Unlocked {
                        session: b,
                        mode: Shared
                    }
                ),
                ev(6, "/l", EventKind::Deleted),
            ]
        );
        assert!(!h.state.check_sequencer(&seq("/l", Shared, 4)));
        // Recreated, the lock is free and its generation is newer.
        assert_eq!(
            h.run(create("/l", b"", None)),
            Response::Done { generation: 7 }
        );
        assert_eq!(
            h.run(acquire("/l", a, Exclusive)),
            Response::Acquired(seq("/l", Exclusive, 8))
        );
        assert_eq!(
            h.run(release("/l", b)),
            Response::Failed(FailReason::NotFound)
        );
    }

    #[test]
    fn locking_does_not_change_the_file_generation() {
        let mut h = Harness::new();
        h.mk("/l"); // 1
        let a = h.open(); // 2
        h.run(acquire("/l", a, Exclusive)); // 3
        h.run(release("/l", a)); // 4
        assert_eq!(h.state.get("/l").map(|f| f.generation), Some(1));
    }
}
