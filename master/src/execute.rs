//! Carrying out the planner's actions against METADATA and the tablet servers.
//!
//! Order of effects, so that a master dying between any two steps leaves a state the next
//! master's planner repairs, and no tablet is ever served by two servers:
//!
//! - **Assign**: record `Assigned(server, epoch + 1)` by compare-and-set on the record read
//!   this round (a deposed master's stale record matches nothing), then `LoadTablet` at that
//!   epoch; a tablet loaded for the first time is then recorded `created`. A failed load leaves
//!   the record naming a server that does not serve it, which the planner assigns again.
//! - **Unload**: `UnloadTablet` at the epoch the server serves.
//! - A `LoadTablet` answering `split_into` finishes what replaced the tablet: two children
//!   are a split (`splits`), one is a merge (`merge_ops::finish_merge`).
//! - **Move**: record `Moving`, unload on the source (which minor-compacts first, so the target
//!   replays almost nothing), then assign to the target. The target loads only after the
//!   source stopped serving.
//! - **EndMove**: a move that stopped after recording `Moving` (its answer lost, or its
//!   master dead) while the source still serves the tablet is abandoned: the record goes back
//!   to `Assigned` on the source, same epoch, by compare-and-set.
//!
//! Every command carries the master epoch and is sent only while the leadership is safe.

use std::sync::Arc;
use std::time::Duration;

use tabula_client::Channels;
use tabula_client::meta::{MetaTable, TabletRecord, TabletState, read_root, write_root};
use tabula_common::{Code, Epoch, Error, ServerId, StorageRoot, TableId, TabletId};
use tabula_lockservice::client::LockClient;
use tabula_proto::tabula::tablet::v1 as tpb;
use tracing::{info, warn};

use crate::election::Leadership;
use crate::tables::meta_schema;
use crate::view::Snapshot;

/// How long a tablet server has to load or unload a tablet.
const LIFECYCLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The parts an action needs.
#[derive(Debug, Clone)]
pub struct Executor {
    /// The lock service.
    pub lock: LockClient,
    /// METADATA access.
    pub meta: MetaTable,
    /// Connections to tablet servers.
    pub channels: Channels,
    /// The leadership every command rests on.
    pub leadership: Leadership,
    /// The cluster's storage root (the master only deletes the manifests of deleted tablets
    /// there; the tablet servers' collection then removes their files).
    pub storage: Arc<dyn StorageRoot>,
}

impl Executor {
    fn master_epoch(&self) -> tpb::MasterEpoch {
        tpb::MasterEpoch {
            epoch: self.leadership.epoch().0,
        }
    }

    /// `Unavailable` unless the leadership is safe now.
    pub fn check_safe(&self) -> Result<(), Error> {
        if self.leadership.is_safe() {
            Ok(())
        } else {
            Err(Error::new(
                Code::Unavailable,
                "the master's lock-service session is not safe: it issues no commands",
            ))
        }
    }

    /// Replaces `old` with `new` in METADATA (or `/tabula/root` for the root tablet);
    /// `Aborted` if `old` is no longer what is stored. Both are compare-and-set on the stored
    /// record itself; for the root, its file's generation guards the write against a race.
    pub async fn record(&self, old: &TabletRecord, new: &TabletRecord) -> Result<(), Error> {
        self.check_safe()?;
        let written = if new.table == TableId::ROOT {
            match read_root(&self.lock).await? {
                Some((stored, generation)) if stored == *old => {
                    match write_root(&self.lock, new, Some(generation)).await {
                        Ok(_) => true,
                        Err(e) if e.code == Code::Aborted => false,
                        Err(e) => return Err(e),
                    }
                }
                _ => false,
            }
        } else {
            self.meta.compare_and_set(Some(old), new).await?
        };
        if written {
            Ok(())
        } else {
            Err(Error::new(
                Code::Aborted,
                format!(
                    "the record of tablet {} changed since it was read",
                    new.tablet
                ),
            ))
        }
    }

    /// Assigns `old`'s tablet to `server` at `epoch` and has the server load it; answers the
    /// record as it now stands.
    pub async fn assign(
        &self,
        snapshot: &Snapshot,
        old: &TabletRecord,
        server: &ServerId,
        epoch: Epoch,
    ) -> Result<TabletRecord, Error> {
        let addr = snapshot.addr_of(server).ok_or_else(|| {
            Error::new(Code::Unavailable, format!("tablet server {server} is gone"))
        })?;
        let mut new = old.clone();
        new.state = TabletState::Assigned;
        new.server = Some(server.clone());
        new.server_addr = addr.clone();
        new.epoch = epoch;
        new.master_epoch = self.leadership.epoch();
        self.record(old, &new).await?;
        let schema = self.schema_of(snapshot, new.table)?;
        self.check_safe()?;
        let request = tpb::LoadTabletRequest {
            master_epoch: Some(self.master_epoch()),
            tablet: Some(new.descriptor()),
            schema: Some(schema),
            create: !old.created,
        };
        let mut admin = self.channels.admin(&addr)?;
        let mut call = tonic::Request::new(request);
        call.set_timeout(LIFECYCLE_TIMEOUT);
        let answer = admin
            .load_tablet(call)
            .await
            .map_err(Error::from)?
            .into_inner();
        if let [left, right] = &answer.split_into[..] {
            // The tablet was split before it could be recorded: record its children; the
            // planner assigns them.
            let left = crate::servers::child_of(left);
            let right = crate::servers::child_of(right);
            crate::splits::record_split(self, &new, &left, &right, None).await?;
            return Ok(new);
        }
        if let [merged] = &answer.split_into[..] {
            // The tablet was merged with its neighbour before METADATA knew: finish that.
            let merged = crate::servers::child_of(merged);
            crate::merge_ops::finish_merge(self, snapshot, &new, &merged, &addr).await?;
            return Ok(new);
        }
        info!(
            tablet = %new.tablet,
            table = new.table.0,
            %server,
            epoch = epoch.0,
            "tablet assigned"
        );
        if !old.created {
            let mut created = new.clone();
            created.created = true;
            self.record(&new, &created).await?;
            return Ok(created);
        }
        Ok(new)
    }

