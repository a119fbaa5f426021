//! The async driver of the lease table: follows the Raft metrics, confirms the quorum itself
//! every tick, syncs the table with the applied state, proposes `ExpireSessions` for overdue
//! sessions, and answers KeepAlives from memory.
//!
//! The quorum is confirmed with `ensure_linearizable` (one heartbeat round), timed from before
//! the round starts. `RaftMetrics::millis_since_quorum_ack` is not used: it is a snapshot that
//! can be stale between metric reports, and wrong after the process was paused.
//!
//! The table's mutex is never held across an `.await`. Lock order: the table, then the state
//! (`StateHandle::read`); never call `keep_alive` from inside `StateHandle::read`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::{Raft, ServerState};
use parking_lot::Mutex;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::table::LeaseTable;
use super::{KeepAliveError, LeaseOptions, LeaseStatus};
use crate::state::{Op, Request};
use crate::store::StateHandle;
use crate::types::TypeConfig;

/// Most sessions expired by one log entry.
const MAX_EXPIRED_PER_ENTRY: usize = 1_000;

/// Shortest time an expiry proposal may take before it is abandoned (and retried).
const MIN_PROPOSAL_TIMEOUT: Duration = Duration::from_secs(1);

/// The leader's session leases. Cheap to clone; every clone shares one table.
#[derive(Clone)]
pub struct LeaseKeeper {
    inner: Arc<Inner>,
}

struct Inner {
    raft: Raft<TypeConfig>,
    state: StateHandle,
    options: LeaseOptions,
    table: Mutex<LeaseTable>,
    /// The term and applied index of the last `sync` (taken after `table`).
    synced: Mutex<Option<(u64, u64)>>,
}

impl std::fmt::Debug for LeaseKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseKeeper")
            .field("options", &self.inner.options)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

/// What the metrics say about this node's leadership.
fn leading_term(raft: &Raft<TypeConfig>) -> Option<u64> {
    let metrics = raft.metrics();
    let m = metrics.borrow();
    let leads = m.state == ServerState::Leader && m.current_leader == Some(m.id);
    leads.then_some(m.current_term)
}

impl LeaseKeeper {
    /// A keeper for `raft`, reading sessions from `state` (the same node's applied state).
    /// It grants nothing until `run` has confirmed a term.
    pub fn new(raft: Raft<TypeConfig>, state: StateHandle, options: LeaseOptions) -> LeaseKeeper {
        let table = LeaseTable::new(options.grace, options.quorum_window);
        LeaseKeeper {
            inner: Arc::new(Inner {
                raft,
                state,
                options,
                table: Mutex::new(table),
                synced: Mutex::new(None),
            }),
        }
    }

    /// The options the keeper runs with.
    pub fn options(&self) -> &LeaseOptions {
        &self.inner.options
    }

