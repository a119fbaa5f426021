//! The lock service's durable Raft storage: openraft's storage conformance suite, and reopen,
//! torn-tail, corruption and snapshot round-trip tests against real directories.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::io::Cursor;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite, log_id};
use openraft::{
    BasicNode, Config, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, Membership, Raft,
    RaftLogReader, RaftNetwork, RaftNetworkFactory, RaftSnapshotBuilder, ServerState,
    SnapshotPolicy, StorageError, StorageIOError, StoredMembership, Vote,
};
use tabula_lockservice::state::{Op, Request, Response};
use tabula_lockservice::store::{
    LogStore, StateHandle, StateMachineStore, StorageOptions, StoreError, open_storage,
    open_storage_with,
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

// ---- a real single-node Raft on this storage -----------------------------------------------

/// A network for a one-node cell: every peer is unreachable (none is ever asked).
struct NoPeers;

impl RaftNetworkFactory<TypeConfig> for NoPeers {
    type Network = NoPeers;

    async fn new_client(&mut self, _target: NodeId, _node: &BasicNode) -> NoPeers {
        NoPeers
    }
}

fn unreachable<E: std::error::Error>() -> RPCError<NodeId, BasicNode, E> {
    RPCError::Unreachable(Unreachable::new(&std::io::Error::other("one-node cell")))
}

impl RaftNetwork<TypeConfig> for NoPeers {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        Err(unreachable())
    }
}

const WAIT: Duration = Duration::from_secs(10);

async fn start_node(dir: &Path) -> (Raft<TypeConfig>, StateHandle) {
    // The previous incarnation's storage is released once its tasks have dropped it.
    let deadline = tokio::time::Instant::now() + WAIT;
    let (log, sm) = loop {
        match open_storage_with(dir, small_segments()).await {
            Ok(opened) => break opened,
            Err(StoreError::Locked { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("open: {e}"),
        }
    };
    let handle = sm.state();
    let config = Config {
        heartbeat_interval: 100,
        election_timeout_min: 300,
        election_timeout_max: 600,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(20),
        max_in_snapshot_log_to_keep: 0,
        ..Config::default()
    }
    .validate()
    .unwrap();
    let raft = Raft::new(1, Arc::new(config), NoPeers, log, sm)
        .await
        .unwrap();
    (raft, handle)
}

async fn open_session(raft: &Raft<TypeConfig>, ttl_ms: u64) -> u64 {
    let resp = raft
        .client_write(Request {
            client: None,
            op: Op::OpenSession { ttl_ms },
        })
        .await
        .unwrap();
    match resp.data {
        Response::SessionOpened { session } => session,
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_has_everything_it_had() {
    let dir = tempfile::tempdir().unwrap();
    let (raft, handle) = start_node(dir.path()).await;
    assert!(!raft.is_initialized().await.unwrap());
    raft.initialize(BTreeMap::from([(1, BasicNode::new("127.0.0.1:1"))]))
        .await
        .unwrap();
    raft.wait(Some(WAIT))
        .state(ServerState::Leader, "leader")
        .await
        .unwrap();
    let mut sessions = Vec::new();
    for i in 0..50 {
        sessions.push(open_session(&raft, 10_000 + i).await);
    }
    // The policy snapshots every 20 entries and purges everything below the snapshot.
    let metrics = raft
        .wait(Some(WAIT))
        .metrics(|m| m.purged.is_some_and(|p| p.index >= 30), "purged")
        .await
        .unwrap();
    let last_applied = metrics.last_applied.unwrap();
    assert!(metrics.snapshot.is_some());
    assert_eq!(handle.read(|s| s.sessions().count()), 50);
    raft.shutdown().await.unwrap();
    drop(raft);

    // Restart from the directory: no initialize, same state, still the leader of its cell.
    let (raft, handle) = start_node(dir.path()).await;
    assert!(raft.is_initialized().await.unwrap());
    raft.wait(Some(WAIT))
        .state(ServerState::Leader, "leader again")
        .await
        .unwrap();
    raft.wait(Some(WAIT))
        .applied_index_at_least(Some(last_applied.index), "replayed")
        .await
        .unwrap();
    let restored: Vec<u64> = handle.read(|s| s.sessions().map(|(id, _)| id).collect());
    assert_eq!(restored, sessions);
    let newer = open_session(&raft, 1).await;
    assert!(newer > last_applied.index);
    raft.shutdown().await.unwrap();
}

/// Format fixture: a segment and a vote file as this version writes them. Opening them must
/// keep working (a format change needs a new magic and a migration, not a silent reread).
const FIXTURE_SEGMENT: &str = "544c4b4c4f473031544c4b5218000000de1df720000000000000000001010100\
    0201010101010e3132372e302e302e313a37303031544c4b52080000009fdf89\
    360000000000000000010101010100008827544c4b52040000000b4092275200\
    0000000000000201010101";
const FIXTURE_VOTE: &str = "544c4b564f54453103000000702aec24010101";

fn unhex(hex: &str) -> Vec<u8> {
    let digits: Vec<u8> = hex.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

#[tokio::test]
async fn the_format_fixture_opens() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    fs::create_dir_all(&log_dir).unwrap();
    fs::write(
        log_dir.join("00000000000000000001.seg"),
        unhex(FIXTURE_SEGMENT),
    )
    .unwrap();
    fs::write(log_dir.join("vote"), unhex(FIXTURE_VOTE)).unwrap();

    let (mut log, _sm) = open_storage(dir.path()).await.unwrap();
    assert_eq!(
        log.read_vote().await.unwrap(),
        Some(Vote::new_committed(1, 1))
    );
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 1, 1)));
    let entries = log.try_get_log_entries(..).await.unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].log_id, log_id(1, 1, 0));
    assert_eq!(
        entries[0].payload,
        membership(1, 0, &[1]).payload,
        "membership entry"
    );
    assert_eq!(entries[1].log_id, log_id(1, 1, 1));
    assert!(matches!(
        &entries[1].payload,
        EntryPayload::Normal(Request {
            client: None,
            op: Op::OpenSession { ttl_ms: 5000 }
        })
    ));
}

