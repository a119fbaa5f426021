//! The leader's lease table: the pure core of session leases. No I/O, no clock, no async: every
//! call takes `now` and the keeper (`keeper.rs`) feeds it what it observed.
//!
//! Invariants:
//! - The table belongs to one leadership term. `lead` with another term, or `step_down`, drops
//!   every deadline; a table that is not `ready` grants and expires nothing.
//! - A session first seen by `sync` gets `now + ttl + grace` (the fail-over rule: a client whose
//!   last KeepAlive went to the old leader keeps its lease through the election).
//! - Deadlines only move forward, and nothing is `due` before its deadline; a session chosen for
//!   expiry (`mark`) is neither extended nor chosen again until `unmark`.
//! - KeepAlives are granted only while a quorum confirmation started less than `quorum_window`
//!   ago, so a deposed leader stops granting before a new leader's grace runs out.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::KeepAliveError;

/// One session's lease on this leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Lease {
    ttl: Duration,
    deadline: Instant,
    expiring: bool,
}

/// Session deadlines of one leadership term.
#[derive(Debug)]
pub(crate) struct LeaseTable {
    grace: Duration,
    quorum_window: Duration,
    term: Option<u64>,
    ready: bool,
    last_confirmed: Option<Instant>,
    leases: HashMap<u64, Lease>,
}

impl LeaseTable {
    /// An empty table, not leading.
    pub(crate) fn new(grace: Duration, quorum_window: Duration) -> LeaseTable {
        LeaseTable {
            grace,
            quorum_window,
            term: None,
            ready: false,
            last_confirmed: None,
            leases: HashMap::new(),
        }
    }

    /// The term this table leads, if any.
    pub(crate) fn term(&self) -> Option<u64> {
        self.term
    }

    /// Whether the table has synced with the state of its term and may grant and expire.
    pub(crate) fn ready(&self) -> bool {
        self.ready
    }

    /// Sessions the table tracks.
    pub(crate) fn len(&self) -> usize {
        self.leases.len()
    }

    /// This node leads `term`: a new term starts an empty, unready table. Returns whether the
    /// table was reset.
    pub(crate) fn lead(&mut self, term: u64) -> bool {
        if self.term == Some(term) {
            return false;
        }
        self.reset(Some(term));
        true
    }

    /// This node does not lead: forget everything.
    pub(crate) fn step_down(&mut self) {
        if self.term.is_some() || !self.leases.is_empty() {
            self.reset(None);
        }
    }

    fn reset(&mut self, term: Option<u64>) {
        self.term = term;
        self.ready = false;
        self.last_confirmed = None;
        self.leases.clear();
    }

    /// A quorum confirmed `term`'s leadership in a round that started at `started`.
    pub(crate) fn confirmed(&mut self, term: u64, started: Instant) {
        if self.term == Some(term) {
            self.last_confirmed = Some(self.last_confirmed.map_or(started, |t| t.max(started)));
        }
    }

    /// Whether a quorum confirmation started less than `quorum_window` before `now`.
    pub(crate) fn quorum_fresh(&self, now: Instant) -> bool {
        self.last_confirmed
            .is_some_and(|t| now.saturating_duration_since(t) < self.quorum_window)
    }

    /// Aligns the table with the applied state of `term`: `live` is every live session with its
    /// TTL. Sessions new to the table get `now + ttl + grace`; sessions no longer live are
    /// dropped. The table is ready afterwards. Returns how many sessions were added.
    pub(crate) fn sync(
        &mut self,
        term: u64,
        live: impl IntoIterator<Item = (u64, Duration)>,
        now: Instant,
    ) -> usize {
        if self.term != Some(term) {
            return 0;
        }
        // Only the sync that takes over a term adds the grace: those sessions may hold leases
        // an earlier leader granted. A session first seen later was opened through this leader
        // (everything committed before its term was applied before the first sync), so plain
        // `ttl` is its whole lease; adding grace there would keep a dead client's locks for
        // `ttl + grace`.
        let grace = if self.ready {
            Duration::ZERO
        } else {
            self.grace
        };
        let mut seen = std::collections::HashSet::new();
        let mut added = 0;
        for (session, ttl) in live {
            seen.insert(session);
            self.leases.entry(session).or_insert_with(|| {
                added += 1;
                Lease {
                    ttl,
                    deadline: now + ttl + grace,
                    expiring: false,
                }
            });
        }
        self.leases.retain(|session, _| seen.contains(session));
        self.ready = true;
        added
    }

