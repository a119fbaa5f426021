//! The watch history: events emitted by `apply`, tagged with the entry's log index.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::command::LockMode;

/// One change to the tree or to a lock, in log order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The log index of the entry that caused it (several events may share one).
    pub revision: u64,
    /// The file concerned.
    pub path: String,
    /// What happened.
    pub kind: EventKind,
}

/// What happened to a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// The file was created.
    Created {
        /// The session it dies with, if ephemeral.
        ephemeral_session: Option<u64>,
    },
    /// Its contents were replaced.
    Changed,
    /// It was deleted.
    Deleted,
    /// A session took its lock.
    Locked {
        /// The new holder.
        session: u64,
        /// How.
        mode: LockMode,
        /// The sequencer generation (= `revision`).
        generation: u64,
    },
    /// A session's lock on it went away (release, session end, or file deletion).
    Unlocked {
        /// The former holder.
        session: u64,
        /// How it was held.
        mode: LockMode,
    },
}

/// The requested revision is older than the retained history: reread, then watch again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("revision compacted: the oldest revision still watchable is {oldest}")]
pub struct Compacted {
    /// The smallest revision `events_since` accepts now.
    pub oldest: u64,
}

/// The retained events, oldest first, at most `Limits::max_events` of them.
///
/// Invariant: revisions never decrease; every event with a revision greater than
/// `compacted_through` is still here. Events are dropped oldest first, so a revision whose events
/// were partly dropped counts as compacted (its remaining events are never returned).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct History {
    events: VecDeque<Event>,
    compacted_through: u64,
}

impl History {
    /// Appends an event, dropping the oldest beyond `max_events`.
    pub(super) fn push(&mut self, event: Event, max_events: usize) {
        self.events.push_back(event);
        while self.events.len() > max_events {
            match self.events.pop_front() {
                Some(dropped) => self.compacted_through = dropped.revision,
                None => break,
            }
        }
    }

    /// `Compacted` if some event with `revision >= from` is no longer retained.
    pub(super) fn check_from(&self, from: u64) -> Result<(), Compacted> {
        // Revisions start at 1: `compacted_through == 0` means nothing was dropped.
        if self.compacted_through > 0 && from <= self.compacted_through {
            return Err(Compacted {
                oldest: self.compacted_through.saturating_add(1),
            });
        }
        Ok(())
    }

    /// Events with `revision >= from` whose path starts with `prefix`, in log order.
    pub(super) fn since(&self, from: u64, prefix: &str) -> Result<Vec<Event>, Compacted> {
        self.check_from(from)?;
        let start = self.events.partition_point(|e| e.revision < from);
        Ok(self
            .events
            .range(start..)
            .filter(|e| e.path.starts_with(prefix))
            .cloned()
            .collect())
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Event> {
        self.events.iter()
    }

    pub(super) fn compacted_through(&self) -> u64 {
        self.compacted_through
    }

    /// Rebuilds a history from a snapshot.
    pub(super) fn restored(events: Vec<Event>, compacted_through: u64) -> Self {
        Self {
            events: events.into(),
            compacted_through,
        }
    }

    /// Checks order, bounds and the compaction mark.
    pub(super) fn check(&self, max_events: usize, last_applied: u64) -> Result<(), String> {
        if self.events.len() > max_events {
            return Err(format!(
                "{} events retained, more than {max_events}",
                self.events.len()
            ));
        }
        if self.compacted_through > last_applied {
            return Err(format!(
                "compacted through {} > {last_applied}",
                self.compacted_through
            ));
        }
        // Events of a partly dropped revision may remain; none older.
        let mut previous = self.compacted_through.max(1);
        for e in &self.events {
            if e.revision < previous || e.revision > last_applied {
                return Err(format!(
                    "event revision {} out of order or range",
                    e.revision
                ));
            }
            previous = e.revision;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{Harness, acquire, create, set};
    use super::super::{Limits, LockMode, Op, Response};
    use super::{Compacted, Event, EventKind};

    fn ev(revision: u64, path: &str, kind: EventKind) -> Event {
        Event {
            revision,
            path: path.to_owned(),
            kind,
        }
    }

    #[test]
    fn since_filters_by_revision_and_prefix_in_log_order() {
        let mut h = Harness::new();
        h.mk("/a"); // 1
        h.mk("/a/x"); // 2
        h.mk("/ab"); // 3
        h.run(set("/a/x", b"v", None)); // 4
        let s = h.open(); // 5
        h.run(acquire("/a", s, LockMode::Exclusive)); // 6
        let created = EventKind::Created {
            ephemeral_session: None,
        };
        let locked = EventKind::Locked {
            session: s,
            mode: LockMode::Exclusive,
            generation: 6,
        };
        assert_eq!(
            h.state.events_since(2, "/a"),
            Ok(vec![
                ev(2, "/a/x", created.clone()),
                ev(3, "/ab", created.clone()),
                ev(4, "/a/x", EventKind::Changed),
                ev(6, "/a", locked),
            ])
        );
        assert_eq!(
            h.state.events_since(0, "/a/"),
            Ok(vec![
                ev(2, "/a/x", created),
                ev(4, "/a/x", EventKind::Changed)
            ])
        );
        assert_eq!(h.state.events_since(5, "/a/"), Ok(vec![]));
        assert_eq!(h.state.events_since(1_000, ""), Ok(vec![]));
        assert_eq!(h.state.events_since(0, "").map(|e| e.len()), Ok(5));
    }

    #[test]
    fn old_events_are_compacted() {
        let limits = Limits {
            max_events: 3,
            ..Limits::default()
        };
        let mut h = Harness::with_limits(limits);
        for p in ["/a", "/b", "/c", "/d"] {
            h.mk(p); // 1..=4
        }
        assert_eq!(h.state.events_since(1, ""), Err(Compacted { oldest: 2 }));
        assert_eq!(h.state.events_since(2, "").map(|e| e.len()), Ok(3));
        assert_eq!(h.state.events_since(0, "/d"), Err(Compacted { oldest: 2 }));
        assert_eq!(h.state.watchable_from(1), Err(Compacted { oldest: 2 }));
        assert_eq!(h.state.watchable_from(2), Ok(()));
        assert_eq!(h.state.watchable_from(100), Ok(()));
    }

    #[test]
    fn a_partly_dropped_revision_counts_as_compacted() {
        let limits = Limits {
            max_events: 2,
            ..Limits::default()
        };
        let mut h = Harness::with_limits(limits);
        h.mk("/a"); // 1
        let s = h.open(); // 2
        h.run(create("/e1", b"", Some(s))); // 3
        h.run(create("/e2", b"", Some(s))); // 4
        h.run(acquire("/a", s, LockMode::Shared)); // 5
        // Unlocked /a, Deleted /e1, Deleted /e2: one revision, three events, two kept.
        assert_eq!(
            h.run(Op::CloseSession { session: s }),
            Response::Done { generation: 6 }
        );
        assert_eq!(h.state.events_since(6, ""), Err(Compacted { oldest: 7 }));
        assert_eq!(h.state.events_since(7, ""), Ok(vec![]));
    }
}
