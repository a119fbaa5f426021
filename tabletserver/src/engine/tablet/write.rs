//! The write path: validate, take sequence numbers (and a server timestamp), append to the
//! commit log and wait for the group commit, insert into the active memtable, become visible.
//! A full memtable freezes; too many frozen memtables make writers wait for the flusher.
//!
//! Two ways in, one path: `apply` blocks its thread on the group commit (recovery, admin work
//! on the blocking pool, tests); the async ways await it without holding a thread. A caller
//! that goes away must never leave a mutation logged but not inserted, or its sequence
//! numbers unfinished (which would stop every later write from becoming visible). So once a
//! write has taken its numbers, its remainder is an `Unfinished`, which, dropped before the
//! write is visible, moves itself (with the row lock it holds, if any) to a task of its own.
//! That lets the data service run a write in the RPC's own task (`apply_holding`,
//! `apply_in_task`): a task and its wake-ups fewer per write than spawning it, which
//! `apply_async` still does for callers that want a future independent of their own.
//!
//! Row locks are Tokio read-write locks (striped): the data service holds a row's lock across
//! the await of the commit. A check-and-mutate, a read-modify-write or an add (they read the
//! row) holds it exclusively, so it never sees a write of the row half done nor has one slip
//! in between its read and its write; a plain write (it reads nothing) holds it shared, so
//! plain writes of one row, or of rows that share a stripe, join the same group commit
//! instead of waiting one commit each. Their order is their sequence numbers'. Blocking code
//! takes the exclusive lock with `lock_row` (never from an async context).

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock as AsyncRwLock};

use crate::engine::commitlog::Enqueued;
use crate::engine::error::EngineError;
use crate::engine::key::Entry;
use crate::engine::key::Seq;
use crate::engine::memtable::Memtable;
use crate::engine::mutation::RowMutation;

use super::core::{Inner, State, Tablet};

/// Row-lock stripes; a check-and-mutate holds its row's stripe across read and write.
const ROW_LOCK_STRIPES: usize = 256;

/// Striped row locks.
#[derive(Debug)]
pub(crate) struct RowLocks {
    stripes: Vec<Arc<AsyncRwLock<()>>>,
    hasher: std::collections::hash_map::RandomState,
}

impl RowLocks {
    pub(crate) fn new() -> Self {
        RowLocks {
            stripes: (0..ROW_LOCK_STRIPES)
                .map(|_| Arc::new(AsyncRwLock::new(())))
                .collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }
}

/// Holds a row's lock (its stripe's, shared or exclusive) until dropped.
#[derive(Debug)]
pub struct RowGuard {
    _held: Held,
}

/// How a [`RowGuard`] holds its stripe (released when dropped).
#[derive(Debug)]
enum Held {
    Shared { _guard: OwnedRwLockReadGuard<()> },
    Exclusive { _guard: OwnedRwLockWriteGuard<()> },
}

/// A mutation with its sequence numbers taken and its record encoded, not yet logged.
struct Prepared {
    first: Seq,
    count: u64,
    payload: bytes::Bytes,
    mutation: RowMutation,
}

impl Tablet {
    /// Applies a row mutation atomically and durably; returns its last sequence number.
    /// Once this returns, the write is in the commit log (synced) and visible to readers.
    /// Blocks the thread on the group commit: from async code use [`Tablet::apply_async`].
    pub fn apply(&self, mutation: RowMutation) -> Result<Seq, EngineError> {
        self.inner.apply(mutation)
    }

    /// [`Tablet::apply`] without blocking a thread: the group commit is awaited. Once called,
    /// the write runs to its end in a task of its own, even if the returned future is dropped.
    /// Must be called within a Tokio runtime.
    pub fn apply_async(
        &self,
        mutation: RowMutation,
    ) -> impl Future<Output = Result<Seq, EngineError>> + Send + 'static {
        let inner = Arc::clone(&self.inner);
        let task = tokio::spawn(async move { inner.apply_async(mutation, None).await });
        async move {
            task.await
                .map_err(|e| EngineError::Task(format!("a write task failed: {e}")))?
        }
    }

