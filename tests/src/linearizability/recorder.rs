//! Recording a history while a workload runs: one shared monotonic clock (time since the
//! recorder was made) for every client, so invocations and completions of different clients
//! are comparable. This is the edge that reads the clock; the checker never does.
//!
//! A client calls [`Recorder::invoke`] right before sending a request and then exactly one of
//! [`Recorder::complete`] (an answer), [`Recorder::unknown`] (it may have been applied) or
//! [`Recorder::fail`] (it certainly was not, or it was a read: dropped from the history).
//! At most `capacity` operations are kept; past that, invocations are refused (the workload
//! should stop), so a runaway workload cannot eat the machine's memory.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::history::{Call, Completion, Operation, Return};

/// An operation invoked and not yet finished.
#[derive(Debug)]
#[must_use = "an invocation ends with complete, unknown or fail"]
pub struct Invocation {
    client: u32,
    key: Bytes,
    call: Call,
    invoke: Duration,
}

impl Invocation {
    /// What was called.
    pub fn call(&self) -> &Call {
        &self.call
    }
}

/// How many operations ended each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Completed with an answer.
    pub completed: u64,
    /// Outcome unknown (kept, without completion).
    pub unknown: u64,
    /// Dropped: definitely not applied, or a read that failed.
    pub failed: u64,
}

/// A history being recorded by many clients at once.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    capacity: usize,
    ops: Mutex<Vec<Operation>>,
    completed: AtomicU64,
    unknown: AtomicU64,
    failed: AtomicU64,
}

impl Recorder {
    /// A recorder whose clock starts now, keeping at most `capacity` operations.
    pub fn new(capacity: usize) -> Recorder {
        Recorder {
            start: Instant::now(),
            capacity,
            ops: Mutex::new(Vec::new()),
            completed: AtomicU64::new(0),
            unknown: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    /// Time on the shared clock.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn len(&self) -> usize {
        self.ops.lock().map(|ops| ops.len()).unwrap_or(usize::MAX)
    }

    /// Records that `client` is about to call `call` on `key`; `None` once the history is full.
    pub fn invoke(&self, client: u32, key: Bytes, call: Call) -> Option<Invocation> {
        if self.len() >= self.capacity {
            return None;
        }
        Some(Invocation {
            client,
            key,
            call,
            invoke: self.now(),
        })
    }

    fn push(&self, op: Operation) {
        if let Ok(mut ops) = self.ops.lock() {
            ops.push(op);
        }
    }

    /// The call answered `ret` (now).
    pub fn complete(&self, inv: Invocation, ret: Return) {
        let at = self.now();
        self.completed.fetch_add(1, Ordering::Relaxed);
        self.push(Operation {
            client: inv.client,
            key: inv.key,
            call: inv.call,
            invoke: inv.invoke,
            completion: Some(Completion { at, ret }),
        });
    }

    /// The call may or may not have been applied.
    pub fn unknown(&self, inv: Invocation) {
        self.unknown.fetch_add(1, Ordering::Relaxed);
        self.push(Operation {
            client: inv.client,
            key: inv.key,
            call: inv.call,
            invoke: inv.invoke,
            completion: None,
        });
    }

    /// The call certainly was not applied (or was a read): it is not part of the history.
    pub fn fail(&self, inv: Invocation) {
        drop(inv);
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// How many operations ended each way so far.
    pub fn counts(&self) -> Counts {
        Counts {
            completed: self.completed.load(Ordering::Relaxed),
            unknown: self.unknown.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }

    /// The history so far, in the order operations ended.
    pub fn history(&self) -> Vec<Operation> {
        self.ops.lock().map(|ops| ops.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_unknowns_and_failures_are_recorded_on_one_clock() {
        let r = Recorder::new(10);
        let a = r.invoke(1, Bytes::from("k"), Call::Read).unwrap();
        let b = r
            .invoke(2, Bytes::from("k"), Call::Write(Bytes::from("v")))
            .unwrap();
        let c = r.invoke(3, Bytes::from("k"), Call::Read).unwrap();
        r.complete(a, Return::Read(None));
        r.unknown(b);
        r.fail(c);
        let h = r.history();
        assert_eq!(h.len(), 2);
        let done = h[0].completion.as_ref().unwrap();
        assert!(done.at >= h[0].invoke);
        assert_eq!(h[0].client, 1);
        assert!(h[1].is_unknown());
        assert_eq!(
            r.counts(),
            Counts {
                completed: 1,
                unknown: 1,
                failed: 1
            }
        );
    }

    #[test]
    fn a_full_recorder_refuses_invocations() {
        let r = Recorder::new(1);
        let a = r.invoke(1, Bytes::from("k"), Call::Read).unwrap();
        r.complete(a, Return::Read(None));
        assert!(r.invoke(1, Bytes::from("k"), Call::Read).is_none());
    }
}
