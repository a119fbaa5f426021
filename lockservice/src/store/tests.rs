//! Group commit of the log, with the writer thread held at its gate (`test_hooks`): appends
//! are readable before they are durable, queued appends share one `fdatasync`, truncations of
//! pending entries, a crash after a batch, and a failed write poisoning the writer.
#![allow(clippy::unwrap_used)]

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use openraft::storage::RaftLogStorage;
use openraft::testing::log_id;
use openraft::{Entry, EntryPayload, LogId, RaftLogReader, Vote};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::error::StoreError;
use super::log_store::{Done, LogStore};
use super::open::{StorageOptions, open_storage_with};
use super::state_machine::StateMachineStore;
use crate::types::{NodeId, TypeConfig};

fn blank(index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(1, 1, index),
        payload: EntryPayload::Blank,
    }
}

fn blanks(range: std::ops::Range<u64>) -> Vec<Entry<TypeConfig>> {
    range.map(blank).collect()
}

async fn open(dir: &Path) -> (LogStore, StateMachineStore) {
    open_storage_with(dir, StorageOptions::default())
        .await
        .unwrap()
}

/// Submits an append; the receiver gets its outcome, and `order` its tag when it is answered.
async fn submit(
    log: &mut LogStore,
    entries: Vec<Entry<TypeConfig>>,
    tag: usize,
    order: &Arc<Mutex<Vec<usize>>>,
) -> Result<oneshot::Receiver<Result<(), StoreError>>, StoreError> {
    let (tx, rx) = oneshot::channel();
    let order = Arc::clone(order);
    let done: Done = Box::new(move |result| {
        order.lock().push(tag);
        let _ = tx.send(result);
    });
    log.submit_append(entries, done).await.map(|()| rx)
}

/// Appends and waits until the entries are durable.
async fn append_durably(log: &mut LogStore, entries: Vec<Entry<TypeConfig>>) {
    let order = Arc::new(Mutex::new(Vec::new()));
    let rx = submit(log, entries, 0, &order).await.unwrap();
    rx.await.unwrap().unwrap();
}

async fn ids(log: &mut LogStore) -> Vec<LogId<NodeId>> {
    log.try_get_log_entries(..)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.log_id)
        .collect()
}

fn indexes(range: std::ops::Range<u64>) -> Vec<LogId<NodeId>> {
    range.map(|i| log_id(1, 1, i)).collect()
}

fn last_segment(dir: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|d| d.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    segs.pop().unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for dirent in fs::read_dir(from).unwrap() {
        let path = dirent.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            fs::copy(&path, &target).unwrap();
        }
    }
}

#[tokio::test]
async fn an_append_is_readable_before_it_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _sm) = open(dir.path()).await;
    let shared = Arc::clone(log.shared());
    let order = Arc::new(Mutex::new(Vec::new()));
    let syncs = log.sync_count();

    shared.hooks.gate.close();
    let mut durable = submit(&mut log, blanks(0..3), 0, &order).await.unwrap();
    // Returned with the writer held: readable, counted in the log state, not durable.
    assert_eq!(ids(&mut log).await, indexes(0..3));
    assert_eq!(log.try_get_log_entries(1..2).await.unwrap(), vec![blank(1)]);
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(log_id(1, 1, 2)));
    assert!(matches!(
        durable.try_recv(),
        Err(oneshot::error::TryRecvError::Empty)
    ));
    assert_eq!(log.sync_count(), syncs);
    assert_eq!(shared.index.read().pending.len(), 3);
    // The next append must follow the pending ones.
    assert!(matches!(
        submit(&mut log, vec![blank(4)], 1, &order).await,
        Err(StoreError::NotContiguous {
            expected: 3,
            got: 4
        })
    ));

    shared.hooks.gate.open();
    durable.await.unwrap().unwrap();
    assert_eq!(log.sync_count(), syncs + 1);
    assert!(shared.index.read().pending.is_empty());
    assert_eq!(shared.index.read().entries.len(), 3);
    assert_eq!(ids(&mut log).await, indexes(0..3));
}