    /// [`Tablet::apply_async`] in the caller's task, for a caller that holds the row lock
    /// itself (the data service's exclusive section). Dropped after the write took its
    /// numbers, the rest of the write moves to a task of its own (see the module doc).
    pub(crate) async fn apply_in_task(&self, mutation: RowMutation) -> Result<Seq, EngineError> {
        Arc::clone(&self.inner).apply_async(mutation, None).await
    }

    /// [`Tablet::apply_async`] in the caller's task, for a caller holding `mutation`'s row
    /// lock (`lock`), which is held until the write is visible. If the returned future is
    /// dropped after the write took its sequence numbers, the rest of the write and the lock
    /// move to a task of their own (see the module doc). Must be called within a Tokio runtime.
    pub(crate) async fn apply_holding(
        &self,
        mutation: RowMutation,
        lock: RowGuard,
    ) -> Result<Seq, EngineError> {
        Arc::clone(&self.inner)
            .apply_async(mutation, Some(lock))
            .await
    }

    /// Locks `row` for a read-modify-write (check-and-mutate, increment, append), blocking
    /// the thread; never call it from async code (use [`Tablet::lock_row_async`]).
    pub fn lock_row(&self, row: &[u8]) -> RowGuard {
        let guard = block_on(self.inner.row_locks.stripe(row).write_owned());
        RowGuard {
            _held: Held::Exclusive { _guard: guard },
        }
    }

    /// Locks `row` exclusively (for a write that reads it first), waiting without blocking a
    /// thread.
    pub async fn lock_row_async(&self, row: &[u8]) -> RowGuard {
        let guard = self.inner.row_locks.stripe(row).write_owned().await;
        RowGuard {
            _held: Held::Exclusive { _guard: guard },
        }
    }

    /// Locks `row` shared, for a write that does not read it: other such writes of the row go
    /// on beside it, exclusive holders wait for it and it for them.
    pub async fn lock_row_shared_async(&self, row: &[u8]) -> RowGuard {
        let guard = self.inner.row_locks.stripe(row).read_owned().await;
        RowGuard {
            _held: Held::Shared { _guard: guard },
        }
    }
}

/// Runs `future` to its end on this thread, parking the thread while it waits (Tokio's
/// read-write lock has no blocking owned acquire).
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

/// A write that has taken its sequence numbers and holds its row lock until it is visible
/// (see the module doc): dropped before that, it finishes in a task of its own, still holding
/// the lock.
struct Unfinished {
    inner: Arc<Inner>,
    stage: Stage,
    lock: Option<RowGuard>,
    /// Where the task of its own runs.
    runtime: tokio::runtime::Handle,
    /// Already the task of its own: dropped unfinished (its runtime shut down), it gives up.
    detached: bool,
}

/// How far an [`Unfinished`] write got.
enum Stage {
    Prepared(Prepared),
    Enqueued(Prepared, Enqueued),
    /// Logged and inserted, its last number; waiting to be visible.
    Inserted(Seq),
    Done,
}

