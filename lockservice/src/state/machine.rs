//! `LockState`: the whole state machine, `apply`'s dispatch, and the reads.
//!
//! `apply(index, request)` is a pure function of the state, the entry's log index and the
//! request: no clock, no randomness, no I/O, and ordered containers only, so every replica
//! reaches the same state and gives the same response. The log index is the only notion of time:
//! it is a session's id, a file's generation, a lock holder's sequencer generation and an event's
//! revision.
//!
//! Cross-concept invariants kept here (and checked by `check_invariants`, which snapshot restore
//! runs too): every lock holder and every ephemeral file's owner is a live session, and a live
//! session's lock and ephemeral-file sets match the lock table and the tree exactly.

use serde::{Deserialize, Serialize};

use super::command::{ClientRef, FailReason, LockMode, Op, Request, Response, Sequencer};
use super::dedup::Dedup;
use super::events::{Compacted, Event, EventKind, History};
use super::lock::{Acquired, Locks};
use super::path;
use super::session::{SessionView, Sessions};
use super::snapshot::{self, SnapshotError};
use super::tree::{FileView, Tree};

/// Bounds on the state. They must be the same on every replica: they travel in snapshots, and
/// production uses `Limits::default()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest file contents (larger: `Invalid`).
    pub max_contents_bytes: usize,
    /// Number of files, `/` included (beyond: `ResourceExhausted`).
    pub max_files: usize,
    /// Sum of all contents (beyond: `ResourceExhausted`).
    pub max_total_contents_bytes: usize,
    /// Live sessions (beyond: `ResourceExhausted`).
    pub max_sessions: usize,
    /// Longest session TTL (longer: `Invalid`).
    pub max_ttl_ms: u64,
    /// Retained watch events; older ones are compacted.
    pub max_events: usize,
    /// Clients remembered for deduplication; the one with the oldest last write goes first.
    pub max_dedup_clients: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_contents_bytes: 1 << 20,
            max_files: 1_000_000,
            max_total_contents_bytes: 256 << 20,
            max_sessions: 100_000,
            max_ttl_ms: 3_600_000,
            max_events: 10_000,
            max_dedup_clients: 100_000,
        }
    }
}

/// The lock service's replicated state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LockState {
    pub(super) limits: Limits,
    pub(super) tree: Tree,
    pub(super) sessions: Sessions,
    pub(super) locks: Locks,
    pub(super) history: History,
    pub(super) dedup: Dedup,
    pub(super) last_applied: u64,
}

impl LockState {
    /// An empty state (only `/`) with these limits (tests use tiny ones).
    pub fn with_limits(limits: Limits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// The limits this state enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Applies the entry at log `index`. Deterministic. `index` must be above
    /// `last_applied_index()`; otherwise nothing changes and the answer is `Invalid`.
    pub fn apply(&mut self, index: u64, req: &Request) -> Response {
        if index <= self.last_applied {
            return Response::Failed(FailReason::Invalid(format!(
                "entry index {index} is not above the last applied {}",
                self.last_applied
            )));
        }
        self.last_applied = index;
        if let Some(client) = req.client
            && let Some(replayed) = self.dedup.replay(client)
        {
            return replayed;
        }
        let response = match self.apply_op(index, &req.op) {
            Ok(response) => response,
            Err(reason) => Response::Failed(reason),
        };
        if let Some(client) = req.client {
            self.record(client, index, &response);
        }
        response
    }

    /// Records that an entry carrying no request (blank or membership) was applied at `index`.
    pub fn apply_empty(&mut self, index: u64) {
        self.last_applied = self.last_applied.max(index);
    }

    /// Serializes everything: files, sessions, locks, the dedup table, retained events.
    pub fn to_snapshot(&self) -> Vec<u8> {
        snapshot::encode(self)
    }

    /// Restores a snapshot made by `to_snapshot`, checking every invariant; never panics on bad
    /// bytes.
    pub fn from_snapshot(bytes: &[u8]) -> Result<LockState, SnapshotError> {
        let state = snapshot::decode(bytes)?;
        state
            .check_invariants()
            .map_err(SnapshotError::Inconsistent)?;
        Ok(state)
    }

    /// A file, or `None` if it does not exist (or the path is invalid).
    pub fn get(&self, path: &str) -> Option<FileView> {
        let node = self.tree.get(path)?;
        Some(FileView {
            contents: node.contents.clone(),
            generation: node.generation,
            ephemeral_session: node.ephemeral_session,
            lock_holders: self.locks.holders(path),
        })
    }

    /// A file's children's names, sorted; `None` if it does not exist.
    pub fn list(&self, path: &str) -> Option<Vec<String>> {
        Some(self.tree.get(path)?.children.iter().cloned().collect())
    }

    /// Live sessions, by id.
    pub fn sessions(&self) -> impl Iterator<Item = (u64, SessionView)> + '_ {
        self.sessions
            .iter()
            .map(|(id, s)| (id, SessionView { ttl_ms: s.ttl_ms }))
    }

