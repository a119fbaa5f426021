//! The lock service's durable Raft storage: openraft's storage conformance suite, and reopen,
//! torn-tail, corruption and snapshot round-trip tests against real directories.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::io::Cursor;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite, log_id};
use openraft::{
    BasicNode, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, Membership, RaftLogReader,
    RaftSnapshotBuilder, StorageError, StorageIOError, StoredMembership, Vote,
};
use tabula_lockservice::state::{Op, Request, Response};
use tabula_lockservice::store::{
    LogStore, StateMachineStore, StorageOptions, StoreError, open_storage, open_storage_with,
};
use tabula_lockservice::types::{NodeId, TypeConfig};
use tempfile::TempDir;

/// Tiny segments, so that rolling and whole-segment purges happen in every test.
fn small_segments() -> StorageOptions {
    StorageOptions {
        segment_max_bytes: 200,
        ..StorageOptions::default()
    }
}

struct TempDirBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for TempDirBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = tempfile::tempdir().unwrap();
        let (log, sm) = open_storage_with(dir.path(), small_segments())
            .await
            .map_err(|e| StorageIOError::new(ErrorSubject::Store, ErrorVerb::Read, &e))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(TempDirBuilder).unwrap();
}

// ---- helpers -------------------------------------------------------------------------------

fn blank(term: u64, index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(term, 1, index),
        payload: EntryPayload::Blank,
    }
}

fn normal(term: u64, index: u64, ttl_ms: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(term, 1, index),
        payload: EntryPayload::Normal(Request {
            client: None,
            op: Op::OpenSession { ttl_ms },
        }),
    }
}

fn membership(term: u64, index: u64, voters: &[NodeId]) -> Entry<TypeConfig> {
    let voters: BTreeSet<NodeId> = voters.iter().copied().collect();
    let nodes: BTreeMap<NodeId, BasicNode> = voters
        .iter()
        .map(|id| (*id, BasicNode::new(format!("127.0.0.1:{}", 7000 + id))))
        .collect();
    Entry {
        log_id: log_id(term, 1, index),
        payload: EntryPayload::Membership(Membership::new(vec![voters], nodes)),
    }
}

/// Appends and waits for the durability callback.
async fn append(log: &mut LogStore, entries: Vec<Entry<TypeConfig>>) {
    log.blocking_append(entries).await.unwrap();
}

async fn all_ids(log: &mut LogStore) -> Vec<LogId<NodeId>> {
    log.try_get_log_entries(..)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.log_id)
        .collect()
}

async fn reopen(dir: &Path, log: LogStore, sm: StateMachineStore) -> (LogStore, StateMachineStore) {
    log.close().await.unwrap();
    drop(sm);
    open_storage_with(dir, small_segments()).await.unwrap()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<PathBuf> = fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|d| d.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    segs
}

fn flip_byte(path: &Path, offset: u64) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, offset).unwrap();
    byte[0] ^= 0x20;
    file.write_all_at(&byte, offset).unwrap();
}

fn is_corrupt(result: Result<(LogStore, StateMachineStore), StoreError>) -> bool {
    matches!(result, Err(StoreError::Corrupt { .. }))
}

// ---- log store -----------------------------------------------------------------------------

#[tokio::test]
async fn reopen_restores_entries_vote_committed_and_purged() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, sm) = open_storage_with(dir.path(), small_segments())
        .await
        .unwrap();
    append(&mut log, vec![membership(1, 0, &[1, 2, 3])]).await;
    for i in 1..=40 {
        append(&mut log, vec![normal(1, i, 1000 + i)]).await;
    }
    assert!(segments(dir.path()).len() > 3, "tiny segments roll");
    log.save_vote(&Vote::new_committed(1, 1)).await.unwrap();
    log.save_committed(Some(log_id(1, 1, 30))).await.unwrap();
    log.purge(log_id(1, 1, 12)).await.unwrap();
    let before = all_ids(&mut log).await;
    assert_eq!(before.first().map(|l| l.index), Some(13));
    assert_eq!(before.len(), 28);

    let (mut log, sm) = reopen(dir.path(), log, sm).await;
    assert_eq!(all_ids(&mut log).await, before);
    assert_eq!(
        log.read_vote().await.unwrap(),
        Some(Vote::new_committed(1, 1))
    );
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 1, 30)));
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 12)));
    assert_eq!(state.last_log_id, Some(log_id(1, 1, 40)));
    // Entries read back whole.
    let entries = log.try_get_log_entries(20..22).await.unwrap();
    assert_eq!(entries.len(), 2);
    assert!(matches!(
        &entries[0].payload,
        EntryPayload::Normal(Request {
            op: Op::OpenSession { ttl_ms: 1020 },
            ..
        })
    ));
    // The log goes on where it stopped.
    append(&mut log, vec![blank(2, 41)]).await;
    assert_eq!(
        log.get_log_state().await.unwrap().last_log_id,
        Some(log_id(2, 1, 41))
    );
    log.close().await.unwrap();
    drop(sm);
}

