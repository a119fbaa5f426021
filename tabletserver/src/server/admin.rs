//! `TabletAdmin`: the tablet lifecycle the master drives — load, unload, split, schema
//! updates — the master's flushes, compactions and row drops (`CompactTablet`, `DropRows`),
//! and the list of what this server serves.
//!
//! Fencing: every command but `ListTablets` carries a master epoch, checked first
//! (`Gate::accept_master_epoch`; a missing one is `InvalidArgument`). A tablet is served only
//! at the tablet epoch it was loaded at: loading it again at that epoch answers its status,
//! at a newer epoch re-registers it at the newer one, at an older epoch is refused. Commands
//! that start or stop serving need the gate open (a safe lock-service session).
//!
//! Lifecycle commands run one at a time (they are rare; loads are the slow ones, replaying
//! commit logs). Engine work runs on the blocking pool.
//!
//! Handover without lost writes: `UnloadTablet` stops routing requests to the tablet, waits
//! for requests holding it to finish, flushes it (so the next owner replays almost nothing)
//! and closes it, so no write to it can be acknowledged after the answer. `SplitTablet` lets
//! the engine close the parent to writes, drain them and flush; the children are opened
//! from their manifests and swapped in for the parent in the registry: a row is never served
//! by both, and a write to the parent after the split fails (`Unavailable`), never lost.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tabula_common::{Code, Epoch, Error, TableId, TabletId};
use tabula_proto::tabula::tablet::v1 as pb;
use tabula_proto::tabula::tablet::v1::tablet_admin_server::{TabletAdmin, TabletAdminServer};
use tokio::time::Instant;
use tonic::{Request, Response, Status};
use tracing::{error, info, warn};

use super::drop_rows::{DropTarget, drop_rows};
use super::gate::Gate;
use super::registry::{Registry, ServedTablet};
use super::schema::schema_from_proto;
use crate::engine::manifest::Manifest;
use crate::engine::{Engine, Schema, Tablet};

/// How long an unload (or a re-registration at a newer epoch) waits for requests that hold
/// the tablet to finish before it gives up with `Unavailable`.
pub const DRAIN_WAIT: Duration = Duration::from_secs(10);

/// How often opening a committed split's children is tried, and the wait before the second
/// try (doubled before the third).
const OPEN_CHILD_ATTEMPTS: u32 = 3;
const OPEN_CHILD_BACKOFF: Duration = Duration::from_millis(100);

/// The largest lifecycle request accepted.
pub const MAX_ADMIN_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// See the module documentation.
#[derive(Debug)]
pub struct TabletAdminService {
    engine: Arc<Engine>,
    registry: Arc<Registry>,
    gate: Arc<Gate>,
    /// Serialises lifecycle commands.
    lifecycle: tokio::sync::Mutex<()>,
    /// The server id, for `ListTablets`.
    server_id: Mutex<String>,
}

impl TabletAdminService {
    /// The lifecycle service for the tablets of `engine`, served through `registry`, fenced by
    /// `gate`.
    pub fn new(engine: Arc<Engine>, registry: Arc<Registry>, gate: Arc<Gate>) -> Self {
        let dir = engine.commit_log().server_dir();
        let server_id = dir.rsplit('/').next().unwrap_or(&dir).to_owned();
        TabletAdminService {
            engine,
            registry,
            gate,
            lifecycle: tokio::sync::Mutex::new(()),
            server_id: Mutex::new(server_id),
        }
    }

    /// The tonic service, with explicit message-size limits.
    pub fn into_server(self) -> TabletAdminServer<TabletAdminService> {
        Self::shared_server(Arc::new(self))
    }

    /// The tonic service over a service shared with other callers (the automatic splitter),
    /// with explicit message-size limits.
    pub fn shared_server(this: Arc<Self>) -> TabletAdminServer<TabletAdminService> {
        TabletAdminServer::from_arc(this)
            .max_decoding_message_size(MAX_ADMIN_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_ADMIN_MESSAGE_BYTES)
    }

    /// `LoadTablet` of a tablet known not to be a split parent; a split parent is
    /// `FailedPrecondition` (use [`TabletAdminService::load_or_children`] to learn its children).
    pub async fn load(&self, req: pb::LoadTabletRequest) -> Result<pb::TabletStatus, Error> {
        let id = req.tablet.as_ref().map_or(0, |t| t.tablet_id);
        let answer = self.load_or_children(req).await?;
        answer.status.ok_or_else(|| {
            Error::new(
                Code::FailedPrecondition,
                format!("tablet {} was split", TabletId(id)),
            )
        })
    }

