//! Sequence numbers and visibility: every entry gets its own number; a reader sees every row
//! mutation whose numbers are all at or below the visible number, and nothing of the others.
//!
//! A row mutation takes a range of numbers (`begin`), is logged and inserted, then `finish`es.
//! The visible number is one below the lowest range still in flight, so a mutation becomes
//! visible all at once, and only when every earlier one has too.
//!
//! A write is acknowledged only once it is visible (`wait_visible`): finishing is not enough,
//! as an earlier range may still be in flight (a write that took its numbers first and was
//! synced in a later batch, or was woken later from the same one). Acknowledging before that
//! let the writer's next read miss its own write.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex};
use tokio::sync::Notify;

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
    /// Wakes tasks waiting in `wait_visible` when the visible number moves.
    moved: Notify,
    /// Wakes threads waiting in `wait_visible_blocking` (with `inner`).
    moved_blocking: Condvar,
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
            moved: Notify::new(),
            moved_blocking: Condvar::new(),
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
        let moved = self.visible.swap(visible, Ordering::AcqRel) != visible;
        // Waking needs no lock: a blocked waiter checks the number under `inner`, which was
        // stored under it, so it either saw the new number or is already waiting.
        drop(inner);
        if moved {
            self.moved.notify_waiters();
            self.moved_blocking.notify_all();
        }
    }

    /// Whether the range starting at `first` has finished (visible or not).
    #[cfg(test)]
    pub(crate) fn is_finished(&self, first: Seq) -> bool {
        let inner = self.inner.lock();
        first < inner.next
            && inner
                .in_flight
                .binary_search_by_key(&first, |(s, _)| *s)
                .map_or(true, |i| inner.in_flight[i].1)
    }

    /// Returns once `seq` is visible, waiting without blocking a thread. Every range taken with
    /// `begin` is finished (a write that fails finishes its numbers too), so this ends.
    pub(crate) async fn wait_visible(&self, seq: Seq) {
        loop {
            let moved = self.moved.notified();
            let mut moved = std::pin::pin!(moved);
            // Registered before the check, so a move between the check and the wait wakes it.
            moved.as_mut().enable();
            if self.visible() >= seq {
                return;
            }
            moved.await;
        }
    }

    /// [`SeqTracker::wait_visible`], blocking the thread; never call it from async code.
    pub(crate) fn wait_visible_blocking(&self, seq: Seq) {
        let mut inner = self.inner.lock();
        while self.visible() < seq {
            self.moved_blocking.wait(&mut inner);
        }
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
    use std::future::Future;
    use std::task::Poll;

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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiters_return_once_every_earlier_range_has_finished() {
        let t = std::sync::Arc::new(SeqTracker::new(10));
        let a = t.begin(1);
        let b = t.begin(1);
        t.finish(b);
        let mut waiter = std::pin::pin!(t.wait_visible(b));
        let first_poll = std::future::poll_fn(|cx| Poll::Ready(waiter.as_mut().poll(cx))).await;
        assert!(first_poll.is_pending(), "returned while {a} was in flight");
        // Whenever it returns, what it waited for is visible.
        let blocked = std::thread::spawn({
            let t = t.clone();
            move || {
                t.wait_visible_blocking(b);
                t.visible()
            }
        });
        t.finish(a);
        tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
            .await
            .expect("the async waiter was not woken");
        assert!(blocked.join().unwrap() >= b);
        // Already visible: no wait.
        t.wait_visible(a).await;
        t.wait_visible_blocking(a);
    }
}