#[tokio::test]
async fn truncate_is_durable_and_the_log_continues_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, sm) = open_storage_with(dir.path(), small_segments())
        .await
        .unwrap();
    for i in 0..30 {
        append(&mut log, vec![normal(1, i, i)]).await;
    }
    log.save_committed(Some(log_id(1, 1, 5))).await.unwrap();
    let segs_before = segments(dir.path()).len();
    log.truncate(log_id(1, 1, 8)).await.unwrap();
    assert!(
        segments(dir.path()).len() < segs_before,
        "later segments are deleted"
    );
    assert_eq!(
        log.get_log_state().await.unwrap().last_log_id,
        Some(log_id(1, 1, 7))
    );
    append(&mut log, vec![blank(2, 8), blank(2, 9)]).await;

    let (mut log, sm) = reopen(dir.path(), log, sm).await;
    let ids = all_ids(&mut log).await;
    assert_eq!(ids.len(), 10);
    assert_eq!(ids[7], log_id(1, 1, 7));
    assert_eq!(ids[8], log_id(2, 1, 8));
    assert_eq!(ids[9], log_id(2, 1, 9));
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 1, 5)));

    // Truncating everything, then reopening, gives an empty log.
    log.truncate(log_id(1, 1, 0)).await.unwrap();
    let (mut log, sm) = reopen(dir.path(), log, sm).await;
    assert!(all_ids(&mut log).await.is_empty());
    assert_eq!(log.get_log_state().await.unwrap().last_log_id, None);
    log.close().await.unwrap();
    drop(sm);
}

#[tokio::test]
async fn purge_frees_whole_segments_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, sm) = open_storage_with(dir.path(), small_segments())
        .await
        .unwrap();
    for i in 0..60 {
        append(&mut log, vec![normal(1, i, i)]).await;
    }
    let before = segments(dir.path()).len();
    log.purge(log_id(1, 1, 45)).await.unwrap();
    let after = segments(dir.path()).len();
    assert!(after < before, "{after} segments left of {before}");
    // Purging past the end empties the log; the next entry follows the purge point.
    log.purge(log_id(1, 1, 70)).await.unwrap();
    assert!(all_ids(&mut log).await.is_empty());
    let (mut log, sm) = reopen(dir.path(), log, sm).await;
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 70)));
    assert_eq!(state.last_log_id, Some(log_id(1, 1, 70)));
    append(&mut log, vec![blank(2, 71)]).await;
    let (mut log, sm) = reopen(dir.path(), log, sm).await;
    assert_eq!(all_ids(&mut log).await, vec![log_id(2, 1, 71)]);
    log.close().await.unwrap();
    drop(sm);
}

#[tokio::test]
async fn a_hole_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, sm) = open_storage(dir.path()).await.unwrap();
    append(&mut log, vec![blank(1, 0), blank(1, 1)]).await;
    assert!(log.blocking_append(vec![blank(1, 3)]).await.is_err());
    drop(log);
    drop(sm);
}

#[tokio::test]
async fn a_second_store_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (log, sm) = open_storage(dir.path()).await.unwrap();
    assert!(matches!(
        open_storage(dir.path()).await,
        Err(StoreError::Locked { .. })
    ));
    drop(log);
    drop(sm);
    let (log, sm) = open_storage(dir.path()).await.unwrap();
    drop(log);
    drop(sm);
}

#[tokio::test]
async fn torn_tail_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, sm) = open_storage(dir.path()).await.unwrap();
    for i in 0..10 {
        append(&mut log, vec![normal(1, i, i)]).await;
    }
    log.close().await.unwrap();
    drop(sm);
    let seg = segments(dir.path()).pop().unwrap();
    let len = fs::metadata(&seg).unwrap().len();
    // Cut the last entry's frame in half, then add garbage: a crash mid-write.
    let file = OpenOptions::new().write(true).open(&seg).unwrap();
    file.set_len(len - 5).unwrap();
    file.write_all_at(&[0xEE; 7], len - 5).unwrap();
    drop(file);

    let (mut log, sm) = open_storage(dir.path()).await.unwrap();
    let ids = all_ids(&mut log).await;
    assert_eq!(ids.len(), 9);
    assert_eq!(ids.last(), Some(&log_id(1, 1, 8)));
    // The log accepts the lost entry again and keeps it across a reopen.
    append(&mut log, vec![blank(2, 9)]).await;
    log.close().await.unwrap();
    drop(sm);
    let (mut log, _sm) = open_storage(dir.path()).await.unwrap();
    assert_eq!(all_ids(&mut log).await.last(), Some(&log_id(2, 1, 9)));
}