    /// Extends `session`'s lease to at least `now + ttl`; the granted TTL. `is_live` asks the
    /// applied state whether a tracked session is still live (it may have been closed since
    /// the last `sync`); `live_ttl` looks up the TTL of a session opened after the last `sync`
    /// (`None` if it is not live).
    pub(crate) fn keep_alive(
        &mut self,
        session: u64,
        now: Instant,
        is_live: impl FnOnce() -> bool,
        live_ttl: impl FnOnce() -> Option<Duration>,
    ) -> Result<Duration, KeepAliveError> {
        if self.term.is_none() {
            return Err(KeepAliveError::NotLeader);
        }
        if !self.ready {
            return Err(KeepAliveError::NotReady);
        }
        if !self.quorum_fresh(now) {
            return Err(KeepAliveError::QuorumLost);
        }
        if let Some(lease) = self.leases.get_mut(&session) {
            if lease.expiring {
                return Err(KeepAliveError::SessionGone);
            }
            if !is_live() {
                self.leases.remove(&session);
                return Err(KeepAliveError::SessionGone);
            }
            lease.deadline = lease.deadline.max(now + lease.ttl);
            return Ok(lease.ttl);
        }
        let ttl = live_ttl().ok_or(KeepAliveError::SessionGone)?;
        self.leases.insert(
            session,
            Lease {
                ttl,
                deadline: now + ttl,
                expiring: false,
            },
        );
        Ok(ttl)
    }

    /// Up to `limit` sessions whose deadline has passed and that are not already being
    /// expired, smallest id first; none unless the table is ready and the quorum fresh.
    pub(crate) fn due(&self, now: Instant, limit: usize) -> Vec<u64> {
        if !self.ready || !self.quorum_fresh(now) {
            return Vec::new();
        }
        let mut due: Vec<u64> = self
            .leases
            .iter()
            .filter(|(_, l)| !l.expiring && l.deadline <= now)
            .map(|(session, _)| *session)
            .collect();
        due.sort_unstable();
        due.truncate(limit);
        due
    }

    /// The sessions are being expired: no more KeepAlives for them, and not `due` again.
    pub(crate) fn mark(&mut self, sessions: &[u64]) {
        for session in sessions {
            if let Some(lease) = self.leases.get_mut(session) {
                lease.expiring = true;
            }
        }
    }

    /// Expiring the sessions failed: they are ordinary overdue sessions again.
    pub(crate) fn unmark(&mut self, sessions: &[u64]) {
        for session in sessions {
            if let Some(lease) = self.leases.get_mut(session) {
                lease.expiring = false;
            }
        }
    }