    /// `LoadTablet`: see the module documentation. A tablet that was split is not loaded: the
    /// answer names its children instead.
    pub async fn load_or_children(
        &self,
        req: pb::LoadTabletRequest,
    ) -> Result<pb::LoadTabletResponse, Error> {
        self.accept(req.master_epoch)?;
        let desc = req
            .tablet
            .ok_or_else(|| Error::invalid_argument("LoadTablet needs a tablet descriptor"))?;
        let want = Descriptor::from_proto(&desc)?;
        let schema = schema_from_proto(&req.schema.unwrap_or_default())?;
        self.gate.check_serving()?;
        let _one_at_a_time = self.lifecycle.lock().await;
        if let Some(existing) = self.registry.get(want.id) {
            return self
                .reload(existing, &want)
                .await
                .map(|status| pb::LoadTabletResponse {
                    status: Some(status),
                    split_into: Vec::new(),
                });
        }
        let engine = self.engine.clone();
        let create = req.create;
        let checked = want.clone();
        let tablet = match blocking(move || open_checked(&engine, &checked, schema, create)).await?
        {
            Opened::Tablet(tablet) => tablet,
            Opened::SplitInto(children) => {
                info!(tablet_id = %want.id, ?children, "asked to load a split parent");
                return Ok(pb::LoadTabletResponse {
                    status: None,
                    split_into: children.iter().map(Descriptor::to_proto).collect(),
                });
            }
        };
        let served = Arc::new(ServedTablet::new(want.table, want.epoch, tablet));
        let status = status_of(&served);
        self.registry.insert(served)?;
        info!(
            tablet_id = %want.id,
            table = want.table.0,
            epoch = want.epoch.0,
            create,
            "tablet loaded"
        );
        Ok(pb::LoadTabletResponse {
            status: Some(status),
            split_into: Vec::new(),
        })
    }

    /// The answer to loading a tablet that is served already: its status at the same epoch;
    /// at a newer epoch it is taken out of service (requests drained) and registered again at
    /// the new one.
    async fn reload(
        &self,
        existing: Arc<ServedTablet>,
        want: &Descriptor,
    ) -> Result<pb::TabletStatus, Error> {
        let have = Descriptor::of(&existing);
        if have.table != want.table || have.start != want.start || have.end != want.end {
            return Err(Error::new(
                Code::FailedPrecondition,
                format!(
                    "tablet {} is served here as table {} rows {}, not as asked (table {} rows {})",
                    want.id,
                    have.table.0,
                    have.describe_rows(),
                    want.table.0,
                    want.describe_rows()
                ),
            ));
        }
        if want.epoch == existing.epoch {
            return Ok(status_of(&existing));
        }
        if want.epoch < existing.epoch {
            return Err(Error::new(
                Code::FailedPrecondition,
                format!(
                    "tablet {} is served here at epoch {}, newer than {}",
                    want.id, existing.epoch.0, want.epoch.0
                ),
            ));
        }
        // A newer assignment of a tablet served here: serve the same data at the new epoch.
        drop(existing);
        let old = self.take_out_of_service(want.id).await?;
        let ServedTablet {
            table,
            epoch: old_epoch,
            tablet,
            ..
        } = old;
        let served = Arc::new(ServedTablet::new(table, want.epoch, tablet));
        let status = status_of(&served);
        self.registry.insert(served)?;
        info!(
            tablet_id = %want.id,
            from = old_epoch.0,
            to = want.epoch.0,
            "tablet re-registered at a newer epoch"
        );
        Ok(status)
    }

    /// `UnloadTablet`: see the module documentation.
    pub async fn unload(&self, req: pb::UnloadTabletRequest) -> Result<(), Error> {
        self.accept(req.master_epoch)?;
        let id = TabletId(req.tablet_id);
        self.gate.check_serving()?;
        let _one_at_a_time = self.lifecycle.lock().await;
        let Some(existing) = self.registry.get(id) else {
            // Already unloaded (a retry whose first answer was lost).
            return Ok(());
        };
        check_epoch(&existing, req.tablet_epoch)?;
        drop(existing);
        let served = self.take_out_of_service(id).await?;
        let epoch = served.epoch;
        let flushed = blocking(move || {
            let flushed = served.tablet.flush().map_err(Error::from);
            served.tablet.close();
            flushed
        })
        .await;
        match flushed {
            Ok(()) => {
                info!(tablet_id = %id, epoch = epoch.0, "tablet unloaded");
                Ok(())
            }
            Err(e) => {
                warn!(tablet_id = %id, error = %e, "tablet unloaded without its final flush");
                Err(Error::new(
                    e.code,
                    format!(
                        "tablet {id} is no longer served but its final flush failed (the next \
                         owner replays the commit log): {}",
                        e.message
                    ),
                ))
            }
        }
    }

