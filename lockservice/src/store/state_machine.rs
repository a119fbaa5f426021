//! `StateMachineStore`: openraft's `RaftStateMachine` around the in-memory `LockState`, with
//! durable snapshots (the "persistent snapshot" model: the state lives in memory, every snapshot
//! is written atomically, and a restart restores the latest one, after which openraft replays
//! the committed log above it).
//!
//! The service layer reads the state through a `StateHandle` (a closure under a read lock, so
//! nobody holds the lock across an `.await`) and wakes on its watch of the last applied log id.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend,
    RaftSnapshotBuilder, StorageError, StoredMembership,
};
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use super::durable::{self, DirLock};
use super::error::{IntoStorage, StoreError};
use super::snapshot_file::{self, Meta, SNAPSHOT_FILE};
use crate::state::{Limits, LockState, Response};
use crate::types::{NodeId, TypeConfig};

/// The state machine and what openraft needs to know about it.
#[derive(Debug)]
struct Applied {
    state: LockState,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
}

#[derive(Debug)]
struct SmShared {
    /// The `snapshot/` directory.
    dir: PathBuf,
    applied: Arc<RwLock<Applied>>,
    applied_tx: watch::Sender<Option<LogId<NodeId>>>,
    /// The durable snapshot's meta; held while the snapshot file is replaced.
    current: Mutex<Option<Meta>>,
    /// Makes snapshot ids unique within the process.
    snapshot_seq: AtomicU64,
    _lock: Arc<DirLock>,
}

/// The lock service's state machine as openraft drives it.
#[derive(Debug)]
pub struct StateMachineStore {
    shared: Arc<SmShared>,
}

/// Read access to the applied state for the service layer; cheap to clone.
#[derive(Debug, Clone)]
pub struct StateHandle {
    applied: Arc<RwLock<Applied>>,
    rx: watch::Receiver<Option<LogId<NodeId>>>,
}

impl StateHandle {
    /// Runs `f` on the current state under a read lock (keep `f` short: `apply` waits).
    pub fn read<R>(&self, f: impl FnOnce(&LockState) -> R) -> R {
        f(&self.applied.read().state)
    }

    /// The id of the last applied entry.
    pub fn last_applied(&self) -> Option<LogId<NodeId>> {
        self.applied.read().last_applied
    }

    /// A watch that changes after every applied batch and every installed snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Option<LogId<NodeId>>> {
        self.rx.clone()
    }

    /// Waits until the entry at `index` is applied; `false` if the state machine is gone.
    pub async fn wait_applied(&self, index: u64) -> bool {
        let mut rx = self.rx.clone();
        rx.wait_for(|applied| applied.is_some_and(|l| l.index >= index))
            .await
            .is_ok()
    }
}

impl StateMachineStore {
    /// Restores the state from `dir`'s snapshot, or starts empty with `limits`.
    pub(super) fn open(
        dir: &Path,
        limits: Limits,
        lock: Arc<DirLock>,
    ) -> Result<StateMachineStore, StoreError> {
        durable::create_dir(dir)?;
        durable::remove_leftover_tmp(dir, SNAPSHOT_FILE)?;
        let (applied, current) = match snapshot_file::read(dir)? {
            Some((meta, data)) => {
                let state = LockState::from_snapshot(&data)?;
                let snapshot_index = meta.last_log_id.map_or(0, |l| l.index);
                if state.last_applied_index() > snapshot_index {
                    return Err(StoreError::inconsistent(
                        &dir.join(SNAPSHOT_FILE),
                        format!(
                            "state applied up to {} but the snapshot ends at {}",
                            state.last_applied_index(),
                            snapshot_index
                        ),
                    ));
                }
                let applied = Applied {
                    state,
                    last_applied: meta.last_log_id,
                    membership: meta.last_membership.clone(),
                };
                (applied, Some(meta))
            }
            None => (
                Applied {
                    state: LockState::with_limits(limits),
                    last_applied: None,
                    membership: StoredMembership::default(),
                },
                None,
            ),
        };
        let (applied_tx, _) = watch::channel(applied.last_applied);
        Ok(StateMachineStore {
            shared: Arc::new(SmShared {
                dir: dir.to_path_buf(),
                applied: Arc::new(RwLock::new(applied)),
                applied_tx,
                current: Mutex::new(current),
                snapshot_seq: AtomicU64::new(0),
                _lock: lock,
            }),
        })
    }