#[tokio::test]
async fn queued_appends_share_one_fdatasync() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, sm) = open(dir.path()).await;
    let shared = Arc::clone(log.shared());
    append_durably(&mut log, blanks(0..2)).await;
    let syncs = log.sync_count();

    let order = Arc::new(Mutex::new(Vec::new()));
    shared.hooks.gate.close();
    let mut answers = Vec::new();
    for i in 0..10u64 {
        let first = 2 + 3 * i;
        answers.push(
            submit(&mut log, blanks(first..first + 3), i as usize, &order)
                .await
                .unwrap(),
        );
    }
    assert_eq!(ids(&mut log).await, indexes(0..32));
    shared.hooks.gate.open();
    for answer in answers {
        answer.await.unwrap().unwrap();
    }
    assert_eq!(log.sync_count(), syncs + 1, "one fdatasync for ten appends");
    assert_eq!(
        *order.lock(),
        (0..10).collect::<Vec<_>>(),
        "answered in order"
    );

    log.close().await.unwrap();
    drop(sm);
    let (mut log, _sm) = open(dir.path()).await;
    assert_eq!(ids(&mut log).await, indexes(0..32));
}

#[tokio::test]
async fn a_batch_stops_at_a_vote_and_keeps_the_queue_order() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _sm) = open(dir.path()).await;
    let shared = Arc::clone(log.shared());
    let syncs = log.sync_count();
    let order = Arc::new(Mutex::new(Vec::new()));

    shared.hooks.gate.close();
    let first = submit(&mut log, blanks(0..2), 0, &order).await.unwrap();
    let vote = Vote::new(2, 1);
    // The vote is queued behind the append; the gate opens once it is queued.
    let (saved, ()) = tokio::join!(log.save_vote(&vote), async {
        shared.hooks.gate.open();
    });
    saved.unwrap();
    // save_vote returned after the vote was durable, and so after the append before it.
    assert!(matches!(first.await, Ok(Ok(()))));
    assert_eq!(log.read_vote().await.unwrap(), Some(vote));
    assert_eq!(log.sync_count(), syncs + 1);
}

#[tokio::test]
async fn a_truncate_of_pending_entries_cuts_them_after_they_are_durable() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, sm) = open(dir.path()).await;
    let shared = Arc::clone(log.shared());
    let order = Arc::new(Mutex::new(Vec::new()));

    shared.hooks.gate.close();
    let pending = submit(&mut log, blanks(0..6), 0, &order).await.unwrap();
    assert_eq!(ids(&mut log).await, indexes(0..6));
    // The truncate is queued behind the append; the gate opens once it is queued.
    let (truncated, ()) = tokio::join!(log.truncate(log_id(1, 1, 3)), async {
        shared.hooks.gate.open();
    });
    truncated.unwrap();
    // The append became durable (and said so) before the cut.
    assert!(matches!(pending.await, Ok(Ok(()))));
    assert_eq!(ids(&mut log).await, indexes(0..3));
    assert!(shared.index.read().pending.is_empty());
    assert_eq!(
        log.get_log_state().await.unwrap().last_log_id,
        Some(log_id(1, 1, 2))
    );
    append_durably(&mut log, blanks(3..4)).await;

    log.close().await.unwrap();
    drop(sm);
    let (mut log, _sm) = open(dir.path()).await;
    assert_eq!(ids(&mut log).await, indexes(0..4));
}

#[tokio::test]
async fn a_dropped_truncate_makes_a_later_append_fail_instead_of_leaving_a_hole() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, sm) = open(dir.path()).await;
    let shared = Arc::clone(log.shared());
    let order = Arc::new(Mutex::new(Vec::new()));

    shared.hooks.gate.close();
    let first = submit(&mut log, blanks(0..6), 0, &order).await.unwrap();
    // Queued, then abandoned: openraft never does this, a careless caller could.
    let abandoned =
        tokio::time::timeout(Duration::from_millis(20), log.truncate(log_id(1, 1, 3))).await;
    assert!(abandoned.is_err());
    // Validated against the log before the cut, which has not happened yet.
    let second = submit(&mut log, vec![blank(6)], 1, &order).await.unwrap();
    shared.hooks.gate.open();
    assert!(matches!(first.await, Ok(Ok(()))));
    assert!(matches!(
        second.await,
        Ok(Err(StoreError::NotContiguous { .. }))
    ));
    assert_eq!(ids(&mut log).await, indexes(0..3));

    log.close().await.unwrap();
    drop(sm);
    let (mut log, _sm) = open(dir.path()).await;
    assert_eq!(ids(&mut log).await, indexes(0..3));
}