#[tokio::test]
async fn a_bit_flip_mid_log_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, sm) = open_storage_with(dir.path(), small_segments())
        .await
        .unwrap();
    for i in 0..20 {
        append(&mut log, vec![normal(1, i, i)]).await;
    }
    log.close().await.unwrap();
    drop(sm);
    let segs = segments(dir.path());
    assert!(segs.len() >= 3);

    // In an older segment.
    flip_byte(&segs[1], 40);
    assert!(is_corrupt(
        open_storage_with(dir.path(), small_segments()).await
    ));
    flip_byte(&segs[1], 40);

    // In the last segment, before a later write: not a torn tail either.
    let last = segs.last().unwrap();
    flip_byte(last, 30);
    assert!(is_corrupt(
        open_storage_with(dir.path(), small_segments()).await
    ));
    flip_byte(last, 30);

    // Undamaged again: opens.
    let (mut log, _sm) = open_storage_with(dir.path(), small_segments())
        .await
        .unwrap();
    assert_eq!(all_ids(&mut log).await.len(), 20);
}

#[tokio::test]
async fn a_damaged_vote_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, sm) = open_storage(dir.path()).await.unwrap();
    log.save_vote(&Vote::new(3, 2)).await.unwrap();
    log.close().await.unwrap();
    drop(sm);
    flip_byte(&dir.path().join("log").join("vote"), 17);
    assert!(is_corrupt(open_storage(dir.path()).await));
}

// ---- state machine -------------------------------------------------------------------------

#[tokio::test]
async fn snapshot_build_install_and_reopen_round_trip() {
    let leader_dir = tempfile::tempdir().unwrap();
    let (leader_log, mut leader) = open_storage(leader_dir.path()).await.unwrap();
    let handle = leader.state();
    let mut applied = handle.subscribe();
    let responses = leader
        .apply(vec![
            membership(1, 0, &[1, 2, 3]),
            blank(1, 1),
            normal(1, 2, 5_000),
            normal(1, 3, 6_000),
        ])
        .await
        .unwrap();
    assert_eq!(responses.len(), 4);
    assert!(
        matches!(responses[2], Response::SessionOpened { .. }),
        "{responses:?}"
    );
    assert!(applied.has_changed().unwrap());
    assert_eq!(*applied.borrow_and_update(), Some(log_id(1, 1, 3)));
    assert!(handle.wait_applied(3).await);
    let sessions_before = handle.read(|s| s.sessions().count());
    assert_eq!(sessions_before, 2);

    let snapshot = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_eq!(snapshot.meta.last_log_id, Some(log_id(1, 1, 3)));
    let current = leader.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, snapshot.meta);
    assert_eq!(current.snapshot.get_ref(), snapshot.snapshot.get_ref());

    // Install on a follower.
    let follower_dir = tempfile::tempdir().unwrap();
    let (follower_log, mut follower) = open_storage(follower_dir.path()).await.unwrap();
    let mut receiving = follower.begin_receiving_snapshot().await.unwrap();
    *receiving = Cursor::new(snapshot.snapshot.into_inner());
    follower
        .install_snapshot(&snapshot.meta, receiving)
        .await
        .unwrap();
    let (applied_id, members) = follower.applied_state().await.unwrap();
    assert_eq!(applied_id, Some(log_id(1, 1, 3)));
    assert_eq!(members.log_id(), &Some(log_id(1, 1, 0)));
    assert_eq!(follower.state().read(|s| s.sessions().count()), 2);

    // Both restart from their snapshot files.
    for (dir, log, sm) in [
        (leader_dir.path(), leader_log, leader),
        (follower_dir.path(), follower_log, follower),
    ] {
        let (_log, mut sm) = reopen(dir, log, sm).await;
        let (applied_id, members) = sm.applied_state().await.unwrap();
        assert_eq!(applied_id, Some(log_id(1, 1, 3)));
        assert_eq!(
            members,
            StoredMembership::new(
                Some(log_id(1, 1, 0)),
                Membership::new(
                    vec![[1, 2, 3].into_iter().collect()],
                    (1..=3u64)
                        .map(|id| (id, BasicNode::new(format!("127.0.0.1:{}", 7000 + id))))
                        .collect::<BTreeMap<_, _>>()
                )
            )
        );
        assert_eq!(sm.state().read(|s| s.sessions().count()), 2);
        assert_eq!(sm.state().last_applied(), Some(log_id(1, 1, 3)));
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta.last_log_id, Some(log_id(1, 1, 3)));
        // Applying goes on from there.
        let more = sm.apply(vec![normal(1, 4, 7_000)]).await.unwrap();
        assert!(
            matches!(more[0], Response::SessionOpened { session: 4 }),
            "{more:?}"
        );
    }
}

#[tokio::test]
async fn a_snapshot_that_does_not_restore_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm) = open_storage(dir.path()).await.unwrap();
    sm.apply(vec![blank(1, 0)]).await.unwrap();
    let meta = openraft::SnapshotMeta {
        last_log_id: Some(log_id(1, 1, 9)),
        last_membership: StoredMembership::default(),
        snapshot_id: "garbage".into(),
    };
    let garbage = Box::new(Cursor::new(vec![0xFF; 64]));
    assert!(sm.install_snapshot(&meta, garbage).await.is_err());
    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(1, 1, 0)));
    assert!(sm.get_current_snapshot().await.unwrap().is_none());
}