    /// A live session, by id.
    pub fn session(&self, session: u64) -> Option<SessionView> {
        self.sessions
            .get(session)
            .map(|s| SessionView { ttl_ms: s.ttl_ms })
    }

    /// Whether a session is live (opened, neither closed nor expired).
    pub fn session_is_live(&self, session: u64) -> bool {
        self.sessions.is_live(session)
    }

    /// Whether the sequencer is still current: the lock it was issued for is still held in that
    /// mode by the acquisition that produced it.
    pub fn check_sequencer(&self, s: &Sequencer) -> bool {
        self.locks.is_current(s)
    }

    /// Events with `revision >= from_revision` whose path starts with `prefix` (a plain string
    /// prefix: pass `"/a/"` for the files under `/a`), in log order. `Compacted` if some event
    /// at or after `from_revision` is no longer retained.
    pub fn events_since(&self, from_revision: u64, prefix: &str) -> Result<Vec<Event>, Compacted> {
        self.history.since(from_revision, prefix)
    }

    /// `Compacted` if a watch from `from_revision` would miss events no longer retained; cheap
    /// (`events_since` copies the events).
    pub fn watchable_from(&self, from_revision: u64) -> Result<(), Compacted> {
        self.history.check_from(from_revision)
    }

    /// The index of the last applied entry.
    pub fn last_applied_index(&self) -> u64 {
        self.last_applied
    }

    fn record(&mut self, client: ClientRef, index: u64, response: &Response) {
        let max = self.limits.max_dedup_clients;
        self.dedup.record(client, index, response.clone(), max);
    }

    fn apply_op(&mut self, index: u64, op: &Op) -> Result<Response, FailReason> {
        let done = Response::Done { generation: index };
        match op {
            Op::OpenSession { ttl_ms } => {
                self.sessions.open(index, *ttl_ms, &self.limits)?;
                return Ok(Response::SessionOpened { session: index });
            }
            Op::CloseSession { session } => {
                if !self.sessions.is_live(*session) {
                    return Err(FailReason::SessionGone);
                }
                self.end_session(*session, index);
            }
            Op::ExpireSessions { sessions } => {
                for session in sessions {
                    self.end_session(*session, index);
                }
            }
            Op::Create {
                path,
                contents,
                ephemeral_session,
            } => {
                self.create(index, path, contents, *ephemeral_session)?;
            }
            Op::SetContents {
                path,
                contents,
                if_generation,
            } => {
                self.check_contents(path, contents)?;
                self.tree
                    .set_contents(path, contents, *if_generation, index, &self.limits)?;
                self.emit(index, path, EventKind::Changed);
            }
            Op::Delete {
                path,
                if_generation,
            } => {
                valid_path(path)?;
                self.tree.check_delete(path, *if_generation)?;
                self.delete_file(path, index);
            }
            Op::Acquire {
                path,
                session,
                mode,
            } => return self.acquire(index, path, *session, *mode),
            Op::Release { path, session } => self.release(index, path, *session)?,
        }
        Ok(done)
    }

    fn create(
        &mut self,
        index: u64,
        path: &str,
        contents: &[u8],
        ephemeral_session: Option<u64>,
    ) -> Result<(), FailReason> {
        self.check_contents(path, contents)?;
        if let Some(session) = ephemeral_session
            && !self.sessions.is_live(session)
        {
            return Err(FailReason::SessionGone);
        }
        self.tree
            .create(path, contents, ephemeral_session, index, &self.limits)?;
        if let Some(session) = ephemeral_session {
            self.sessions
                .live_mut(session)?
                .ephemerals
                .insert(path.to_owned());
        }
        self.emit(index, path, EventKind::Created { ephemeral_session });
        Ok(())
    }

    fn acquire(
        &mut self,
        index: u64,
        path: &str,
        session: u64,
        mode: LockMode,
    ) -> Result<Response, FailReason> {
        valid_path(path)?;
        if !self.sessions.is_live(session) {
            return Err(FailReason::SessionGone);
        }
        if self.tree.get(path).is_none() {
            return Err(FailReason::NotFound);
        }
        match self.locks.acquire(path, session, mode, index) {
            Acquired::New(sequencer) => {
                self.sessions
                    .live_mut(session)?
                    .locks
                    .insert(path.to_owned());
                let kind = EventKind::Locked {
                    session,
                    mode,
                    generation: sequencer.generation,
                };
                self.emit(index, path, kind);
                Ok(Response::Acquired(sequencer))
            }
            Acquired::Again(sequencer) => Ok(Response::Acquired(sequencer)),
            Acquired::Held => Ok(Response::LockHeld),
        }
    }

    fn release(&mut self, index: u64, path: &str, session: u64) -> Result<(), FailReason> {
        valid_path(path)?;
        if !self.sessions.is_live(session) {
            return Err(FailReason::SessionGone);
        }
        let holder = self
            .locks
            .release(path, session)
            .ok_or(FailReason::NotFound)?;
        self.sessions.forget_lock(session, path);
        self.emit(
            index,
            path,
            EventKind::Unlocked {
                session,
                mode: holder.mode,
            },
        );
        Ok(())
    }