#[tokio::test]
async fn a_crash_after_a_batch_keeps_it_and_a_torn_batch_keeps_a_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _sm) = open(dir.path()).await;
    let shared = Arc::clone(log.shared());
    append_durably(&mut log, blanks(0..3)).await;
    let before_batch = fs::metadata(last_segment(dir.path())).unwrap().len();

    let order = Arc::new(Mutex::new(Vec::new()));
    shared.hooks.gate.close();
    let mut answers = Vec::new();
    for i in 3..8 {
        answers.push(submit(&mut log, vec![blank(i)], 0, &order).await.unwrap());
    }
    shared.hooks.gate.open();
    for answer in answers {
        answer.await.unwrap().unwrap();
    }
    let after_batch = fs::metadata(last_segment(dir.path())).unwrap().len();

    // The process dies with the store open: the batch is there.
    let crashed = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), crashed.path());
    {
        let (mut reopened, _sm) = open(crashed.path()).await;
        assert_eq!(ids(&mut reopened).await, indexes(0..8));
    }

    // The batch's write torn in its third frame: its first two entries survive, the rest of
    // the batch is cut off as a torn tail, and the log goes on from there.
    let torn = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), torn.path());
    let frame_len = (after_batch - before_batch) / 5;
    let file = OpenOptions::new()
        .write(true)
        .open(last_segment(torn.path()))
        .unwrap();
    file.set_len(before_batch + 2 * frame_len + frame_len / 2)
        .unwrap();
    drop(file);
    let (mut reopened, _sm) = open(torn.path()).await;
    assert_eq!(ids(&mut reopened).await, indexes(0..5));
    append_durably(&mut reopened, blanks(5..6)).await;
    assert_eq!(ids(&mut reopened).await, indexes(0..6));
}

#[tokio::test]
async fn a_failed_write_fails_the_batch_and_every_later_write() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, sm) = open(dir.path()).await;
    let shared = Arc::clone(log.shared());
    append_durably(&mut log, blanks(0..2)).await;

    let order = Arc::new(Mutex::new(Vec::new()));
    shared.hooks.gate.close();
    let first = submit(&mut log, blanks(2..4), 0, &order).await.unwrap();
    let second = submit(&mut log, blanks(4..5), 1, &order).await.unwrap();
    shared.hooks.fail_next_write.store(true, Ordering::SeqCst);
    shared.hooks.gate.open();
    assert!(matches!(first.await, Ok(Err(StoreError::Io { .. }))));
    assert!(matches!(second.await, Ok(Err(StoreError::Failed(_)))));
    assert_eq!(*order.lock(), vec![0, 1]);

    // The pending entries are gone; nothing is accepted any more.
    assert_eq!(ids(&mut log).await, indexes(0..2));
    assert_eq!(
        log.get_log_state().await.unwrap().last_log_id,
        Some(log_id(1, 1, 1))
    );
    assert!(matches!(
        submit(&mut log, blanks(2..3), 2, &order).await,
        Err(StoreError::Failed(_))
    ));
    assert!(log.save_vote(&Vote::new(1, 1)).await.is_err());
    assert!(log.truncate(log_id(1, 1, 1)).await.is_err());
    assert!(log.purge(log_id(1, 1, 0)).await.is_err());

    log.close().await.unwrap();
    drop(sm);
    let (mut log, _sm) = open(dir.path()).await;
    assert_eq!(ids(&mut log).await, indexes(0..2));
    assert_eq!(log.read_vote().await.unwrap(), None);
}
