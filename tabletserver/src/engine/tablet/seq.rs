//! Sequence numbers and visibility: every entry gets its own number; a reader sees every row
//! mutation whose numbers are all at or below the visible number, and nothing of the others.
//!
//! A row mutation takes a range of numbers (`begin`), is logged and inserted, then `finish`es.
//! The visible number is one below the lowest range still in flight, so a mutation becomes
//! visible all at once, and only when every earlier one has too.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::engine::key::Seq;

#[derive(Debug)]
struct Inner {
    next: Seq,
    /// First numbers of ranges handed out and not yet retired, ascending, with whether each has
    /// finished (a finished range stays until every earlier one has finished too).
    in_flight: VecDeque<(Seq, bool)>,
}

/// Hands out sequence numbers and tracks which are visible.
#[derive(Debug)]
pub(crate) struct SeqTracker {
    inner: Mutex<Inner>,
    visible: AtomicU64,
}

impl SeqTracker {
    /// A tracker whose last used number is `last`.
    pub(crate) fn new(last: Seq) -> Self {
        SeqTracker {
            inner: Mutex::new(Inner {
                next: last + 1,
                in_flight: VecDeque::new(),
            }),
            visible: AtomicU64::new(last),
        }
    }

    /// Takes `count` consecutive numbers; returns the first.
    pub(crate) fn begin(&self, count: u64) -> Seq {
        let mut inner = self.inner.lock();
        let first = inner.next;
        inner.next += count.max(1);
        inner.in_flight.push_back((first, false));
        first
    }

    /// The range starting at `first` is inserted (or abandoned): it may become visible.
    pub(crate) fn finish(&self, first: Seq) {
        let mut inner = self.inner.lock();
        if let Ok(i) = inner.in_flight.binary_search_by_key(&first, |(s, _)| *s)
            && let Some(slot) = inner.in_flight.get_mut(i)
        {
            slot.1 = true;
        }
        while inner.in_flight.front().is_some_and(|(_, done)| *done) {
            inner.in_flight.pop_front();
        }
        let visible = inner
            .in_flight
            .front()
            .map_or(inner.next - 1, |(lowest, _)| lowest - 1);
        self.visible.store(visible, Ordering::Release);
    }

    /// Everything at or below this is visible.
    pub(crate) fn visible(&self) -> Seq {
        self.visible.load(Ordering::Acquire)
    }

    /// The lowest number that may still be written to a memtable from now on.
    pub(crate) fn lowest_unfinished(&self) -> Seq {
        let inner = self.inner.lock();
        inner
            .in_flight
            .front()
            .map_or(inner.next, |(lowest, _)| *lowest)
    }

    /// The last number handed out.
    pub(crate) fn last_assigned(&self) -> Seq {
        self.inner.lock().next - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visibility_waits_for_every_earlier_range() {
        let t = SeqTracker::new(10);
        let a = t.begin(3);
        let b = t.begin(1);
        assert_eq!((a, b), (11, 14));
        t.finish(b);
        assert_eq!(t.visible(), 10, "a is still in flight");
        assert_eq!(t.lowest_unfinished(), 11);
        t.finish(a);
        assert_eq!(t.visible(), 14);
        assert_eq!(t.lowest_unfinished(), 15);
        assert_eq!(t.last_assigned(), 14);
    }
}