impl Unfinished {
    /// Logs the write, waits for its group commit, inserts it (`Inner::complete`) and waits
    /// until it is visible; returns its last sequence number. The stage moves only between
    /// awaits, so a drop at any await leaves it exact.
    async fn finish(&mut self) -> Result<Seq, EngineError> {
        let log = &self.inner.engine.log;
        if let Stage::Prepared(p) = &self.stage {
            let enqueued = log
                .enqueue(self.inner.id, p.first, p.count as u32, &p.payload)
                .await;
            let Stage::Prepared(p) = std::mem::replace(&mut self.stage, Stage::Done) else {
                unreachable!("only this moves a prepared write on");
            };
            match enqueued {
                Ok(e) => self.stage = Stage::Enqueued(p, e),
                Err(e) => return self.inner.complete(p, Err(e)),
            }
        }
        if let Stage::Enqueued(_, e) = &self.stage {
            let logged = log.wait_durable(e).await.map(|_| ());
            let Stage::Enqueued(p, _) = std::mem::replace(&mut self.stage, Stage::Done) else {
                unreachable!("only this moves an enqueued write on");
            };
            self.stage = Stage::Inserted(self.inner.complete(p, logged)?);
        }
        let Stage::Inserted(last) = self.stage else {
            return Err(EngineError::Task("a write was finished twice".into()));
        };
        self.inner.seqs.wait_visible(last).await;
        self.stage = Stage::Done;
        Ok(last)
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if matches!(self.stage, Stage::Done) {
            return;
        }
        if self.detached {
            tracing::error!(tablet = %self.inner.id, "a write was dropped unfinished at shutdown");
            return;
        }
        let mut rest = Unfinished {
            inner: Arc::clone(&self.inner),
            stage: std::mem::replace(&mut self.stage, Stage::Done),
            lock: self.lock.take(),
            runtime: self.runtime.clone(),
            detached: true,
        };
        self.runtime.spawn(async move {
            let _ = rest.finish().await;
        });
    }
}

impl RowLocks {
    fn stripe(&self, row: &[u8]) -> Arc<AsyncRwLock<()>> {
        let stripe = (self.hasher.hash_one(row) as usize) % ROW_LOCK_STRIPES;
        Arc::clone(&self.stripes[stripe])
    }
}

impl Inner {
    pub(crate) fn apply(&self, m: RowMutation) -> Result<Seq, EngineError> {
        self.check_mutation(&m)?;
        self.wait_for_room()?;
        let p = self.prepare(m)?;
        let logged = self
            .engine
            .log
            .append(self.id, p.first, p.count as u32, &p.payload);
        let last = self.complete(p, logged.map(|_| ()))?;
        self.seqs.wait_visible_blocking(last);
        Ok(last)
    }

    /// The async write path, holding `lock` (if any) until the write is visible; once the
    /// write has taken its numbers, dropping this future moves the rest to a task of its own.
    async fn apply_async(
        self: Arc<Self>,
        m: RowMutation,
        lock: Option<RowGuard>,
    ) -> Result<Seq, EngineError> {
        self.check_mutation(&m)?;
        if self.must_wait_for_room() {
            let inner = Arc::clone(&self);
            tokio::task::spawn_blocking(move || inner.wait_for_room())
                .await
                .map_err(|e| EngineError::Task(format!("a write stall task failed: {e}")))??;
        }
        let prepared = self.prepare(m)?;
        let mut rest = Unfinished {
            inner: self,
            stage: Stage::Prepared(prepared),
            lock,
            runtime: tokio::runtime::Handle::current(),
            detached: false,
        };
        rest.finish().await
    }

    /// Checks that `m` may be applied here: open, valid, in range, known families.
    fn check_mutation(&self, m: &RowMutation) -> Result<(), EngineError> {
        self.check_open()?;
        m.validate()?;
        if !self.range.contains(&m.row) {
            return Err(EngineError::OutOfRange {
                row: m.row.escape_ascii().to_string(),
            });
        }
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
        Ok(())
    }

    /// Takes `m`'s sequence numbers (and server timestamp) and encodes its record. From here
    /// on, `complete` must be called, whatever happens.
    fn prepare(&self, mut m: RowMutation) -> Result<Prepared, EngineError> {
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
        Ok(Prepared {
            first,
            count,
            payload,
            mutation: m,
        })
    }

    /// After the log write: inserts the entries and finishes their numbers (they are visible
    /// once every earlier number is too: the caller waits for that before acknowledging), or,
    /// if the log failed, retires the numbers and fails the tablet.
    fn complete(
        &self,
        p: Prepared,
        logged: Result<(), crate::engine::commitlog::CommitLogError>,
    ) -> Result<Seq, EngineError> {
        if let Err(e) = logged {
            self.seqs.finish(p.first);
            self.fail(format!("commit log append failed: {e}"));
            return Err(e.into());
        }
        let entries: Vec<Entry> = p.mutation.into_entries(p.first);
        let full = {
            let state = self.state.read();
            state.active.insert(entries);
            state.active.approximate_bytes() >= self.engine.opts.memtable_bytes
        };
        self.seqs.finish(p.first);
        if full {
            self.freeze(false);
        }
        Ok(p.first + p.count - 1)
    }