    /// Tells `server` to stop serving `tablet` at `epoch`.
    pub async fn unload(
        &self,
        snapshot: &Snapshot,
        tablet: TabletId,
        server: &ServerId,
        epoch: Epoch,
    ) -> Result<(), Error> {
        let addr = snapshot.addr_of(server).ok_or_else(|| {
            Error::new(Code::Unavailable, format!("tablet server {server} is gone"))
        })?;
        self.check_safe()?;
        let mut admin = self.channels.admin(&addr)?;
        let mut call = tonic::Request::new(tpb::UnloadTabletRequest {
            master_epoch: Some(self.master_epoch()),
            tablet_id: tablet.0,
            tablet_epoch: epoch.0,
        });
        call.set_timeout(LIFECYCLE_TIMEOUT);
        match admin.unload_tablet(call).await.map_err(Error::from) {
            Ok(_) => {}
            // Not served there (any more): the goal is reached.
            Err(e) if e.code == Code::NotFound => {}
            Err(e) => return Err(e),
        }
        info!(%tablet, %server, epoch = epoch.0, "tablet unloaded");
        Ok(())
    }

    /// Moves `old`'s tablet from its server to `to` at `epoch`.
    pub async fn move_tablet(
        &self,
        snapshot: &Snapshot,
        old: &TabletRecord,
        to: &ServerId,
        epoch: Epoch,
    ) -> Result<TabletRecord, Error> {
        let from = old.server.clone().ok_or_else(|| {
            Error::new(
                Code::FailedPrecondition,
                format!("tablet {} is not assigned", old.tablet),
            )
        })?;
        let mut moving = old.clone();
        moving.state = TabletState::Moving;
        moving.master_epoch = self.leadership.epoch();
        self.record(old, &moving).await?;
        if snapshot.servers.listed(&from) {
            self.unload(snapshot, old.tablet, &from, old.epoch).await?;
        }
        self.assign(snapshot, &moving, to, epoch).await
    }

    /// Records `old`, a tablet left `Moving` that its server still serves at its epoch,
    /// `Assigned` there again: the move that marked it is abandoned. `Aborted` if the record
    /// changed since it was read.
    pub async fn end_move(&self, old: &TabletRecord) -> Result<(), Error> {
        let mut assigned = old.clone();
        assigned.state = TabletState::Assigned;
        assigned.master_epoch = self.leadership.epoch();
        self.record(old, &assigned).await?;
        info!(tablet = %old.tablet, server = ?old.server, epoch = old.epoch.0,
            "unfinished move ended; the tablet stays");
        Ok(())
    }

    /// Deletes the manifest of a tablet METADATA no longer names, so its files stop being
    /// garbage-collection roots.
    pub async fn forget_manifest(&self, record: &TabletRecord) -> Result<(), Error> {
        let storage = self.storage.clone();
        let path = record.manifest_path.clone();
        tokio::task::spawn_blocking(move || storage.delete(&path))
            .await
            .map_err(|e| Error::internal(format!("deleting a manifest: {e}")))?
            .map_err(|e| {
                Error::new(
                    Code::Unavailable,
                    format!("deleting {}: {e}", record.manifest_path),
                )
            })
    }

    /// Deletes the manifests of tablets a recorded split or merge replaced: METADATA no longer
    /// names them, so nothing loads them again, and their SSTables live on in the manifests of
    /// the tablets that replaced them. A failure is logged, not answered: the split or merge
    /// is recorded either way, and a leftover manifest only costs its few bytes.
    pub async fn forget_replaced(&self, tablets: &[TabletId]) {
        for tablet in tablets {
            let storage = self.storage.clone();
            let path = crate::bootstrap::manifest_path(*tablet);
            let deleted = tokio::task::spawn_blocking(move || storage.delete(&path)).await;
            match deleted {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!(%tablet, error = %e, "a replaced tablet's manifest stays"),
                Err(e) => warn!(%tablet, error = %e, "a replaced tablet's manifest stays"),
            }
        }
    }

    fn schema_of(&self, snapshot: &Snapshot, table: TableId) -> Result<tpb::Schema, Error> {
        if table == TableId::ROOT || table == TableId::METADATA {
            return Ok(meta_schema());
        }
        snapshot
            .tables
            .get(&table)
            .map(|t| t.schema.clone())
            .ok_or_else(|| Error::new(Code::NotFound, format!("table {} is gone", table.0)))
    }
}
