//! The active master's work: rounds of gather -> plan -> execute, and the admin operations
//! that change tables, all under one operation lock so a round never races an admin command
//! on the same tablets.
//!
//! A round: read the cluster ([`view::gather`]), finish the bootstrap (the first METADATA
//! tablet's record, once the root is served), finish or roll back table operations a dead
//! master left (a table still `Creating` is deleted — its creator answered an error or never
//! answered; a table `Deleting` is deleted), record splits servers made that METADATA does not
//! know yet (`splits`; the round then ends so the next one plans with the children), settle
//! merges in flight (`merge_intents`: finished or rolled back; the round then ends likewise,
//! and the planner never touches a tablet of an unsettled one), then run the planner and
//! execute its actions one by one; balancing moves only while the cluster-wide balancer switch (`balancer_switch`,
//! read by the round's `gather`) and this process's `--no-balancer` both allow it. Rounds
//! run every `round_interval`, and at once when an admin command or a caller asks (`wake`).
//! The loop ends when the leadership stops being safe.
//!
//! An operator's move stands: a tablet `MoveTablet` placed is *pinned* (the planner's
//! `ClusterView::pinned`), so the balancer does not undo it: unpinned, the round the move
//! wakes takes it straight back whenever the move leaves the target two tablets above
//! another server and the byte rule picks that tablet (and `tabula move`, waiting to see it
//! on the target, waited in vain). A pin lasts while METADATA records the tablet at the
//! epoch the move gave it: a reassignment after a failure, a split or a merge ends it, as
//! does the end of this leadership (pins live in this process only; a new master starts
//! with none).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::RwLock;
use tabula_client::meta::{TabletRecord, TabletState};
use tabula_common::{Code, Epoch, Error, ServerId, TableId, TabletId};
use tabula_proto::tabula::master::v1 as pb;
use tabula_proto::tabula::tablet::v1 as tpb;
use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::bootstrap::{first_meta_tablet, fresh_tablet_id, new_tablet};
use crate::execute::Executor;
use crate::metrics::MasterMetrics;
use crate::plan::{Action, BalancerOptions, plan};
use crate::splits::{Child, record_split};
use crate::tables::{Catalog, Table};
use crate::view::{self, Snapshot};

/// The longest row key (a split key is one).
const MAX_ROW_KEY: usize = tabula_common::RowKey::MAX_LEN;
/// The most initial split keys of a new table.
const MAX_SPLIT_KEYS: usize = 10_000;

/// The active master's state while it leads.
#[derive(Debug)]
pub struct Active {
    exec: Executor,
    catalog: Catalog,
    balancer: BalancerOptions,
    round_interval: Duration,
    ops: Mutex<()>,
    wake: Notify,
    latest: RwLock<Arc<Snapshot>>,
    /// Tablets an operator moved, with where the move left them (see the module docs).
    pins: parking_lot::Mutex<BTreeMap<TabletId, Pin>>,
    cluster_id: String,
    metrics: Arc<MasterMetrics>,
}

/// Where an operator's `MoveTablet` left a tablet: its table and the epoch of that
/// assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pin {
    table: TableId,
    epoch: Epoch,
}

/// Drops from `pins` the ones `snapshot` shows ended (the tablet's record gone or at another
/// epoch; the pins of a table whose records could not all be read stay) and answers the
/// tablets still pinned.
fn standing_pins(pins: &mut BTreeMap<TabletId, Pin>, snapshot: &Snapshot) -> BTreeSet<TabletId> {
    pins.retain(|tablet, pin| match snapshot.records.get(tablet) {
        Some(record) => record.epoch == pin.epoch,
        None => snapshot.incomplete.contains(&pin.table),
    });
    pins.keys().copied().collect()
}

impl Active {
    /// The state of a master that just won the election.
    pub fn new(
        exec: Executor,
        catalog: Catalog,
        balancer: BalancerOptions,
        round_interval: Duration,
        cluster_id: String,
        metrics: Arc<MasterMetrics>,
    ) -> Active {
        Active {
            exec,
            catalog,
            balancer,
            round_interval,
            ops: Mutex::new(()),
            wake: Notify::new(),
            latest: RwLock::new(Arc::new(Snapshot::default())),
            pins: parking_lot::Mutex::new(BTreeMap::new()),
            cluster_id,
            metrics,
        }
    }