    /// Ends a live session (no-op otherwise): releases its locks in path order, then deletes its
    /// ephemeral files in path order (releasing other sessions' locks on them).
    fn end_session(&mut self, session: u64, index: u64) {
        let Some(ended) = self.sessions.end(session) else {
            return;
        };
        for path in &ended.locks {
            if let Some(holder) = self.locks.release(path, session) {
                self.emit(
                    index,
                    path,
                    EventKind::Unlocked {
                        session,
                        mode: holder.mode,
                    },
                );
            }
        }
        for path in &ended.ephemerals {
            self.delete_file(path, index);
        }
    }

    /// Deletes a file that may be deleted, releasing its locks first.
    fn delete_file(&mut self, path: &str, index: u64) {
        for holder in self.locks.release_all(path) {
            self.sessions.forget_lock(holder.session, path);
            let kind = EventKind::Unlocked {
                session: holder.session,
                mode: holder.mode,
            };
            self.emit(index, path, kind);
        }
        if let Some(node) = self.tree.remove(path) {
            if let Some(owner) = node.ephemeral_session {
                self.sessions.forget_ephemeral(owner, path);
            }
            self.emit(index, path, EventKind::Deleted);
        }
    }

    fn check_contents(&self, path: &str, contents: &[u8]) -> Result<(), FailReason> {
        valid_path(path)?;
        if contents.len() > self.limits.max_contents_bytes {
            return Err(FailReason::Invalid(format!(
                "contents of {} bytes, more than {}",
                contents.len(),
                self.limits.max_contents_bytes
            )));
        }
        Ok(())
    }

    fn emit(&mut self, revision: u64, path: &str, kind: EventKind) {
        let event = Event {
            revision,
            path: path.to_owned(),
            kind,
        };
        self.history.push(event, self.limits.max_events);
    }

    /// Checks every invariant of every part and between parts.
    pub(super) fn check_invariants(&self) -> Result<(), String> {
        let last = self.last_applied;
        self.tree.check(&self.limits, last)?;
        self.sessions.check(&self.limits, last)?;
        self.locks.check(last)?;
        self.history.check(self.limits.max_events, last)?;
        self.dedup.check(self.limits.max_dedup_clients, last)?;
        for (p, node) in self.tree.iter() {
            if let Some(owner) = node.ephemeral_session {
                let session = self
                    .sessions
                    .get(owner)
                    .ok_or_else(|| format!("{p:?} owned by gone session {owner}"))?;
                if !session.ephemerals.contains(p) || node.generation < owner {
                    return Err(format!(
                        "{p:?} not recorded as ephemeral of session {owner}"
                    ));
                }
            }
        }
        for (p, holders) in self.locks.iter() {
            if self.tree.get(p).is_none() {
                return Err(format!("lock on missing file {p:?}"));
            }
            for (id, holder) in holders {
                let session = self
                    .sessions
                    .get(*id)
                    .ok_or_else(|| format!("{p:?} locked by gone session {id}"))?;
                if !session.locks.contains(p) || holder.generation < *id {
                    return Err(format!("lock on {p:?} not recorded by session {id}"));
                }
            }
        }
        for (id, session) in self.sessions.iter() {
            for p in &session.locks {
                if !self.locks.holders(p).iter().any(|h| h.session == id) {
                    return Err(format!(
                        "session {id} records a lock on {p:?} it does not hold"
                    ));
                }
            }
            for p in &session.ephemerals {
                if self.tree.get(p).and_then(|n| n.ephemeral_session) != Some(id) {
                    return Err(format!(
                        "session {id} records ephemeral {p:?} it does not own"
                    ));
                }
            }
        }
        Ok(())
    }
}

fn valid_path(p: &str) -> Result<(), FailReason> {
    path::validate(p).map_err(FailReason::Invalid)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::create;
    use super::super::{FailReason, LockState, Request, Response};

    #[test]
    fn indexes_must_grow_and_empty_entries_advance_them() {
        let mut state = LockState::default();
        let req = Request {
            client: None,
            op: create("/a", b"", None),
        };
        assert!(matches!(
            state.apply(0, &req),
            Response::Failed(FailReason::Invalid(_))
        ));
        assert_eq!(state, LockState::default());
        state.apply_empty(4);
        assert_eq!(state.last_applied_index(), 4);
        assert!(matches!(
            state.apply(4, &req),
            Response::Failed(FailReason::Invalid(_))
        ));
        assert_eq!(state.apply(5, &req), Response::Done { generation: 5 });
        assert!(matches!(
            state.apply(5, &req),
            Response::Failed(FailReason::Invalid(_))
        ));
        assert_eq!(state.get("/a").map(|f| f.generation), Some(5));
        assert_eq!(state.last_applied_index(), 5);
    }
}
