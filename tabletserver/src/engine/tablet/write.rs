//! The write path: validate, take sequence numbers (and a server timestamp), append to the
//! commit log and wait for the group commit, insert into the active memtable, become visible.
//! A full memtable freezes; too many frozen memtables make writers wait for the flusher.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};

use crate::engine::error::EngineError;
use crate::engine::key::Seq;
use crate::engine::memtable::Memtable;
use crate::engine::mutation::RowMutation;

use super::core::{Inner, State, Tablet};

/// Row-lock stripes; a check-and-mutate holds its row's stripe across read and write.
const ROW_LOCK_STRIPES: usize = 256;

/// Striped row locks.
#[derive(Debug)]
pub(crate) struct RowLocks {
    stripes: Vec<Mutex<()>>,
    hasher: std::collections::hash_map::RandomState,
}

impl RowLocks {
    pub(crate) fn new() -> Self {
        RowLocks {
            stripes: (0..ROW_LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }
}

/// Holds a row's lock: no other read-modify-write of rows in the same stripe runs meanwhile.
#[derive(Debug)]
pub struct RowGuard<'a> {
    _guard: MutexGuard<'a, ()>,
}

impl Tablet {
    /// Applies a row mutation atomically and durably; returns its last sequence number.
    /// Once this returns, the write is in the commit log (synced) and visible to readers.
    pub fn apply(&self, mutation: RowMutation) -> Result<Seq, EngineError> {
        self.inner.apply(mutation)
    }

    /// Locks `row` for a read-modify-write (check-and-mutate, increment, append). Plain
    /// `apply` does not need it: every mutation is atomic on its own.
    pub fn lock_row(&self, row: &[u8]) -> RowGuard<'_> {
        let stripe = (self.inner.row_locks.hasher.hash_one(row) as usize) % ROW_LOCK_STRIPES;
        let lock = &self.inner.row_locks.stripes[stripe];
        RowGuard {
            _guard: lock.lock(),
        }
    }
}

impl Inner {
    pub(crate) fn apply(&self, mut m: RowMutation) -> Result<Seq, EngineError> {
        self.check_open()?;
        m.validate()?;
        if !self.range.contains(&m.row) {
            return Err(EngineError::OutOfRange {
                row: m.row.escape_ascii().to_string(),
            });
        }
        {
            let schema = self.schema.read();
            if let Some(f) = m
                .mutations
                .iter()
                .filter_map(|x| x.family())
                .find(|f| !schema.families.contains_key(*f))
            {
                return Err(EngineError::UnknownFamily(
                    String::from_utf8_lossy(f).into_owned(),
                ));
            }
        }
        self.wait_for_room()?;
        let count = m.mutations.len() as u64;
        let first = self.seqs.begin(count);
        if let Err(e) = self.check_open() {
            // Closed (for a split) between the check above and taking numbers.
            self.seqs.finish(first);
            return Err(e);
        }
        if m.needs_server_time() {
            m.resolve_server_time(self.next_server_timestamp());
        }
        let payload = m.encode();
        if let Err(e) = self
            .engine
            .log
            .append(self.id, first, count as u32, &payload)
        {
            self.seqs.finish(first);
            self.fail(format!("commit log append failed: {e}"));
            return Err(e.into());
        }
        let entries = m.into_entries(first);
        let full = {
            let state = self.state.read();
            state.active.insert(entries);
            state.active.approximate_bytes() >= self.engine.opts.memtable_bytes
        };
        self.seqs.finish(first);
        if full {
            self.freeze(false);
        }
        Ok(first + count - 1)
    }

    /// A server timestamp: the wall clock in microseconds, made strictly increasing per tablet
    /// so two writes never collide.
    fn next_server_timestamp(&self) -> i64 {
        let now = self.engine.clock.now().micros();
        let mut prev = self.last_timestamp.load(Ordering::Acquire);
        loop {
            let next = now.max(prev + 1);
            match self.last_timestamp.compare_exchange(
                prev,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return next,
                Err(p) => prev = p,
            }
        }
    }

    /// Waits while too many frozen memtables await their flush (bounded memory).
    fn wait_for_room(&self) -> Result<(), EngineError> {
        let max = self.engine.opts.max_frozen_memtables.max(1);
        if self.state.read().frozen.len() < max {
            return Ok(());
        }
        let deadline = Instant::now() + self.engine.opts.write_stall_timeout;
        let mut guard = self.stall.lock();
        while self.state.read().frozen.len() >= max {
            self.check_open()?;
            if Instant::now() >= deadline {
                return Err(EngineError::Stalled(self.id.to_string()));
            }
            self.kick();
            self.stall_cv
                .wait_for(&mut guard, Duration::from_millis(100));
        }
        Ok(())
    }

    /// Freezes the active memtable (if it is full, or if `force` and it is not empty) and
    /// wakes the flusher. Returns whether it froze one.
    pub(crate) fn freeze(&self, force: bool) -> bool {
        let froze = {
            let mut state = self.state.write();
            let active = &state.active;
            let should = if force {
                !active.is_empty()
            } else {
                active.approximate_bytes() >= self.engine.opts.memtable_bytes
            };
            if should {
                let mut next = State::clone(&state);
                next.frozen.push(std::mem::replace(
                    &mut next.active,
                    Arc::new(Memtable::new()),
                ));
                *state = Arc::new(next);
            }
            should
        };
        if froze {
            self.kick();
        }
        froze
    }

    /// Wakes the background thread.
    pub(crate) fn kick(&self) {
        self.work.lock().kicked = true;
        self.work_cv.notify_all();
    }
}