// ---- model test: the log behaves like a map, across reopens --------------------------------

#[derive(Debug, Clone)]
enum LogOp {
    Append {
        count: u64,
        new_term: bool,
    },
    Truncate {
        back: u64,
    },
    Purge {
        forward: u64,
    },
    Commit,
    Reopen,
    /// The process dies: what the page cache holds survives, nothing is closed.
    Crash,
}

fn log_op() -> impl proptest::strategy::Strategy<Value = LogOp> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (1..6u64, proptest::bool::weighted(0.2))
            .prop_map(|(count, new_term)| LogOp::Append { count, new_term }),
        1 => (0..8u64).prop_map(|back| LogOp::Truncate { back }),
        1 => (0..8u64).prop_map(|forward| LogOp::Purge { forward }),
        1 => Just(LogOp::Commit),
        1 => Just(LogOp::Reopen),
        1 => Just(LogOp::Crash),
    ]
}

#[derive(Debug, Default)]
struct LogModel {
    entries: BTreeMap<u64, LogId<NodeId>>,
    purged: Option<LogId<NodeId>>,
    committed: Option<LogId<NodeId>>,
    term: u64,
}

impl LogModel {
    fn last(&self) -> Option<LogId<NodeId>> {
        self.entries.values().next_back().copied().or(self.purged)
    }
}

async fn check_against(log: &mut LogStore, model: &LogModel) {
    let ids = all_ids(log).await;
    let want: Vec<LogId<NodeId>> = model.entries.values().copied().collect();
    assert_eq!(ids, want);
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, model.purged);
    assert_eq!(state.last_log_id, model.last());
    assert_eq!(log.read_committed().await.unwrap(), model.committed);
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

async fn run_model(ops: Vec<LogOp>) {
    let mut dir = tempfile::tempdir().unwrap();
    let (mut log, mut sm) = open_storage_with(dir.path(), small_segments())
        .await
        .unwrap();
    let mut model = LogModel {
        term: 1,
        ..LogModel::default()
    };
    for op in ops {
        match op {
            LogOp::Append { count, new_term } => {
                if new_term {
                    model.term += 1;
                }
                let first = model.last().map_or(0, |l| l.index + 1);
                let batch: Vec<_> = (first..first + count)
                    .map(|i| blank(model.term, i))
                    .collect();
                for e in &batch {
                    model.entries.insert(e.log_id.index, e.log_id);
                }
                append(&mut log, batch).await;
            }
            LogOp::Truncate { back } => {
                let Some((&last, _)) = model.entries.last_key_value() else {
                    continue;
                };
                let first = *model.entries.keys().next().unwrap();
                // Never below the committed id (Raft does not truncate committed entries).
                let floor = model.committed.map_or(first, |c| (c.index + 1).max(first));
                let at = last.saturating_sub(back).max(floor);
                if at > last {
                    continue;
                }
                let cut = model.entries[&at];
                model.entries.split_off(&at);
                log.truncate(cut).await.unwrap();
            }
            LogOp::Purge { forward } => {
                let Some((&first, _)) = model.entries.first_key_value() else {
                    continue;
                };
                let last = *model.entries.keys().next_back().unwrap();
                let upto = model.entries[&(first + forward).min(last)];
                model.entries = model.entries.split_off(&(upto.index + 1));
                model.purged = Some(upto);
                // Raft purges only committed entries.
                if model.committed < Some(upto) {
                    model.committed = Some(upto);
                    log.save_committed(Some(upto)).await.unwrap();
                }
                log.purge(upto).await.unwrap();
            }
            LogOp::Commit => {
                if let Some(last) = model.entries.values().next_back().copied()
                    && model.committed < Some(last)
                {
                    model.committed = Some(last);
                    log.save_committed(Some(last)).await.unwrap();
                }
            }
            LogOp::Reopen => {
                (log, sm) = reopen(dir.path(), log, sm).await;
            }
            LogOp::Crash => {
                let survivor = tempfile::tempdir().unwrap();
                copy_dir(dir.path(), survivor.path());
                (log, sm) = open_storage_with(survivor.path(), small_segments())
                    .await
                    .unwrap();
                dir = survivor;
                // The newest committed id may not have reached the log yet; never a newer one.
                let committed = log.read_committed().await.unwrap();
                assert!(committed <= model.committed);
                model.committed = committed;
            }
        }
        check_against(&mut log, &model).await;
    }
    let (mut log, _sm) = reopen(dir.path(), log, sm).await;
    check_against(&mut log, &model).await;
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config { cases: 48, ..Default::default() })]

    #[test]
    fn the_log_is_a_map_across_reopens(ops in proptest::collection::vec(log_op(), 1..30)) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(run_model(ops));
    }
}
