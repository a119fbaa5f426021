//! When each fault kind fires next, pure: every kind fires once per its period, each interval
//! jittered by ±25% from the agitator's seeded RNG, so that kinds drift against each other and
//! a run can be replayed from its seed. A fault that had to wait (its role busy, no leader
//! known, the previous admin operation still running) is tried again soon, not a period later,
//! and keeps its place: due kinds come longest-overdue first, so a pause waiting for the
//! tablet servers to heal is not overtaken by every tablet kill that falls due meanwhile.

use std::time::{Duration, Instant};

use rand::Rng;

use super::spec::{AgitateSpec, Kind};

/// How soon a fault that had to wait is tried again: at the agitator's next look, so that all
/// waiting kinds are tried together and the longest overdue wins.
pub(crate) const RETRY: Duration = Duration::from_millis(100);

/// One kind's timing.
#[derive(Debug, Clone, Copy)]
struct Slot {
    kind: Kind,
    period: Duration,
    /// When it fell (or falls) due.
    due: Instant,
    /// When it is tried again after having to wait.
    retry_at: Option<Instant>,
}

impl Slot {
    fn next_try(&self) -> Instant {
        self.retry_at.unwrap_or(self.due)
    }
}

/// The next firing of every enabled kind.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    slots: Vec<Slot>,
}

/// `period` scaled by a random factor in [0.75, 1.25].
fn jittered(period: Duration, rng: &mut impl Rng) -> Duration {
    period.mul_f64(rng.random_range(0.75..=1.25))
}

impl Schedule {
    /// The schedule of `spec` from `now`: each kind first fires about a period from now.
    pub(crate) fn new(spec: &AgitateSpec, now: Instant, rng: &mut impl Rng) -> Schedule {
        let slots = spec
            .periods
            .iter()
            .map(|(kind, period)| Slot {
                kind: *kind,
                period: *period,
                due: now + jittered(*period, rng),
                retry_at: None,
            })
            .collect();
        Schedule { slots }
    }

    /// The kinds to try at `now`, longest overdue first.
    pub(crate) fn due(&self, now: Instant) -> Vec<Kind> {
        let mut due: Vec<&Slot> = self.slots.iter().filter(|s| s.next_try() <= now).collect();
        due.sort_by_key(|s| (s.due, s.kind));
        due.into_iter().map(|s| s.kind).collect()
    }

    /// When the next kind is to be tried (`None` with no kind enabled).
    #[cfg(test)]
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.slots.iter().map(Slot::next_try).min()
    }

    /// `kind` fired at `now`: it is next due about a period later.
    pub(crate) fn fired(&mut self, kind: Kind, now: Instant, rng: &mut impl Rng) {
        for slot in self.slots.iter_mut().filter(|s| s.kind == kind) {
            slot.due = now + jittered(slot.period, rng);
            slot.retry_at = None;
        }
    }

    /// `kind` had to wait at `now`: it is tried again after [`RETRY`] (or its period, if
    /// shorter), keeping its place among the due kinds.
    pub(crate) fn wait(&mut self, kind: Kind, now: Instant) {
        for slot in self.slots.iter_mut().filter(|s| s.kind == kind) {
            slot.retry_at = Some(now + RETRY.min(slot.period));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn spec(text: &str) -> AgitateSpec {
        AgitateSpec::parse(text).unwrap()
    }

    #[test]
    fn each_kind_fires_about_once_per_period() {
        let mut rng = StdRng::seed_from_u64(5);
        let start = Instant::now();
        let mut schedule = Schedule::new(&spec("master=10s,admin=4s"), start, &mut rng);
        assert!(schedule.due(start).is_empty());
        let mut fired = std::collections::BTreeMap::<Kind, u32>::new();
        let mut now = start;
        let end = start + Duration::from_secs(400);
        while now < end {
            for kind in schedule.due(now) {
                *fired.entry(kind).or_default() += 1;
                schedule.fired(kind, now, &mut rng);
            }
            now += Duration::from_millis(100);
        }
        // 400 s: 40 master periods, 100 admin periods, give or take the jitter.
        let master = fired[&Kind::Master];
        let admin = fired[&Kind::Admin];
        assert!((33..=48).contains(&master), "{master}");
        assert!((85..=115).contains(&admin), "{admin}");
        assert_eq!(fired.len(), 2);
    }

    #[test]
    fn the_first_firing_is_within_a_jittered_period() {
        for seed in 0..50 {
            let mut rng = StdRng::seed_from_u64(seed);
            let start = Instant::now();
            let schedule = Schedule::new(&spec("pause=20s"), start, &mut rng);
            let first = schedule.next_due().unwrap() - start;
            assert!(first >= Duration::from_secs(15) && first <= Duration::from_secs(25));
        }
    }

    #[test]
    fn a_waiting_fault_is_retried_soon_and_the_seed_replays() {
        let start = Instant::now();
        let mut a = Schedule::new(&spec("lock=90s"), start, &mut StdRng::seed_from_u64(9));
        let b = Schedule::new(&spec("lock=90s"), start, &mut StdRng::seed_from_u64(9));
        assert_eq!(a.next_due(), b.next_due());
        let now = a.next_due().unwrap();
        assert_eq!(a.due(now), [Kind::Lock]);
        a.wait(Kind::Lock, now);
        assert_eq!(a.next_due(), Some(now + RETRY));
        let mut short = Schedule::new(&spec("admin=50ms"), start, &mut StdRng::seed_from_u64(1));
        short.wait(Kind::Admin, start);
        assert_eq!(short.next_due(), Some(start + Duration::from_millis(50)));
        assert_eq!(
            Schedule::new(
                &AgitateSpec { periods: vec![] },
                start,
                &mut StdRng::seed_from_u64(1)
            )
            .next_due(),
            None
        );
    }

    #[test]
    fn a_kind_that_waited_is_not_starved_by_a_kind_with_a_shorter_period() {
        let mut rng = StdRng::seed_from_u64(2);
        let start = Instant::now();
        let mut schedule = Schedule::new(&spec("tablet=8s,pause=15s"), start, &mut rng);
        // Both kinds take the tablet servers, which are busy for 15 s after each fault: the
        // tablet kill is due again before they heal every time.
        let mut busy_until = start;
        let mut fired = std::collections::BTreeMap::<Kind, u32>::new();
        let mut now = start;
        while now < start + Duration::from_secs(600) {
            now += Duration::from_millis(100);
            for kind in schedule.due(now) {
                if now < busy_until {
                    schedule.wait(kind, now);
                } else {
                    *fired.entry(kind).or_default() += 1;
                    schedule.fired(kind, now, &mut rng);
                    busy_until = now + Duration::from_secs(15);
                }
            }
        }
        let (tablet, pause) = (fired[&Kind::Tablet], fired[&Kind::Pause]);
        assert!(tablet + pause >= 35, "{fired:?}");
        assert!(pause >= 12, "the pause was starved: {fired:?}");
    }
}