    /// `SplitTablet`: see the module documentation.
    pub async fn split(
        &self,
        req: pb::SplitTabletRequest,
    ) -> Result<(pb::TabletStatus, pb::TabletStatus), Error> {
        self.accept(req.master_epoch)?;
        let (left, right) = self
            .split_tablet(SplitPlan {
                parent: TabletId(req.tablet_id),
                tablet_epoch: Epoch(req.tablet_epoch),
                left: TabletId(req.left_tablet_id),
                right: TabletId(req.right_tablet_id),
                child_epoch: Epoch(req.child_epoch),
                at: req.split_row.map(Bytes::from),
            })
            .await?;
        Ok((status_of(&left), status_of(&right)))
    }

    /// Splits a served tablet as `plan` says and serves the children instead: the one split
    /// path of `SplitTablet` and the automatic splitter (`super::splitter`). Needs the gate
    /// open; runs one at a time with the other lifecycle commands. A retry of a split done
    /// already answers the children.
    pub async fn split_tablet(
        &self,
        plan: SplitPlan,
    ) -> Result<(Arc<ServedTablet>, Arc<ServedTablet>), Error> {
        let SplitPlan {
            parent: parent_id,
            tablet_epoch,
            left: left_id,
            right: right_id,
            child_epoch,
            at: split_row,
        } = plan;
        if left_id.0 == 0 || right_id.0 == 0 || left_id == right_id {
            return Err(Error::invalid_argument(
                "SplitTablet needs two distinct non-zero child tablet ids",
            ));
        }
        if left_id == parent_id || right_id == parent_id {
            return Err(Error::invalid_argument(
                "a child of a split needs an id of its own",
            ));
        }
        if child_epoch.0 == 0 {
            return Err(Error::invalid_argument("child_epoch must be positive"));
        }
        self.gate.check_serving()?;
        let _one_at_a_time = self.lifecycle.lock().await;
        let Some(parent) = self.registry.get(parent_id) else {
            return self.split_done_already(parent_id, left_id, right_id, child_epoch);
        };
        check_epoch(&parent, tablet_epoch.0)?;
        if self.registry.get(left_id).is_some() || self.registry.get(right_id).is_some() {
            return Err(Error::new(
                Code::AlreadyExists,
                "a child id of the split is a tablet served here already",
            ));
        }
        let probe = parent.clone();
        let at = blocking(move || {
            let at = match split_row {
                Some(row) => row,
                None => probe.tablet.middle_row()?.ok_or_else(|| {
                    Error::new(
                        Code::FailedPrecondition,
                        format!(
                            "tablet {parent_id} is too small to split: it has no middle row yet"
                        ),
                    )
                })?,
            };
            if at.is_empty() || !probe.tablet.contains(&at) {
                return Err(Error::invalid_argument(format!(
                    "split row {:?} is not inside tablet {parent_id}",
                    at.escape_ascii().to_string()
                )));
            }
            Ok(at)
        })
        .await?;
        let splitting = parent.clone();
        let split_at = at.clone();
        let split = blocking(move || {
            splitting.tablet.split(split_at, left_id, right_id)?;
            Ok((*splitting.tablet.schema()).clone())
        })
        .await;
        let schema = match split {
            Ok(schema) => schema,
            Err(e) => {
                warn!(tablet_id = %parent_id, error = %e, "split failed");
                drop(parent);
                self.recover_parent(parent_id).await;
                return Err(e);
            }
        };
        // Committed: the parent's manifest names its children, so only they can serve its
        // rows from here on (a failure now must not drop the parent's range).
        let (left, right) = match self.open_children(left_id, right_id, schema).await {
            Ok(children) => children,
            Err(e) => {
                error!(
                    tablet_id = %parent_id,
                    left = %left_id,
                    right = %right_id,
                    error = %e,
                    "split committed but its children could not be opened; loading the parent \
                     again serves them"
                );
                drop(parent);
                if let Ok(closed) = self.take_out_of_service(parent_id).await {
                    blocking(move || {
                        closed.tablet.close();
                        Ok(())
                    })
                    .await?;
                }
                return Err(e);
            }
        };
        let table = parent.table;
        let left = Arc::new(ServedTablet::child_of(parent_id, table, child_epoch, left));
        let right = Arc::new(ServedTablet::child_of(parent_id, table, child_epoch, right));
        // The switch, in one step: the parent takes no writes since the engine's split; from
        // here on its rows are routed to the children.
        self.registry
            .replace(parent_id, &[left.clone(), right.clone()])?;
        info!(
            tablet_id = %parent_id,
            left = %left_id,
            right = %right_id,
            at = %at.escape_ascii(),
            child_epoch = child_epoch.0,
            "tablet split"
        );
        drop(parent);
        Ok((left, right))
    }