    /// The executor (leadership, METADATA, channels).
    pub fn exec(&self) -> &Executor {
        &self.exec
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The latest round's picture.
    pub fn latest(&self) -> Arc<Snapshot> {
        self.latest.read().clone()
    }

    /// Whether this process may balance at all (`--no-balancer` not given); balancing also
    /// needs the cluster-wide switch (`balancer_switch`).
    pub fn balancer_allowed(&self) -> bool {
        self.balancer.enabled
    }

    /// `SetBalancer`: writes the cluster-wide switch and answers its previous setting. The
    /// next round plans with it.
    pub async fn set_balancer(&self, enabled: bool) -> Result<bool, Error> {
        self.exec.check_safe()?;
        let previous = crate::balancer_switch::set(&self.exec.lock, enabled).await?;
        info!(enabled, previous, "balancer switch set");
        self.wake.notify_one();
        Ok(previous)
    }

    /// Asks for a round now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Takes the operation lock: rounds and admin operations run one at a time.
    pub(crate) async fn lock_ops(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.ops.lock().await
    }

    /// The table catalog.
    pub(crate) fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Runs rounds until the leadership is lost or `cancel` fires.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let leadership = self.exec.leadership.clone();
        loop {
            if !leadership.is_safe() || cancel.is_cancelled() {
                return;
            }
            if let Err(e) = self.round().await {
                warn!(error = %e, "a master round failed");
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = leadership.lost() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.round_interval) => {}
            }
        }
    }

    /// One round: see the module documentation. Answers how many actions it executed.
    pub async fn round(&self) -> Result<usize, Error> {
        let _one = self.ops.lock().await;
        self.metrics.round();
        let snapshot = self.gather().await?;
        self.finish_bootstrap(&snapshot).await?;
        self.finish_table_operations(&snapshot).await;
        let splits = self.record_reported_splits(&snapshot).await;
        if splits > 0 {
            // Plan on a picture that has the children in METADATA.
            self.wake.notify_one();
            return Ok(splits);
        }
        let (merging, merges) = self.settle_merges(&snapshot).await?;
        if merges > 0 {
            // Plan on a picture with the merges settled (recorded or rolled back).
            self.wake.notify_one();
            return Ok(merges);
        }
        let pinned = standing_pins(&mut self.pins.lock(), &snapshot);
        let view = snapshot.cluster_view(&merging, pinned, 0, self.balancer);
        let actions = plan(&view);
        let mut done = 0;
        for action in &actions {
            if !self.exec.leadership.is_safe() {
                break;
            }
            let result = self.execute(&snapshot, action).await;
            self.metrics.action(action, result.is_ok());
            match result {
                Ok(()) => done += 1,
                Err(e) => warn!(?action, error = %e, "action failed"),
            }
        }
        if done > 0 {
            // Let the next round see the effects at once.
            self.wake.notify_one();
        }
        Ok(done)
    }

    /// A fresh picture of the cluster, kept as the latest.
    pub(crate) async fn gather(&self) -> Result<Arc<Snapshot>, Error> {
        let snapshot = Arc::new(
            view::gather(
                &self.exec.lock,
                &self.exec.channels,
                &self.exec.meta,
                &self.catalog,
                self.exec.leadership.epoch(),
            )
            .await?,
        );
        *self.latest.write() = snapshot.clone();
        Ok(snapshot)
    }

    async fn execute(&self, snapshot: &Snapshot, action: &Action) -> Result<(), Error> {
        let record = |tablet| {
            snapshot
                .records
                .get(&tablet)
                .ok_or_else(|| Error::new(Code::NotFound, format!("tablet {tablet} has no record")))
        };
        match action {
            Action::Assign {
                tablet,
                server,
                epoch,
                ..
            } => self
                .exec
                .assign(snapshot, record(*tablet)?, server, *epoch)
                .await
                .map(|_| ()),
            Action::Unload {
                tablet,
                server,
                epoch,
            } => self.exec.unload(snapshot, *tablet, server, *epoch).await,
            Action::Move {
                tablet, to, epoch, ..
            } => self
                .exec
                .move_tablet(snapshot, record(*tablet)?, to, *epoch)
                .await
                .map(|_| ()),
            // The record read this round is the one the planner saw `Moving` on the server
            // that serves it; the compare-and-set refuses it if it changed since.
            Action::EndMove { tablet, .. } => self.exec.end_move(record(*tablet)?).await,
        }
    }

    /// Records splits that servers report and METADATA does not know yet; answers how many
    /// splits were pending (recorded or not).
    async fn record_reported_splits(&self, snapshot: &Snapshot) -> usize {
        let mut by_parent: BTreeMap<TabletId, Vec<(&ServerId, &Child)>> = BTreeMap::new();
        for (server, parent, child) in &snapshot.servers.split_children {
            if !snapshot.records.contains_key(&child.tablet) {
                by_parent.entry(*parent).or_default().push((server, child));
            }
        }
        let mut pending = 0;
        for (parent, mut children) in by_parent {
            let Some(record) = snapshot.records.get(&parent) else {
                continue;
            };
            pending += 1;
            children.sort_by(|a, b| a.1.start_row.cmp(&b.1.start_row));
            let [(server, left), (_, right)] = children[..] else {
                warn!(%parent, children = children.len(), "a split reported without both children");
                continue;
            };
            let Some(addr) = snapshot.addr_of(server) else {
                continue;
            };
            if let Err(e) =
                record_split(&self.exec, record, left, right, Some((server, &addr))).await
            {
                warn!(%parent, error = %e, "could not record a split");
            } else {
                self.metrics.split_recorded();
            }
        }
        pending
    }

    /// Records the first METADATA tablet once the root is served and holds no METADATA record.
    async fn finish_bootstrap(&self, snapshot: &Snapshot) -> Result<(), Error> {
        let root_served = snapshot.root().is_some_and(|r| snapshot.is_served(r));
        let has_meta = snapshot
            .records
            .values()
            .any(|r| r.table == TableId::METADATA);
        if root_served && !has_meta && !snapshot.incomplete.contains(&TableId::METADATA) {
            self.exec.check_safe()?;
            if self
                .exec
                .meta
                .compare_and_set(None, &first_meta_tablet())
                .await?
            {
                info!("recorded the first METADATA tablet");
                self.wake.notify_one();
            }
        }
        Ok(())
    }

    /// Rolls back tables left `Creating` and finishes tables left `Deleting` by a dead master
    /// (the operation lock is held, so no live operation is half-way).
    async fn finish_table_operations(&self, snapshot: &Snapshot) {
        for table in snapshot.tables.values() {
            let unfinished = matches!(
                table.state,
                pb::TableState::Creating | pb::TableState::Deleting
            );
            if unfinished && !snapshot.incomplete.contains(&table.id) {
                info!(table = %table.name, state = ?table.state, "finishing a table's deletion");
                if let Err(e) = self.delete_table_locked(snapshot, table).await {
                    warn!(table = %table.name, error = %e, "could not finish a table's deletion");
                }
            }
        }
    }

    /// `CreateTable`: records the table and its tablets; the next rounds assign them.
    pub async fn create_table(
        &self,
        name: &str,
        schema: tpb::Schema,
        split_keys: Vec<Vec<u8>>,
    ) -> Result<Table, Error> {
        let splits = check_split_keys(split_keys)?;
        let _one = self.ops.lock().await;
        self.exec.check_safe()?;
        let snapshot = self.gather().await?;
        if snapshot.incomplete.contains(&TableId::METADATA)
            || !snapshot
                .records
                .values()
                .filter(|r| r.table == TableId::METADATA)
                .all(|r| snapshot.is_served(r))
            || !snapshot
                .records
                .values()
                .any(|r| r.table == TableId::METADATA)
        {
            return Err(Error::new(
                Code::Unavailable,
                "METADATA is not served yet; try again shortly",
            ));
        }
        let table = self.catalog.create(name, schema).await?;
        let mut start = Bytes::new();
        let mut ends: Vec<Option<Bytes>> = splits.into_iter().map(Some).collect();
        ends.push(None);
        for end in ends {
            let record = new_tablet(table.id, fresh_tablet_id(), start.clone(), end.clone());
            self.exec.check_safe()?;
            if !self.exec.meta.compare_and_set(None, &record).await? {
                return Err(Error::new(
                    Code::Internal,
                    format!(
                        "METADATA already holds a tablet of the new table {} ending at {:?}",
                        table.id.0, end
                    ),
                ));
            }
            start = end.unwrap_or_default();
        }
        let mut ready = table.clone();
        ready.state = pb::TableState::Ready;
        let ready = self.catalog.update(&ready).await?;
        info!(table = %ready.name, id = ready.id.0, "table created");
        self.wake.notify_one();
        Ok(ready)
    }

    /// `DeleteTable`.
    pub async fn delete_table(&self, name: &str) -> Result<(), Error> {
        let _one = self.ops.lock().await;
        self.exec.check_safe()?;
        let snapshot = self.gather().await?;
        let table = self.catalog.get(name).await?;
        if snapshot.incomplete.contains(&table.id) {
            return Err(Error::new(
                Code::Unavailable,
                format!("the tablets of table {name} cannot all be read now; try again"),
            ));
        }
        self.delete_table_locked(&snapshot, &table).await
    }

    async fn delete_table_locked(&self, snapshot: &Snapshot, table: &Table) -> Result<(), Error> {
        let table = if table.state == pb::TableState::Deleting {
            table.clone()
        } else {
            let mut deleting = table.clone();
            deleting.state = pb::TableState::Deleting;
            self.catalog.update(&deleting).await?
        };
        let records: Vec<&TabletRecord> = snapshot
            .records
            .values()
            .filter(|r| r.table == table.id)
            .collect();
        for record in records {
            self.exec.check_safe()?;
            let mut deleting = record.clone();
            deleting.state = TabletState::Deleting;
            if record.state != TabletState::Deleting {
                self.exec.record(record, &deleting).await?;
            }
            if let Some(server) = &record.server
                && snapshot.servers.listed(server)
            {
                self.exec
                    .unload(snapshot, record.tablet, server, record.epoch)
                    .await?;
            }
            self.exec.meta.compare_and_delete(&deleting).await?;
            self.exec.forget_manifest(record).await?;
        }
        self.catalog.remove(&table).await?;
        info!(table = %table.name, id = table.id.0, "table deleted");
        Ok(())
    }

    /// `ModifyColumnFamilies`: checks and records the new schema, then tells every server
    /// serving the table.
    pub async fn modify_column_families(
        &self,
        name: &str,
        modifications: Vec<pb::ColumnFamilyModification>,
    ) -> Result<Table, Error> {
        let _one = self.ops.lock().await;
        self.exec.check_safe()?;
        let table = self.catalog.get(name).await?;
        let schema = apply_modifications(&table.schema, &modifications)?;
        tabula_common::schema::check_schema(&schema)?;
        tabula_common::schema::check_schema_change(&table.schema, &schema)?;
        let mut changed = table.clone();
        changed.schema = schema.clone();
        let changed = self.catalog.update(&changed).await?;
        let snapshot = self.gather().await?;
        let servers: BTreeSet<_> = snapshot
            .records
            .values()
            .filter(|r| r.table == table.id)
            .filter_map(|r| r.server.clone())
            .collect();
        for server in servers {
            let Some(addr) = snapshot.addr_of(&server) else {
                continue;
            };
            self.exec.check_safe()?;
            let mut admin = self.exec.channels.admin(&addr)?;
            admin
                .update_schema(tpb::UpdateSchemaRequest {
                    master_epoch: Some(tpb::MasterEpoch {
                        epoch: self.exec.leadership.epoch().0,
                    }),
                    table_id: table.id.0,
                    schema: Some(schema.clone()),
                })
                .await
                .map_err(Error::from)?;
        }
        Ok(changed)
    }

    /// `MoveTablet`; the tablet is pinned where it lands (see the module docs).
    pub async fn move_tablet(
        &self,
        tablet: tabula_common::TabletId,
        to: tabula_common::ServerId,
    ) -> Result<TabletRecord, Error> {
        let _one = self.ops.lock().await;
        self.exec.check_safe()?;
        let snapshot = self.gather().await?;
        let record = snapshot
            .records
            .get(&tablet)
            .ok_or_else(|| Error::new(Code::NotFound, format!("no tablet {tablet} is known")))?;
        if !snapshot.servers.live.contains_key(&to) {
            return Err(Error::new(
                Code::NotFound,
                format!("no live tablet server {to}"),
            ));
        }
        let epoch = tabula_common::Epoch(record.epoch.0 + 1);
        let moved = if snapshot.is_served(record) {
            self.exec.move_tablet(&snapshot, record, &to, epoch).await?
        } else {
            self.exec.assign(&snapshot, record, &to, epoch).await?
        };
        self.pins.lock().insert(
            moved.tablet,
            Pin {
                table: moved.table,
                epoch: moved.epoch,
            },
        );
        self.wake.notify_one();
        Ok(moved)
    }
}