    /// The session's current deadline, for tests.
    #[cfg(test)]
    fn deadline(&self, session: u64) -> Option<Instant> {
        self.leases.get(&session).map(|l| l.deadline)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    const GRACE: Duration = Duration::from_secs(5);
    const WINDOW: Duration = Duration::from_millis(600);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A ready table leading term 3, confirmed at `t0`, with sessions 1 (ttl 1 s) and
    /// 2 (ttl 2 s).
    fn ready_table(t0: Instant) -> LeaseTable {
        let mut t = LeaseTable::new(GRACE, WINDOW);
        assert!(t.lead(3));
        t.confirmed(3, t0);
        assert_eq!(t.sync(3, [(1, ms(1_000)), (2, ms(2_000))], t0), 2);
        t
    }

    #[test]
    fn a_new_term_syncs_every_session_to_ttl_plus_grace_and_later_ones_to_ttl() {
        let t0 = Instant::now();
        let mut t = LeaseTable::new(GRACE, WINDOW);
        assert!(t.lead(3));
        assert!(!t.lead(3), "the same term does not reset");
        assert!(!t.ready());
        t.confirmed(3, t0);
        t.sync(3, [(1, ms(1_000)), (2, ms(2_000))], t0);
        assert!(t.ready());
        assert_eq!(t.deadline(1), Some(t0 + ms(1_000) + GRACE));
        assert_eq!(t.deadline(2), Some(t0 + ms(2_000) + GRACE));

        // A later sync keeps known deadlines and drops sessions that are gone.
        t.sync(3, [(2, ms(2_000)), (4, ms(500))], t0 + ms(100));
        assert_eq!(t.deadline(1), None);
        assert_eq!(t.deadline(2), Some(t0 + ms(2_000) + GRACE));
        // Session 4 was opened through this leader after it took over: no grace.
        assert_eq!(t.deadline(4), Some(t0 + ms(600)));
        assert_eq!(t.len(), 2);

        // Another term starts over; a sync for a stale term does nothing.
        assert!(t.lead(4));
        assert!(!t.ready());
        assert_eq!(t.len(), 0);
        assert_eq!(t.sync(3, [(2, ms(2_000))], t0), 0);
        assert!(!t.ready());
        t.step_down();
        assert_eq!(t.term(), None);
    }

    #[test]
    fn keep_alive_is_refused_until_ready_and_while_the_quorum_is_stale() {
        let t0 = Instant::now();
        let mut t = LeaseTable::new(GRACE, WINDOW);
        let live = || Some(ms(1_000));
        assert_eq!(
            t.keep_alive(1, t0, || true, live),
            Err(KeepAliveError::NotLeader)
        );
        t.lead(3);
        assert_eq!(
            t.keep_alive(1, t0, || true, live),
            Err(KeepAliveError::NotReady)
        );
        t.sync(3, [(1, ms(1_000))], t0);
        assert_eq!(
            t.keep_alive(1, t0, || true, live),
            Err(KeepAliveError::QuorumLost)
        );
        t.confirmed(3, t0);
        assert_eq!(t.keep_alive(1, t0 + ms(599), || true, live), Ok(ms(1_000)));
        assert_eq!(
            t.keep_alive(1, t0 + WINDOW, || true, live),
            Err(KeepAliveError::QuorumLost)
        );
        // A confirmation for another term does not count; an older one does not go back.
        t.confirmed(2, t0 + ms(1_000));
        assert!(!t.quorum_fresh(t0 + WINDOW));
        t.confirmed(3, t0 + ms(1_000));
        t.confirmed(3, t0);
        assert!(t.quorum_fresh(t0 + ms(1_500)));
    }

    #[test]
    fn keep_alive_extends_only_forward_and_adds_sessions_opened_since_the_sync() {
        let t0 = Instant::now();
        let mut t = ready_table(t0);
        let never = || -> Option<Duration> { panic!("session 1 is in the table") };
        // Within ttl + grace a KeepAlive does not shorten the fail-over deadline.
        assert_eq!(t.keep_alive(1, t0 + ms(100), || true, never), Ok(ms(1_000)));
        assert_eq!(t.deadline(1), Some(t0 + ms(1_000) + GRACE));
        t.confirmed(3, t0 + ms(5_900));
        assert_eq!(
            t.keep_alive(1, t0 + ms(6_000), || true, never),
            Ok(ms(1_000))
        );
        assert_eq!(t.deadline(1), Some(t0 + ms(7_000)));

        // Opened after the sync: the applied state decides, with the plain ttl.
        assert_eq!(
            t.keep_alive(9, t0 + ms(6_000), || true, || Some(ms(300))),
            Ok(ms(300))
        );
        assert_eq!(t.deadline(9), Some(t0 + ms(6_300)));
        assert_eq!(
            t.keep_alive(10, t0 + ms(6_000), || true, || None),
            Err(KeepAliveError::SessionGone)
        );
        assert_eq!(t.deadline(10), None);

        // Closed since the last sync: gone, and forgotten.
        assert_eq!(
            t.keep_alive(2, t0 + ms(6_000), || false, never),
            Err(KeepAliveError::SessionGone)
        );
        assert_eq!(t.deadline(2), None);
    }

    #[test]
    fn due_mark_and_unmark() {
        let t0 = Instant::now();
        let mut t = ready_table(t0);
        let d1 = t0 + ms(1_000) + GRACE;
        let d2 = t0 + ms(2_000) + GRACE;
        t.confirmed(3, d2);
        assert!(t.due(d1 - ms(1), 10).is_empty());
        assert_eq!(t.due(d1, 10), vec![1]);
        assert_eq!(t.due(d2, 10), vec![1, 2]);
        assert_eq!(t.due(d2, 1), vec![1]);

        t.mark(&[1]);
        assert_eq!(t.due(d2, 10), vec![2]);
        assert_eq!(
            t.keep_alive(1, d2, || true, || None),
            Err(KeepAliveError::SessionGone)
        );
        t.unmark(&[1, 77]);
        assert_eq!(t.due(d2, 10), vec![1, 2]);

        // Nothing is due on a stale quorum or before the table is ready.
        assert!(t.due(d2 + WINDOW, 10).is_empty());
        t.lead(4);
        t.confirmed(4, d2);
        assert!(t.due(d2, 10).is_empty());
    }

    #[derive(Debug, Clone)]
    enum Step {
        Advance(u64),
        Confirm,
        KeepAlive(u64),
        Sync,
        Expire,
        FailExpiry,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0..400u64).prop_map(Step::Advance),
            Just(Step::Confirm),
            (0..6u64).prop_map(Step::KeepAlive),
            Just(Step::Sync),
            Just(Step::Expire),
            Just(Step::FailExpiry),
        ]
    }

    proptest! {
        /// No session is ever chosen for expiry before the latest deadline the table promised
        /// it: `now + ttl + grace` at the sync, `now + ttl` at every granted KeepAlive.
        #[test]
        fn no_session_is_due_before_its_latest_granted_deadline(
            steps in proptest::collection::vec(step(), 1..200),
        ) {
            let grace = ms(300);
            let ttl = |s: u64| ms(100 + 50 * s);
            let t0 = Instant::now();
            let mut now = t0;
            let mut t = LeaseTable::new(grace, ms(200));
            t.lead(1);
            let mut live: std::collections::BTreeSet<u64> = (0..6).collect();
            let mut promised: HashMap<u64, Instant> = HashMap::new();
            let mut last_marked = Vec::new();
            for step in steps {
                match step {
                    Step::Advance(d) => now += ms(d),
                    Step::Confirm => t.confirmed(1, now),
                    Step::Sync => {
                        let was_ready = t.ready();
                        t.sync(1, live.iter().map(|s| (*s, ttl(*s))), now);
                        if !was_ready {
                            for s in &live {
                                promised.insert(*s, now + ttl(*s) + grace);
                            }
                        }
                    }
                    Step::KeepAlive(s) => {
                        let is_live = live.contains(&s);
                        if let Ok(granted) = t.keep_alive(s, now, || is_live, || is_live.then(|| ttl(s))) {
                            prop_assert!(is_live, "granted a lease to a dead session");
                            prop_assert_eq!(granted, ttl(s));
                            let p = promised.entry(s).or_insert(now + granted);
                            *p = (*p).max(now + granted);
                        }
                    }
                    Step::Expire => {
                        let due = t.due(now, 3);
                        for s in &due {
                            if let Some(p) = promised.get(s) {
                                prop_assert!(*p <= now, "session {} due before its deadline", s);
                            }
                        }
                        t.mark(&due);
                        last_marked = due;
                    }
                    Step::FailExpiry => t.unmark(&std::mem::take(&mut last_marked)),
                }
                // An expiry that succeeded (marked, then not unmarked) is applied sometimes.
                if now > t0 + ms(2_000) {
                    for s in last_marked.drain(..) {
                        live.remove(&s);
                    }
                }
            }
        }
    }
}