    /// A server timestamp: the wall clock in microseconds, made strictly increasing per tablet
    /// so two writes never collide. On a millisecond table (Cloud Bigtable's granularity) it
    /// is the clock's millisecond, never below the last one handed out rounded up to a
    /// millisecond: equal timestamps are allowed there, and the later write wins by its
    /// sequence number.
    fn next_server_timestamp(&self) -> i64 {
        let now = self.engine.clock.now().micros();
        let step = self.schema.read().granularity.step_micros();
        let mut prev = self.last_timestamp.load(Ordering::Acquire);
        loop {
            let next = if step == 1 {
                now.max(prev + 1)
            } else {
                let floor = now - now.rem_euclid(step);
                let ceil_prev = prev.saturating_add(step - 1);
                floor.max(ceil_prev - ceil_prev.rem_euclid(step))
            };
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

    /// Whether a writer must wait for the flusher first (see `wait_for_room`).
    fn must_wait_for_room(&self) -> bool {
        self.state.read().frozen.len() >= self.engine.opts.max_frozen_memtables.max(1)
    }

    /// Waits while too many frozen memtables await their flush (bounded memory).
    fn wait_for_room(&self) -> Result<(), EngineError> {
        let max = self.engine.opts.max_frozen_memtables.max(1);
        if !self.must_wait_for_room() {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::Poll;

    use bytes::Bytes;

    use crate::engine::tablet::scratch::{PATIENCE, scratch_tablet, wait_until};
    use crate::engine::{CellFilter, Mutation, RowMutation, Schema};

    fn set(row: &'static [u8]) -> RowMutation {
        RowMutation {
            row: Bytes::from_static(row),
            mutations: vec![Mutation::SetCell {
                family: Bytes::from_static(b"cf"),
                qualifier: Bytes::from_static(b"q"),
                timestamp: 1,
                value: Bytes::from_static(b"v"),
            }],
        }
    }

    /// One poll of `future`: whether it is ready now.
    async fn poll_once<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
        let mut future = future;
        std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await
    }

    /// Holds an earlier write's number unfinished (as a write's is while its batch is synced,
    /// possibly after a later write's batch), runs `write` (which applies `set(b"a")`) beside
    /// it, and checks that the write does not return while the earlier number is unfinished,
    /// though its own numbers are, and is visible once it returns.
    fn check_acknowledged_after_visible(
        write: impl FnOnce(Arc<super::Tablet>) -> std::thread::JoinHandle<()>,
    ) {
        let (_dir, tablet) = scratch_tablet(Schema::with_families(["cf"]));
        let tablet = Arc::new(tablet);
        let earlier = tablet.inner.seqs.begin(1);
        let writer = write(tablet.clone());
        wait_until("the write's own numbers are finished", || {
            tablet.inner.seqs.is_finished(earlier + 1)
        });
        assert!(
            !writer.is_finished(),
            "the write returned while an earlier write was in flight"
        );
        tablet.inner.seqs.finish(earlier);
        writer.join().unwrap();
        let row = tablet.read_row(b"a", &CellFilter::default()).unwrap();
        assert!(
            row.is_some(),
            "an acknowledged write was not visible to the next read"
        );
    }

    #[test]
    fn a_write_is_visible_once_apply_returns_even_with_an_earlier_write_in_flight() {
        check_acknowledged_after_visible(|tablet| {
            std::thread::spawn(move || {
                tablet.apply(set(b"a")).unwrap();
            })
        });
    }

    /// A thread that runs `write` to its end on a runtime of its own.
    fn on_a_runtime<F>(write: F) -> std::thread::JoinHandle<()>
    where
        F: Future<Output = Result<super::Seq, super::EngineError>> + Send + 'static,
    {
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(write).unwrap();
        })
    }

    #[test]
    fn a_write_is_visible_once_apply_async_returns_even_with_an_earlier_write_in_flight() {
        check_acknowledged_after_visible(|tablet| {
            on_a_runtime(async move { tablet.apply_async(set(b"a")).await })
        });
    }

    #[test]
    fn a_write_is_visible_once_apply_holding_returns_even_with_an_earlier_write_in_flight() {
        check_acknowledged_after_visible(|tablet| {
            on_a_runtime(async move {
                let lock = tablet.lock_row_shared_async(b"a").await;
                tablet.apply_holding(set(b"a"), lock).await
            })
        });
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_apply_holding_still_finishes_and_holds_the_row_lock_until_visible() {
        let (_dir, tablet) = scratch_tablet(Schema::with_families(["cf"]));
        let tablet = Arc::new(tablet);
        // An earlier write in flight keeps this one from becoming visible.
        let earlier = tablet.inner.seqs.begin(1);
        let lock = tablet.lock_row_shared_async(b"a").await;
        let mut write = Box::pin(tablet.apply_holding(set(b"a"), lock));
        assert!(poll_once(write.as_mut()).await.is_pending());
        drop(write);
        let own = earlier + 1;
        let inner = tablet.inner.clone();
        tokio::task::spawn_blocking(move || {
            wait_until("the dropped write's numbers are finished", || {
                inner.seqs.is_finished(own)
            })
        })
        .await
        .unwrap();
        let mut exclusive = std::pin::pin!(tablet.lock_row_async(b"a"));
        assert!(
            poll_once(exclusive.as_mut()).await.is_pending(),
            "the row lock was let go before the dropped write was visible"
        );
        tablet.inner.seqs.finish(earlier);
        let guard = tokio::time::timeout(PATIENCE, exclusive)
            .await
            .expect("the row lock was never let go");
        drop(guard);
        let row = tablet.read_row(b"a", &CellFilter::default()).unwrap();
        assert!(row.is_some(), "the dropped write was lost");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn plain_writes_share_a_row_lock_and_readers_of_the_row_wait_for_them() {
        let (_dir, tablet) = scratch_tablet(Schema::with_families(["cf"]));
        let tablet = Arc::new(tablet);
        let first = tablet.lock_row_shared_async(b"a").await;
        let second = tokio::time::timeout(PATIENCE, tablet.lock_row_shared_async(b"a"))
            .await
            .expect("a second plain write of the row waited for the first");
        let mut exclusive = std::pin::pin!(tablet.lock_row_async(b"a"));
        assert!(
            poll_once(exclusive.as_mut()).await.is_pending(),
            "an exclusive holder went in beside shared ones"
        );
        drop(first);
        assert!(
            poll_once(exclusive.as_mut()).await.is_pending(),
            "an exclusive holder went in beside a shared one"
        );
        drop(second);
        let guard = tokio::time::timeout(PATIENCE, exclusive)
            .await
            .expect("the exclusive holder was not let in");
        drop(guard);

        // The blocking exclusive lock (bulk row deletion) keeps shared holders out too.
        let (held, holding) = tokio::sync::oneshot::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let blocking = std::thread::spawn({
            let tablet = tablet.clone();
            move || {
                let _guard = tablet.lock_row(b"a");
                held.send(()).unwrap();
                released.recv().unwrap();
            }
        });
        tokio::time::timeout(PATIENCE, holding)
            .await
            .expect("lock_row was not let in")
            .unwrap();
        let mut shared = std::pin::pin!(tablet.lock_row_shared_async(b"a"));
        assert!(
            poll_once(shared.as_mut()).await.is_pending(),
            "a shared holder went in beside lock_row"
        );
        release.send(()).unwrap();
        tokio::time::timeout(PATIENCE, shared)
            .await
            .expect("the shared holder was not let in after lock_row");
        tokio::task::spawn_blocking(move || blocking.join().unwrap())
            .await
            .unwrap();
    }
}