    /// A read handle on the applied state, for the service layer.
    pub fn state(&self) -> StateHandle {
        StateHandle {
            applied: Arc::clone(&self.shared.applied),
            rx: self.shared.applied_tx.subscribe(),
        }
    }
}

impl SmShared {
    /// Writes a snapshot file unless a newer one is already durable (`only_if_newer`: a
    /// snapshot built from an older state than one installed meanwhile).
    fn persist(&self, meta: &Meta, data: &[u8], only_if_newer: bool) -> Result<(), StoreError> {
        let mut current = self.current.lock();
        if only_if_newer
            && let Some(cur) = current.as_ref()
            && cur.last_log_id > meta.last_log_id
        {
            tracing::debug!(built = %meta.snapshot_id, current = %cur.snapshot_id, "a newer snapshot is already durable");
            return Ok(());
        }
        snapshot_file::write(&self.dir, meta, data)?;
        *current = Some(meta.clone());
        Ok(())
    }
}

/// A point-in-time copy of the state, serialized, waiting to be written as a snapshot.
#[derive(Debug)]
pub struct LockSnapshotBuilder {
    shared: Arc<SmShared>,
    /// Taken by the (single) `build_snapshot` call.
    data: Option<Vec<u8>>,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
}

impl RaftSnapshotBuilder<TypeConfig> for LockSnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let seq = self.shared.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match self.last_applied {
            Some(l) => format!(
                "{}-{}-{}-{seq}",
                l.leader_id.term, l.leader_id.node_id, l.index
            ),
            None => format!("empty-{seq}"),
        };
        let meta = Meta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id,
        };
        let shared = Arc::clone(&self.shared);
        let data = self.data.take().ok_or_else(|| {
            StoreError::Task("build_snapshot called twice on one builder".into())
                .into_storage(ErrorSubject::Snapshot(None), ErrorVerb::Write)
        })?;
        let meta_for_file = meta.clone();
        let data = tokio::task::spawn_blocking(move || {
            shared.persist(&meta_for_file, &data, true).map(|()| data)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))
        .and_then(|r| r)
        .storage(ErrorSubject::Snapshot(None), ErrorVerb::Write)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = LockSnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>>
    {
        let applied = self.shared.applied.read();
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        let last = {
            let mut applied = self.shared.applied.write();
            for entry in entries {
                let index = entry.log_id.index;
                applied.last_applied = Some(entry.log_id);
                let response = match entry.payload {
                    EntryPayload::Normal(request) => applied.state.apply(index, &request),
                    // A leader's no-op entry changes nothing.
                    EntryPayload::Blank => Response::Done { generation: index },
                    EntryPayload::Membership(membership) => {
                        applied.membership = StoredMembership::new(Some(entry.log_id), membership);
                        Response::Done { generation: index }
                    }
                };
                responses.push(response);
            }
            applied.last_applied
        };
        self.shared.applied_tx.send_replace(last);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> LockSnapshotBuilder {
        let applied = self.shared.applied.read();
        LockSnapshotBuilder {
            shared: Arc::clone(&self.shared),
            data: Some(applied.state.to_snapshot()),
            last_applied: applied.last_applied,
            membership: applied.membership.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let shared = Arc::clone(&self.shared);
        let meta_for_file = meta.clone();
        // Decode first (a bad snapshot changes nothing), then persist, then switch.
        let state = tokio::task::spawn_blocking(move || {
            let state = LockState::from_snapshot(&data)?;
            shared.persist(&meta_for_file, &data, false)?;
            Ok::<_, StoreError>(state)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))
        .and_then(|r| r)
        .storage(
            ErrorSubject::Snapshot(Some(meta.signature())),
            ErrorVerb::Write,
        )?;
        {
            let mut applied = self.shared.applied.write();
            applied.state = state;
            applied.last_applied = meta.last_log_id;
            applied.membership = meta.last_membership.clone();
        }
        self.shared.applied_tx.send_replace(meta.last_log_id);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let dir = self.shared.dir.clone();
        let found = tokio::task::spawn_blocking(move || snapshot_file::read(&dir))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))
            .and_then(|r| r)
            .storage(ErrorSubject::Snapshot(None), ErrorVerb::Read)?;
        Ok(found.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