    /// Runs the leader loop until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) {
        let mut interval = tokio::time::interval(self.inner.options.tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // At most one expiry proposal in flight; it never outlives the loop.
        let mut proposals: JoinSet<()> = JoinSet::new();
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = interval.tick() => {}
                joined = proposals.join_next(), if !proposals.is_empty() => {
                    if let Some(Err(e)) = joined {
                        tracing::error!(error = %e, "expiry proposal task failed");
                    }
                    continue;
                }
            }
            let Some(term) = self.follow_metrics() else {
                continue;
            };
            let confirmed = tokio::select! {
                () = cancel.cancelled() => break,
                confirmed = self.confirm_quorum(term) => confirmed,
            };
            if !confirmed {
                continue;
            }
            self.sync(term);
            if !proposals.is_empty() {
                continue;
            }
            if let Some(sessions) = self.choose_due() {
                let keeper = self.clone();
                proposals.spawn(async move { keeper.expire(term, sessions).await });
            }
        }
        proposals.shutdown().await;
        self.inner.table.lock().step_down();
        tracing::debug!("lease keeper stopped");
    }

    /// Steps 1 of a tick: resets the table when leadership changed; the term this node leads.
    fn follow_metrics(&self) -> Option<u64> {
        let leading = leading_term(&self.inner.raft);
        let mut table = self.inner.table.lock();
        match leading {
            None => {
                if table.term().is_some() {
                    tracing::info!(sessions = table.len(), "not leading; lease table dropped");
                }
                table.step_down();
            }
            Some(term) => {
                if table.lead(term) {
                    tracing::info!(term, "leading; confirming the term before granting leases");
                }
            }
        }
        leading
    }

    /// Confirms `term`'s leadership with a quorum round; true if confirmed. The confirmation
    /// counts from before the round started.
    async fn confirm_quorum(&self, term: u64) -> bool {
        let started = Instant::now();
        let round = self.inner.raft.ensure_linearizable();
        match tokio::time::timeout(self.inner.options.quorum_window, round).await {
            Ok(Ok(_)) => {
                // Confirmed *some* term this node leads; count it only if it is still `term`.
                if leading_term(&self.inner.raft) != Some(term) {
                    return false;
                }
                self.inner.table.lock().confirmed(term, started);
                true
            }
            Ok(Err(e)) => {
                tracing::debug!(term, error = %e, "quorum not confirmed");
                false
            }
            Err(_) => {
                tracing::debug!(term, "quorum confirmation timed out");
                false
            }
        }
    }

    /// Aligns the table with the applied state (every live session, with its TTL).
    fn sync(&self, term: u64) {
        let mut table = self.inner.table.lock();
        let was_ready = table.ready();
        // The session set only changes when entries are applied: a ready table that has seen
        // this applied index already has nothing to learn (and copying every session each tick
        // would cost O(sessions) for nothing).
        let applied = self.inner.state.read(|s| s.last_applied_index());
        let mut synced = self.inner.synced.lock();
        if was_ready && *synced == Some((term, applied)) {
            return;
        }
        let (live, applied): (Vec<(u64, Duration)>, u64) = self.inner.state.read(|s| {
            let live = s
                .sessions()
                .map(|(id, v)| (id, Duration::from_millis(v.ttl_ms)))
                .collect();
            (live, s.last_applied_index())
        });
        let added = table.sync(term, live, Instant::now());
        *synced = Some((term, applied));
        if !was_ready && table.ready() {
            tracing::info!(
                term,
                sessions = added,
                grace_ms = u64::try_from(self.inner.options.grace.as_millis()).unwrap_or(u64::MAX),
                "lease table ready; every session got ttl plus grace"
            );
        }
    }

    /// Marks and returns the overdue sessions to expire in one entry, if any.
    fn choose_due(&self) -> Option<Vec<u64>> {
        let mut table = self.inner.table.lock();
        let due = table.due(Instant::now(), MAX_EXPIRED_PER_ENTRY);
        if due.is_empty() {
            return None;
        }
        table.mark(&due);
        Some(due)
    }

    /// Proposes the expiry of `sessions` in `term`; on failure they may be chosen again.
    async fn expire(&self, term: u64, sessions: Vec<u64>) {
        // Name a few; a batch may hold up to MAX_EXPIRED_PER_ENTRY sessions.
        let some = &sessions[..sessions.len().min(16)];
        tracing::info!(term, count = sessions.len(), sessions = ?some, "expiring overdue sessions");
        let request = Request {
            client: None,
            op: Op::ExpireSessions {
                sessions: sessions.clone(),
            },
        };
        let timeout = self.inner.options.quorum_window.max(MIN_PROPOSAL_TIMEOUT);
        let written = tokio::time::timeout(timeout, self.inner.raft.client_write(request)).await;
        let failure = match written {
            Ok(Ok(w)) => {
                tracing::debug!(term, index = w.log_id.index, "sessions expired");
                return;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("not committed within {timeout:?}"),
        };
        tracing::warn!(term, count = sessions.len(), sessions = ?some, error = %failure,
            "expiring sessions failed; will retry");
        self.inner.table.lock().unmark(&sessions);
    }

    /// Extends `session`'s lease by its TTL from now; the granted TTL.
    pub fn keep_alive(&self, session: u64) -> Result<Duration, KeepAliveError> {
        let leading = leading_term(&self.inner.raft);
        let mut table = self.inner.table.lock();
        match (leading, table.term()) {
            (None, _) => return Err(KeepAliveError::NotLeader),
            // Leads a term the loop has not taken over yet.
            (Some(term), known) if known != Some(term) => return Err(KeepAliveError::NotReady),
            _ => {}
        }
        let state = &self.inner.state;
        let is_live = || state.read(|s| s.session_is_live(session));
        table.keep_alive(session, Instant::now(), is_live, || {
            state.read(|s| s.session(session).map(|v| Duration::from_millis(v.ttl_ms)))
        })
    }

    /// The lease table's term, readiness and size, for status and tests.
    pub fn status(&self) -> LeaseStatus {
        let table = self.inner.table.lock();
        LeaseStatus {
            leading_term: table.term(),
            ready: table.ready(),
            sessions: table.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keeper_is_shareable_across_tasks() {
        fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
        assert_send_sync::<LeaseKeeper>();
    }
}
