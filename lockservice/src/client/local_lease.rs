//! The client's copy of a session lease, as pure arithmetic over instants (tested without a
//! runtime or a network).
//!
//! The cell counts a lease from when its leader received the KeepAlive (or applied the
//! OpenSession); the client counts it from the instant just before it sent the request, which
//! is earlier, and ends it a further ttl/100 early for clock-rate drift. So the local lease
//! always ends before the cell's. After it ends the session is in jeopardy for `grace`, then
//! expired for good.

use std::time::Duration;

use tokio::time::Instant;

use super::types::SessionState;

/// When a lease counted from `sent_at` with `ttl` ends locally: `sent_at + ttl - ttl/100`.
pub(super) fn local_lease_end(sent_at: Instant, ttl: Duration) -> Instant {
    sent_at + ttl - ttl / 100
}

/// A session's local lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LocalLease {
    /// When the local lease ends (jeopardy starts).
    end: Instant,
    /// Jeopardy lasts this long after `end`.
    grace: Duration,
    /// The lease the cell granted last.
    ttl: Duration,
    /// The cell said the session is gone, or the client gave it up: final.
    expired: bool,
}

impl LocalLease {
    /// The lease of a session opened (or kept alive) by a request sent at `sent_at` that was
    /// granted `ttl`.
    pub(super) fn new(sent_at: Instant, ttl: Duration, grace: Duration) -> LocalLease {
        LocalLease {
            end: local_lease_end(sent_at, ttl),
            grace,
            ttl,
            expired: false,
        }
    }

    /// The session's state at `now`.
    pub(super) fn state(&self, now: Instant) -> SessionState {
        if self.expired || now >= self.end + self.grace {
            SessionState::Expired
        } else if now < self.end {
            SessionState::Safe
        } else {
            SessionState::Jeopardy
        }
    }

    /// Counts a KeepAlive sent at `sent_at` and answered at `now` with `ttl`. The lease never
    /// shortens, and an expired session stays expired (the answer came too late): then the
    /// lease is marked expired and `false` returned.
    pub(super) fn extend(&mut self, sent_at: Instant, ttl: Duration, now: Instant) -> bool {
        if self.state(now) == SessionState::Expired {
            self.expired = true;
            return false;
        }
        self.end = self.end.max(local_lease_end(sent_at, ttl));
        self.ttl = ttl;
        true
    }

    /// Marks the session expired for good.
    pub(super) fn expire(&mut self) {
        self.expired = true;
    }

    /// When the state next changes by the clock alone, or `None` once expired.
    pub(super) fn next_change(&self, now: Instant) -> Option<Instant> {
        match self.state(now) {
            SessionState::Safe => Some(self.end),
            SessionState::Jeopardy => Some(self.end + self.grace),
            SessionState::Expired => None,
        }
    }

    /// When the client gives the session up if no KeepAlive succeeds first.
    pub(super) fn give_up_at(&self) -> Instant {
        self.end + self.grace
    }

    /// The lease the cell granted last.
    pub(super) fn ttl(&self) -> Duration {
        self.ttl
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(10);
    const GRACE: Duration = Duration::from_secs(5);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_local_lease_ends_a_hundredth_early_counted_from_the_send() {
        let t0 = Instant::now();
        assert_eq!(local_lease_end(t0, TTL), t0 + ms(9_900));
        assert_eq!(local_lease_end(t0, ms(1_000)), t0 + ms(990));
    }

    #[test]
    fn safe_then_jeopardy_then_expired() {
        let t0 = Instant::now();
        let lease = LocalLease::new(t0, TTL, GRACE);
        assert_eq!(lease.state(t0), SessionState::Safe);
        assert_eq!(lease.state(t0 + ms(9_899)), SessionState::Safe);
        assert_eq!(lease.state(t0 + ms(9_900)), SessionState::Jeopardy);
        assert_eq!(lease.state(t0 + ms(14_899)), SessionState::Jeopardy);
        assert_eq!(lease.state(t0 + ms(14_900)), SessionState::Expired);
        assert_eq!(lease.next_change(t0), Some(t0 + ms(9_900)));
        assert_eq!(lease.next_change(t0 + ms(9_900)), Some(t0 + ms(14_900)));
        assert_eq!(lease.next_change(t0 + ms(14_900)), None);
        assert_eq!(lease.give_up_at(), t0 + ms(14_900));
    }

    #[test]
    fn a_keepalive_in_jeopardy_makes_the_session_safe_again() {
        let t0 = Instant::now();
        let mut lease = LocalLease::new(t0, TTL, GRACE);
        let sent = t0 + ms(12_000);
        assert!(lease.extend(sent, TTL, sent + ms(50)));
        assert_eq!(lease.state(sent + ms(50)), SessionState::Safe);
        assert_eq!(lease.next_change(sent), Some(sent + ms(9_900)));
    }

    #[test]
    fn a_late_answer_does_not_revive_an_expired_session() {
        let t0 = Instant::now();
        let mut lease = LocalLease::new(t0, TTL, GRACE);
        // Sent in jeopardy, answered after the grace ran out (e.g. the process was stopped).
        let sent = t0 + ms(14_000);
        assert!(!lease.extend(sent, TTL, t0 + ms(15_000)));
        assert_eq!(lease.state(t0 + ms(15_000)), SessionState::Expired);
        // Final even if a later computation would have found the lease running.
        assert_eq!(lease.state(sent + ms(1)), SessionState::Expired);
    }

    #[test]
    fn the_lease_never_shortens() {
        let t0 = Instant::now();
        let mut lease = LocalLease::new(t0 + ms(5_000), TTL, GRACE);
        // An older request answered late, with a shorter ttl.
        assert!(lease.extend(t0, ms(1_000), t0 + ms(6_000)));
        assert_eq!(lease.state(t0 + ms(14_000)), SessionState::Safe);
        assert_eq!(lease.ttl(), ms(1_000));
    }

    #[test]
    fn an_expired_mark_is_final() {
        let t0 = Instant::now();
        let mut lease = LocalLease::new(t0, TTL, GRACE);
        lease.expire();
        assert_eq!(lease.state(t0), SessionState::Expired);
        assert_eq!(lease.next_change(t0), None);
        assert!(!lease.extend(t0, TTL, t0));
    }
}