    /// Opens the children of a committed split, trying `OPEN_CHILD_ATTEMPTS` times: the
    /// split cannot be undone, so a passing failure must not leave its rows unserved.
    async fn open_children(
        &self,
        left: TabletId,
        right: TabletId,
        schema: Schema,
    ) -> Result<(Tablet, Tablet), Error> {
        let mut attempt = 1;
        loop {
            let engine = self.engine.clone();
            let schema = schema.clone();
            let opened = blocking(move || {
                let l = engine.open_tablet(left, schema.clone())?;
                let r = engine.open_tablet(right, schema)?;
                Ok((l, r))
            })
            .await;
            match opened {
                Ok(children) => return Ok(children),
                Err(e) if attempt < OPEN_CHILD_ATTEMPTS => {
                    warn!(left = %left, right = %right, attempt, error = %e, "opening the children of a split failed; retrying");
                    tokio::time::sleep(OPEN_CHILD_BACKOFF * attempt).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A split whose parent is gone: answered from the children if a retry of it already
    /// happened here, else `NotFound`.
    fn split_done_already(
        &self,
        parent: TabletId,
        left: TabletId,
        right: TabletId,
        epoch: Epoch,
    ) -> Result<(Arc<ServedTablet>, Arc<ServedTablet>), Error> {
        match (self.registry.get(left), self.registry.get(right)) {
            (Some(l), Some(r)) if l.epoch == epoch && r.epoch == epoch => Ok((l, r)),
            _ => Err(Error::new(
                Code::NotFound,
                format!("this server does not serve tablet {parent}"),
            )),
        }
    }

    /// After a failed split the engine may have closed the parent to writes: reopen it from its
    /// manifest (still the parent's: a split only writes the children's) and serve it again.
    async fn recover_parent(&self, id: TabletId) {
        let Ok(old) = self.take_out_of_service(id).await else {
            warn!(tablet_id = %id, "a failed split left its parent busy and closed to writes");
            return;
        };
        let engine = self.engine.clone();
        let schema = (*old.tablet.schema()).clone();
        let (table, epoch) = (old.table, old.epoch);
        let reopened = blocking(move || {
            old.tablet.close();
            Ok(engine.open_tablet(id, schema)?)
        })
        .await;
        match reopened.and_then(|t| {
            self.registry
                .insert(Arc::new(ServedTablet::new(table, epoch, t)))
        }) {
            Ok(()) => info!(tablet_id = %id, "parent of a failed split serves again"),
            Err(e) => warn!(tablet_id = %id, error = %e, "parent of a failed split not reopened"),
        }
    }

    /// `UpdateSchema`: the new schema on every served tablet of the table.
    pub async fn update_schema(&self, req: pb::UpdateSchemaRequest) -> Result<(), Error> {
        self.accept(req.master_epoch)?;
        let schema: Schema = schema_from_proto(
            &req.schema
                .ok_or_else(|| Error::invalid_argument("UpdateSchema needs a schema"))?,
        )?;
        let table = TableId(req.table_id);
        let mut updated = 0usize;
        for served in self.registry.list() {
            if served.table == table {
                let dropped = served
                    .tablet
                    .schema()
                    .families
                    .keys()
                    .any(|f| !schema.families.contains_key(f));
                served.tablet.set_schema(schema.clone());
                if dropped {
                    // The dropped family's cells are hidden from reads at once; a major
                    // compaction removes them, so a family created again later starts empty.
                    served.tablet.request_major_compaction();
                }
                updated += 1;
            }
        }
        info!(table = table.0, tablets = updated, "schema updated");
        Ok(())
    }

    /// `CompactTablet`: flushes the tablet's memtable into an SSTable (minor) or compacts
    /// everything into one SSTable (major), and answers its status once done. Not a lifecycle
    /// change: it runs beside loads and unloads (an unload waits for it, at most
    /// `DRAIN_WAIT`).
    pub async fn compact(&self, req: pb::CompactTabletRequest) -> Result<pb::TabletStatus, Error> {
        self.accept(req.master_epoch)?;
        self.gate.check_serving()?;
        let served = self.served_at(TabletId(req.tablet_id), req.tablet_epoch)?;
        let major = req.major;
        let compacting = served.clone();
        blocking(move || {
            if major {
                compacting.tablet.major_compact()?;
            } else {
                compacting.tablet.flush()?;
            }
            Ok(())
        })
        .await?;
        info!(tablet_id = %served.id(), epoch = served.epoch.0, major, "tablet compacted");
        Ok(status_of(&served))
    }

    /// `DropRows`: deletes every row of the tablet with the prefix, or all of them, through
    /// the write path (`super::drop_rows`); answers how many rows were deleted.
    pub async fn drop_rows(&self, req: pb::DropRowsRequest) -> Result<u64, Error> {
        use pb::drop_rows_request::Target;
        self.accept(req.master_epoch)?;
        let target = match req.target {
            Some(Target::RowKeyPrefix(prefix)) if !prefix.is_empty() => {
                DropTarget::Prefix(Bytes::from(prefix))
            }
            Some(Target::DeleteAllDataFromTable(true)) => DropTarget::All,
            _ => {
                return Err(Error::invalid_argument(
                    "DropRows needs a non-empty row_key_prefix or delete_all_data_from_table",
                ));
            }
        };
        let id = TabletId(req.tablet_id);
        let rows = drop_rows(&self.gate, || self.served_at(id, req.tablet_epoch), &target).await?;
        info!(tablet_id = %id, ?target, rows, "rows dropped");
        Ok(rows)
    }

    /// The tablet `id` served here at `epoch`: `NotFound` if it is not served here,
    /// `FailedPrecondition` at another epoch.
    fn served_at(&self, id: TabletId, epoch: u64) -> Result<Arc<ServedTablet>, Error> {
        let served = self.registry.get(id).ok_or_else(|| {
            Error::new(
                Code::NotFound,
                format!("this server does not serve tablet {id}"),
            )
        })?;
        check_epoch(&served, epoch)?;
        Ok(served)
    }

    /// `ListTablets`: this server, the newest master epoch it accepted, and every tablet it
    /// serves with sizes and request counts.
    pub fn list(&self) -> pb::ListTabletsResponse {
        pb::ListTabletsResponse {
            server_id: self.server_id.lock().clone(),
            master_epoch: self.gate.master_epoch().0,
            tablets: self.registry.list().iter().map(|t| status_of(t)).collect(),
        }
    }

    fn accept(&self, epoch: Option<pb::MasterEpoch>) -> Result<(), Error> {
        let epoch = epoch.ok_or_else(|| {
            Error::invalid_argument("a lifecycle command must carry the master epoch")
        })?;
        self.gate.accept_master_epoch(Epoch(epoch.epoch))
    }

    /// Stops routing requests to `id` and waits (at most `DRAIN_WAIT`) until no request holds
    /// it; if some request still does, it is served again and the answer is `Unavailable`.
    async fn take_out_of_service(&self, id: TabletId) -> Result<ServedTablet, Error> {
        let Some(mut served) = self.registry.remove(id) else {
            return Err(Error::new(
                Code::NotFound,
                format!("this server does not serve tablet {id}"),
            ));
        };
        let deadline = Instant::now() + DRAIN_WAIT;
        loop {
            match Arc::try_unwrap(served) {
                Ok(owned) => return Ok(owned),
                Err(still_shared) if Instant::now() >= deadline => {
                    self.registry.insert(still_shared)?;
                    return Err(Error::new(
                        Code::Unavailable,
                        format!(
                            "tablet {id} is still busy with requests after {DRAIN_WAIT:?}; \
                             still served, retry later"
                        ),
                    ));
                }
                Err(still_shared) => {
                    served = still_shared;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }
    }
}

/// One split to make (`TabletAdminService::split_tablet`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitPlan {
    /// The tablet to split.
    pub parent: TabletId,
    /// The epoch the parent must be served at.
    pub tablet_epoch: Epoch,
    /// The child with the rows before the split row; non-zero, not in use.
    pub left: TabletId,
    /// The child with the split row and the rows after it; non-zero, not in use.
    pub right: TabletId,
    /// The children's tablet epoch.
    pub child_epoch: Epoch,
    /// The split row; `None` splits at the parent's middle row.
    pub at: Option<Bytes>,
}

/// A tablet descriptor, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Descriptor {
    table: TableId,
    id: TabletId,
    start: Bytes,
    end: Option<Bytes>,
    epoch: Epoch,
}

impl Descriptor {
    fn from_proto(d: &pb::TabletDescriptor) -> Result<Descriptor, Error> {
        if d.tablet_id == 0 {
            return Err(Error::invalid_argument("tablet_id must be non-zero"));
        }
        if d.tablet_epoch == 0 {
            return Err(Error::invalid_argument("tablet_epoch must be positive"));
        }
        if let Some(end) = &d.end_row
            && end[..] <= d.start_row[..]
        {
            return Err(Error::invalid_argument(
                "the tablet's end row must be after its start row",
            ));
        }
        Ok(Descriptor {
            table: TableId(d.table_id),
            id: TabletId(d.tablet_id),
            start: Bytes::copy_from_slice(&d.start_row),
            end: d.end_row.as_deref().map(Bytes::copy_from_slice),
            epoch: Epoch(d.tablet_epoch),
        })
    }

    fn of(served: &ServedTablet) -> Descriptor {
        let m = served.tablet.manifest();
        Descriptor {
            table: served.table,
            id: served.id(),
            start: m.start_row,
            end: m.end_row,
            epoch: served.epoch,
        }
    }

    fn matches(&self, m: &Manifest) -> bool {
        m.start_row == self.start && m.end_row == self.end
    }

    fn describe_rows(&self) -> String {
        describe_rows(&self.start, self.end.as_ref())
    }

    fn to_proto(&self) -> pb::TabletDescriptor {
        pb::TabletDescriptor {
            table_id: self.table.0,
            tablet_id: self.id.0,
            start_row: self.start.to_vec(),
            end_row: self.end.as_ref().map(|e| e.to_vec()),
            tablet_epoch: self.epoch.0,
        }
    }
}

fn describe_rows(start: &[u8], end: Option<&Bytes>) -> String {
    format!(
        "[{:?}, {})",
        start.escape_ascii().to_string(),
        end.map_or("end".to_owned(), |e| format!(
            "{:?}",
            e.escape_ascii().to_string()
        ))
    )
}

/// What opening a tablet found.
enum Opened {
    /// The tablet, open.
    Tablet(Tablet),
    /// A split parent: its children (left, right), at the epoch asked for.
    SplitInto(Vec<Descriptor>),
}

/// Creates or opens the tablet `want` names, refusing a manifest whose rows differ. A
/// `create` for a tablet whose manifest exists opens it (a retried create must not wipe
/// the tablet's data). A split parent is not opened: its children are answered.
fn open_checked(
    engine: &Arc<Engine>,
    want: &Descriptor,
    schema: Schema,
    create: bool,
) -> Result<Opened, Error> {
    let path = Manifest::path(want.id);
    let exists = engine
        .storage()
        .exists(&path)
        .map_err(|e| Error::internal(format!("checking {path}: {e}")))?;
    if !exists {
        if create {
            return Ok(Opened::Tablet(engine.create_tablet(
                want.id,
                want.start.clone(),
                want.end.clone(),
                schema,
            )?));
        }
        return Err(Error::new(
            Code::NotFound,
            format!("tablet {} has no manifest at {path}", want.id),
        ));
    }
    let manifest = Manifest::load(engine.storage().as_ref(), want.id)
        .map_err(|e| Error::from(crate::engine::EngineError::from(e)))?;
    if !want.matches(&manifest) {
        return Err(Error::new(
            Code::FailedPrecondition,
            format!(
                "tablet {}'s manifest holds rows {}, not {} as asked",
                want.id,
                describe_rows(&manifest.start_row, manifest.end_row.as_ref()),
                want.describe_rows()
            ),
        ));
    }
    if !manifest.split_into.is_empty() {
        let mut children = Vec::with_capacity(manifest.split_into.len());
        for child in &manifest.split_into {
            let m = Manifest::load(engine.storage().as_ref(), *child)
                .map_err(|e| Error::from(crate::engine::EngineError::from(e)))?;
            children.push(Descriptor {
                table: want.table,
                id: *child,
                start: m.start_row,
                end: m.end_row,
                epoch: want.epoch,
            });
        }
        return Ok(Opened::SplitInto(children));
    }
    Ok(Opened::Tablet(engine.open_tablet(want.id, schema)?))
}

/// `FailedPrecondition` unless `served` is served at `epoch`.
fn check_epoch(served: &ServedTablet, epoch: u64) -> Result<(), Error> {
    if served.epoch.0 != epoch {
        return Err(Error::new(
            Code::FailedPrecondition,
            format!(
                "tablet {} is served here at epoch {}, not {epoch}",
                served.id(),
                served.epoch.0
            ),
        ));
    }
    Ok(())
}

/// What `ListTablets` and the lifecycle answers say about a served tablet.
pub fn status_of(served: &ServedTablet) -> pb::TabletStatus {
    let size = served.tablet.approximate_size_bytes();
    pb::TabletStatus {
        tablet: Some(Descriptor::of(served).to_proto()),
        approximate_size_bytes: size,
        sstable_count: u32::try_from(served.tablet.sstable_count()).unwrap_or(u32::MAX),
        memtable_bytes: served.tablet.memtable_bytes(),
        reads: served.reads.load(std::sync::atomic::Ordering::Relaxed),
        writes: served.writes.load(std::sync::atomic::Ordering::Relaxed),
        split_parent: served.split_parent.map_or(0, |p| p.0),
    }
}

/// Runs engine work on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(format!("a lifecycle task failed: {e}")))?
}

#[tonic::async_trait]
impl TabletAdmin for TabletAdminService {
    async fn load_tablet(
        &self,
        request: Request<pb::LoadTabletRequest>,
    ) -> Result<Response<pb::LoadTabletResponse>, Status> {
        Ok(Response::new(
            self.load_or_children(request.into_inner()).await?,
        ))
    }

    async fn unload_tablet(
        &self,
        request: Request<pb::UnloadTabletRequest>,
    ) -> Result<Response<pb::UnloadTabletResponse>, Status> {
        self.unload(request.into_inner()).await?;
        Ok(Response::new(pb::UnloadTabletResponse {}))
    }

    async fn split_tablet(
        &self,
        request: Request<pb::SplitTabletRequest>,
    ) -> Result<Response<pb::SplitTabletResponse>, Status> {
        let (left, right) = self.split(request.into_inner()).await?;
        Ok(Response::new(pb::SplitTabletResponse {
            left: Some(left),
            right: Some(right),
        }))
    }

    async fn update_schema(
        &self,
        request: Request<pb::UpdateSchemaRequest>,
    ) -> Result<Response<pb::UpdateSchemaResponse>, Status> {
        TabletAdminService::update_schema(self, request.into_inner()).await?;
        Ok(Response::new(pb::UpdateSchemaResponse {}))
    }

    async fn compact_tablet(
        &self,
        request: Request<pb::CompactTabletRequest>,
    ) -> Result<Response<pb::CompactTabletResponse>, Status> {
        let status = self.compact(request.into_inner()).await?;
        Ok(Response::new(pb::CompactTabletResponse {
            status: Some(status),
        }))
    }

    async fn drop_rows(
        &self,
        request: Request<pb::DropRowsRequest>,
    ) -> Result<Response<pb::DropRowsResponse>, Status> {
        let rows = TabletAdminService::drop_rows(self, request.into_inner()).await?;
        Ok(Response::new(pb::DropRowsResponse { rows }))
    }

    async fn list_tablets(
        &self,
        request: Request<pb::ListTabletsRequest>,
    ) -> Result<Response<pb::ListTabletsResponse>, Status> {
        if let Some(epoch) = request.into_inner().master_epoch {
            self.accept(Some(epoch))?;
        }
        Ok(Response::new(self.list()))
    }

    async fn merge_tablets(
        &self,
        request: Request<pb::MergeTabletsRequest>,
    ) -> Result<Response<pb::MergeTabletsResponse>, Status> {
        let parts = super::merge::MergeParts {
            engine: &self.engine,
            registry: &self.registry,
            gate: &self.gate,
            lifecycle: &self.lifecycle,
        };
        Ok(Response::new(
            super::merge::merge_tablets(parts, request.into_inner()).await?,
        ))
    }
}