/// Split keys sorted, without duplicates; `InvalidArgument` for an empty or over-long key or
/// too many keys.
fn check_split_keys(keys: Vec<Vec<u8>>) -> Result<Vec<Bytes>, Error> {
    if keys.len() > MAX_SPLIT_KEYS {
        return Err(Error::invalid_argument(format!(
            "{} split keys; at most {MAX_SPLIT_KEYS}",
            keys.len()
        )));
    }
    let mut out: Vec<Bytes> = Vec::with_capacity(keys.len());
    for key in keys {
        if key.is_empty() || key.len() > MAX_ROW_KEY {
            return Err(Error::invalid_argument(format!(
                "a split key must be 1 to {MAX_ROW_KEY} bytes, not {}",
                key.len()
            )));
        }
        out.push(Bytes::from(key));
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// `schema` with `modifications` applied; `InvalidArgument` / `NotFound` / `AlreadyExists` for
/// a modification that does not fit.
fn apply_modifications(
    schema: &tpb::Schema,
    modifications: &[pb::ColumnFamilyModification],
) -> Result<tpb::Schema, Error> {
    use pb::column_family_modification::Mod;
    let mut families = schema.families.clone();
    for m in modifications {
        let at = families.iter().position(|f| f.name == m.family);
        match (&m.r#mod, at) {
            (None, _) => {
                return Err(Error::invalid_argument(format!(
                    "the modification of family {} says nothing",
                    m.family
                )));
            }
            (Some(Mod::Create(_) | Mod::CreateFamily(_)), Some(_)) => {
                return Err(Error::new(
                    Code::AlreadyExists,
                    format!("column family {} exists", m.family),
                ));
            }
            (Some(Mod::Create(rule)), None) => families.push(tpb::ColumnFamily {
                name: m.family.clone(),
                gc_rule: Some(rule.clone()),
                ..Default::default()
            }),
            (Some(Mod::CreateFamily(family)), None) => {
                if !(family.name.is_empty() || family.name == m.family) {
                    return Err(Error::invalid_argument(format!(
                        "the family created as {} is named {}",
                        m.family, family.name
                    )));
                }
                families.push(tpb::ColumnFamily {
                    name: m.family.clone(),
                    ..family.clone()
                });
            }
            (Some(Mod::Update(_) | Mod::Drop(_)), None) => {
                return Err(Error::new(
                    Code::NotFound,
                    format!("no column family {}", m.family),
                ));
            }
            (Some(Mod::Update(rule)), Some(i)) => families[i].gc_rule = Some(rule.clone()),
            (Some(Mod::Drop(_)), Some(i)) => {
                families.remove(i);
            }
        }
    }
    Ok(tpb::Schema {
        families,
        ..schema.clone()
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_pin_stands_while_metadata_keeps_the_moved_tablets_epoch() {
        let record = |table: u64, tablet: u64, epoch: u64| {
            let mut r = new_tablet(TableId(table), TabletId(tablet), Bytes::new(), None);
            r.epoch = Epoch(epoch);
            r
        };
        let pin = |table: u64, epoch: u64| Pin {
            table: TableId(table),
            epoch: Epoch(epoch),
        };
        let mut snapshot = Snapshot::default();
        // 10 as moved; 11 reassigned since (a failure); 12 replaced (split or merge);
        // 13 of a table whose records could not all be read this round.
        for r in [record(2, 10, 2), record(2, 11, 3)] {
            snapshot.records.insert(r.tablet, r);
        }
        snapshot.incomplete.insert(TableId(3));
        let mut pins: BTreeMap<TabletId, Pin> = [
            (TabletId(10), pin(2, 2)),
            (TabletId(11), pin(2, 2)),
            (TabletId(12), pin(2, 1)),
            (TabletId(13), pin(3, 4)),
        ]
        .into();
        let standing = standing_pins(&mut pins, &snapshot);
        assert_eq!(standing, [TabletId(10), TabletId(13)].into());
        assert_eq!(pins.keys().copied().collect::<BTreeSet<_>>(), standing);
        // Once its table is read again, a tablet it no longer holds loses its pin.
        snapshot.incomplete.clear();
        assert_eq!(standing_pins(&mut pins, &snapshot), [TabletId(10)].into());
    }

    #[test]
    fn split_keys_are_sorted_deduplicated_and_checked() {
        let keys = check_split_keys(vec![b"m".to_vec(), b"c".to_vec(), b"m".to_vec()]).unwrap();
        assert_eq!(
            keys,
            vec![Bytes::from_static(b"c"), Bytes::from_static(b"m")]
        );
        assert_eq!(
            check_split_keys(vec![Vec::new()]).unwrap_err().code,
            Code::InvalidArgument
        );
        assert_eq!(
            check_split_keys(vec![vec![b'x'; MAX_ROW_KEY + 1]])
                .unwrap_err()
                .code,
            Code::InvalidArgument
        );
    }

    #[test]
    fn family_modifications() {
        use pb::column_family_modification::Mod;
        let rule = |n| tpb::GcRule {
            rule: Some(tpb::gc_rule::Rule::MaxNumVersions(n)),
        };
        let schema = tpb::Schema {
            families: vec![tpb::ColumnFamily {
                name: "a".into(),
                gc_rule: None,
                ..Default::default()
            }],
            granularity: tpb::TimestampGranularity::Millis as i32,
        };
        let m = |family: &str, m: Mod| pb::ColumnFamilyModification {
            family: family.into(),
            r#mod: Some(m),
        };
        let out = apply_modifications(
            &schema,
            &[m("b", Mod::Create(rule(2))), m("a", Mod::Update(rule(1)))],
        )
        .unwrap();
        assert_eq!(out.families.len(), 2);
        assert_eq!(out.families[0].gc_rule, Some(rule(1)));
        let dropped = apply_modifications(&out, &[m("a", Mod::Drop(true))]).unwrap();
        assert_eq!(dropped.families.len(), 1);
        assert_eq!(dropped.families[0].name, "b");
        let e = apply_modifications(&schema, &[m("a", Mod::Create(rule(1)))]).unwrap_err();
        assert_eq!(e.code, Code::AlreadyExists);
        let e = apply_modifications(&schema, &[m("z", Mod::Drop(true))]).unwrap_err();
        assert_eq!(e.code, Code::NotFound);
        // A typed family keeps its type; the table keeps its granularity.
        let sum = tpb::ColumnFamily {
            gc_rule: Some(rule(1)),
            value_type: tpb::ValueType::SumInt64 as i32,
            ..Default::default()
        };
        let typed =
            apply_modifications(&schema, &[m("s", Mod::CreateFamily(sum.clone()))]).unwrap();
        assert_eq!(typed.families[1].name, "s");
        assert_eq!(typed.families[1].value_type(), tpb::ValueType::SumInt64);
        assert_eq!(typed.granularity(), tpb::TimestampGranularity::Millis);
        let updated = apply_modifications(&typed, &[m("s", Mod::Update(rule(3)))]).unwrap();
        assert_eq!(updated.families[1].value_type(), tpb::ValueType::SumInt64);
        let misnamed = tpb::ColumnFamily {
            name: "other".into(),
            ..sum
        };
        let e = apply_modifications(&schema, &[m("s", Mod::CreateFamily(misnamed))]).unwrap_err();
        assert_eq!(e.code, Code::InvalidArgument);
    }
}
