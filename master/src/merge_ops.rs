//! `MergeTablets(table, row)`: the tablet holding `row` merges with its right neighbour.
//!
//! Under the operation lock, on a fresh picture: both records must exist, be adjacent and be
//! served at their epochs or unassigned ([`merge_targets`], pure). Then each served one is
//! recorded `Moving` (compare-and-set) and unloaded from its server (which flushes it), and
//! one live server (the left's, or any) is told `TabletAdmin.MergeTablets` into a fresh id:
//! its engine writes the merged manifest, naming both tablets' SSTables, and marks both
//! tablets as replaced by it — the left's mark is the commit point, on the storage root.
//! Last, METADATA: the right's row (keyed by the merged end row) is replaced by the merged
//! record (`Unassigned`, epoch = the larger epoch + 1, `created`; the planner assigns it),
//! then the left's row is deleted.
//!
//! Between the unloads and the merge, the master records a merge intent in the lock service
//! (`merge_intents`); every round settles the intents first and never assigns a tablet one
//! names: the merge is repeated (idempotent) until it succeeds and is recorded, or rolled back
//! when the tablet server refuses it. So a failure between the tablet server's two marks (the
//! left's is the commit point) can no longer let the unmarked right tablet be served again.
//! A master dying before the intent leaves `Moving` records that the next round assigns.
//! Merges committed before intents existed are still finished when `LoadTablet` answers
//! `split_into` with the one merged tablet ([`finish_merge`]).

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use tabula_client::meta::{TabletRecord, TabletState};
use tabula_common::error::MERGE_NEEDS_MAJOR_COMPACTION;
use tabula_common::{Code, Epoch, Error, TableId, TabletId};
use tabula_proto::tabula::master::v1 as pb;
use tabula_proto::tabula::tablet::v1 as tpb;
use tracing::{info, warn};

use crate::active::Active;
use crate::bootstrap::fresh_tablet_id;
use crate::execute::Executor;
use crate::merge_intents::{self, MergeIntent, StoredIntent};
use crate::splits::Child;
use crate::view::Snapshot;

/// How long a tablet server has to merge two tablets' manifests.
const MERGE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a merge refused for want of compaction waits for both tablets to be served again.
const SERVED_AGAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// How often it looks.
const SERVED_AGAIN_POLL: Duration = Duration::from_millis(200);

/// The two records `MergeTablets(table, row)` merges: the tablet of the table named `table`
/// holding `row`, and its right neighbour. Checks everything that can be checked without a
/// tablet server.
pub fn merge_targets<'a>(
    snapshot: &'a Snapshot,
    table: &str,
    row: &[u8],
) -> Result<(&'a TabletRecord, &'a TabletRecord), Error> {
    let t = snapshot
        .tables
        .values()
        .find(|t| t.name == table)
        .ok_or_else(|| Error::new(Code::NotFound, format!("no table named {table}")))?;
    if t.state != pb::TableState::Ready {
        return Err(Error::new(
            Code::FailedPrecondition,
            format!("table {table} is {:?}, not ready", t.state),
        ));
    }
    if t.id == TableId::ROOT || t.id == TableId::METADATA {
        return Err(Error::new(
            Code::FailedPrecondition,
            "the system tablets are not merged",
        ));
    }
    if snapshot.incomplete.contains(&t.id) {
        return Err(Error::new(
            Code::Unavailable,
            format!("the tablets of table {table} cannot all be read now; try again"),
        ));
    }
    let of_table = || snapshot.records.values().filter(|r| r.table == t.id);
    let left = of_table().find(|r| r.contains(row)).ok_or_else(|| {
        Error::new(
            Code::Unavailable,
            format!(
                "no tablet of table {table} holds row {:?} now; try again",
                row.escape_ascii().to_string()
            ),
        )
    })?;
    let Some(end) = &left.end_row else {
        return Err(Error::new(
            Code::FailedPrecondition,
            format!(
                "tablet {} is the last of table {table}: it has no right neighbour to merge with",
                left.tablet
            ),
        ));
    };
    let right = of_table().find(|r| r.start_row == end).ok_or_else(|| {
        Error::new(
            Code::Unavailable,
            format!(
                "no tablet of table {table} starts where tablet {} ends now; try again",
                left.tablet
            ),
        )
    })?;
    for r in [left, right] {
        let ready = snapshot.is_served(r) || r.state == TabletState::Unassigned;
        if !ready {
            return Err(Error::new(
                Code::Unavailable,
                format!(
                    "tablet {} is {:?} and not served at epoch {} now; try again",
                    r.tablet, r.state, r.epoch.0
                ),
            ));
        }
    }
    Ok((left, right))
}

/// The merged tablet's METADATA record: keyed like the right's row, `Unassigned` (the planner
/// assigns it), at an epoch past both tablets'.
pub fn merged_record(
    left: &TabletRecord,
    right: &TabletRecord,
    merged: TabletId,
    master_epoch: Epoch,
) -> TabletRecord {
    TabletRecord {
        table: right.table,
        tablet: merged,
        start_row: left.start_row.clone(),
        end_row: right.end_row.clone(),
        epoch: Epoch(left.epoch.0.max(right.epoch.0) + 1),
        state: TabletState::Unassigned,
        server: None,
        server_addr: String::new(),
        master_epoch,
        manifest_path: crate::bootstrap::manifest_path(merged),
        split_parent: None,
        split_sibling: None,
        // The merge wrote its manifest.
        created: true,
    }
}

impl Active {
    /// `MergeTablets`: see the module documentation. Answers the merged tablet's record.
    ///
    /// A merge refused because an SSTable only one of the two tablets names still holds rows
    /// of the other's range (split siblings, one compacted since the split) is tried once
    /// more after both tablets were major-compacted.
    pub async fn merge_tablets(&self, table: &str, row: Bytes) -> Result<TabletRecord, Error> {
        match self.merge_once(table, &row).await {
            Err(e)
                if e.code == Code::FailedPrecondition
                    && e.message.contains(MERGE_NEEDS_MAJOR_COMPACTION) =>
            {
                info!(table, error = %e, "merge refused until both tablets are major-compacted");
                self.compact_merge_pair(table, &row).await?;
                self.merge_once(table, &row).await
            }
            other => other,
        }
    }

    /// Waits (the refused merge was rolled back; rounds assign both tablets again) until the
    /// two tablets `merge_targets` names are served, then major-compacts both.
    async fn compact_merge_pair(&self, table: &str, row: &[u8]) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + SERVED_AGAIN_TIMEOUT;
        loop {
            self.wake();
            self.exec().check_safe()?;
            let snapshot = self.gather().await?;
            if let Ok((left, right)) = merge_targets(&snapshot, table, row)
                && snapshot.is_served(left)
                && snapshot.is_served(right)
            {
                for r in [left, right] {
                    self.compact_tablet(&snapshot, r, true).await?;
                }
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::new(
                    Code::Unavailable,
                    format!(
                        "the tablets to merge in table {table} were not served again within \
                         {SERVED_AGAIN_TIMEOUT:?} to be compacted; try again"
                    ),
                ));
            }
            tokio::time::sleep(SERVED_AGAIN_POLL).await;
        }
    }

    async fn merge_once(&self, table: &str, row: &Bytes) -> Result<TabletRecord, Error> {
        let _one = self.lock_ops().await;
        self.exec().check_safe()?;
        let snapshot = self.gather().await?;
        let (left, right) = merge_targets(&snapshot, table, row)?;
        let answer = self.merge_locked(&snapshot, left, right).await;
        // Whatever happened, the next round assigns what is not served.
        self.wake();
        answer
    }

    async fn merge_locked(
        &self,
        snapshot: &Snapshot,
        left: &TabletRecord,
        right: &TabletRecord,
    ) -> Result<TabletRecord, Error> {
        let exec = self.exec();
        let mut current = Vec::with_capacity(2);
        for r in [left, right] {
            if snapshot.is_served(r) {
                let mut moving = r.clone();
                moving.state = TabletState::Moving;
                moving.master_epoch = exec.leadership.epoch();
                exec.record(r, &moving).await?;
                current.push(moving);
            } else {
                current.push(r.clone());
            }
        }
        for r in [left, right] {
            if let (true, Some(server)) = (snapshot.is_served(r), &r.server) {
                exec.unload(snapshot, r.tablet, server, r.epoch).await?;
            }
        }
        let merged_id = loop {
            let id = fresh_tablet_id();
            if !snapshot.records.contains_key(&id) {
                break id;
            }
        };
        let server = left
            .server
            .clone()
            .filter(|s| snapshot.servers.live.contains_key(s))
            .or_else(|| snapshot.servers.live.keys().next().cloned())
            .ok_or_else(|| Error::new(Code::Unavailable, "no live tablet server to merge on"))?;
        let addr = snapshot.addr_of(&server).ok_or_else(|| {
            Error::new(Code::Unavailable, format!("tablet server {server} is gone"))
        })?;
        let merged = merged_record(left, right, merged_id, exec.leadership.epoch());
        exec.check_safe()?;
        let stored = merge_intents::write(
            &exec.lock,
            &MergeIntent {
                table: merged.table,
                left: left.tablet,
                right: right.tablet,
                merged: merged_id,
                merged_epoch: merged.epoch,
            },
        )
        .await?;
        let parts = MergeParts {
            left: Some(current[0].clone()),
            right: Some(current[1].clone()),
            merged_recorded: false,
        };
        let merged = settle(exec, &stored, parts, &addr).await?.ok_or_else(|| {
            Error::internal(format!(
                "the merge into tablet {merged_id} was recorded already"
            ))
        })?;
        info!(
            left = %left.tablet,
            right = %right.tablet,
            merged = %merged_id,
            %server,
            "tablets merged on request"
        );
        Ok(merged)
    }

    /// Settles every merge intent (see the module documentation); answers the tablets of the
    /// intents still unsettled (the planner must leave them alone) and how many were settled.
    /// An error reading the intents is the round's error: nothing can be planned safely.
    pub(crate) async fn settle_merges(
        &self,
        snapshot: &Snapshot,
    ) -> Result<(BTreeSet<TabletId>, usize), Error> {
        let exec = self.exec();
        let mut pending = BTreeSet::new();
        let mut settled = 0;
        for stored in merge_intents::list(&exec.lock).await? {
            let intent = stored.intent;
            let parts = MergeParts {
                left: snapshot.records.get(&intent.left).cloned(),
                right: snapshot.records.get(&intent.right).cloned(),
                merged_recorded: snapshot.records.contains_key(&intent.merged),
            };
            let addr = snapshot
                .servers
                .live
                .keys()
                .find_map(|s| snapshot.addr_of(s));
            let result = match addr {
                Some(addr) => settle(exec, &stored, parts, &addr).await.map(|_| ()),
                None => Err(Error::new(
                    Code::Unavailable,
                    "no live tablet server to finish the merge on",
                )),
            };
            match result {
                Ok(()) => settled += 1,
                Err(e) if e.code == Code::FailedPrecondition => {
                    // Rolled back: the tablets are assigned again.
                    warn!(?intent, error = %e, "a merge in flight was refused and rolled back");
                    settled += 1;
                }
                Err(e) => {
                    warn!(?intent, error = %e, "a merge in flight is not settled yet");
                    pending.extend(intent.tablets());
                }
            }
        }
        Ok((pending, settled))
    }
}

/// The METADATA records of a merge in flight, as stored now.
struct MergeParts {
    /// The left tablet's record, unless already deleted.
    left: Option<TabletRecord>,
    /// The right tablet's record, unless already replaced by the merged one.
    right: Option<TabletRecord>,
    /// Whether the merged tablet's record is in METADATA.
    merged_recorded: bool,
}

/// Settles `stored`: the merge on the server at `addr` (skipped once the merged record is in
/// METADATA), then METADATA, then the intent goes; answers the merged record (`None`: an
/// earlier attempt had recorded it already). A refusal (`FailedPrecondition` while this
/// master is still safe, so not a stale epoch) rolls the merge back: the intent goes and the
/// refusal is answered. Any other error keeps the intent for the next round.
async fn settle(
    exec: &Executor,
    stored: &StoredIntent,
    parts: MergeParts,
    addr: &str,
) -> Result<Option<TabletRecord>, Error> {
    let intent = stored.intent;
    let (left, right) = match (&parts.left, &parts.right) {
        (Some(l), Some(r)) => (l, r),
        (None, None) | (None, Some(_)) if parts.merged_recorded => {
            // Recorded by an earlier attempt; only the intent is left.
            exec.forget_replaced(&[intent.left, intent.right]).await;
            merge_intents::remove(&exec.lock, stored).await?;
            return Ok(None);
        }
        (Some(l), None) if parts.merged_recorded => {
            delete_left(exec, l).await?;
            exec.forget_replaced(&[intent.left, intent.right]).await;
            merge_intents::remove(&exec.lock, stored).await?;
            return Ok(None);
        }
        _ => {
            return Err(Error::internal(format!(
                "merge intent {intent:?}: the records of its tablets are missing"
            )));
        }
    };
    let mut merged = merged_record(left, right, intent.merged, exec.leadership.epoch());
    merged.epoch = intent.merged_epoch;
    if !parts.merged_recorded {
        if let Err(e) = ask_merge(exec, addr, intent.left, intent.right, &merged).await {
            if e.code == Code::FailedPrecondition && exec.check_safe().is_ok() {
                merge_intents::remove(&exec.lock, stored).await?;
            }
            return Err(e);
        }
        record_merge(exec, left, right, &merged).await?;
    } else {
        delete_left(exec, left).await?;
        exec.forget_replaced(&[intent.left, intent.right]).await;
    }
    merge_intents::remove(&exec.lock, stored).await?;
    Ok(Some(merged))
}

/// Sends `TabletAdmin.MergeTablets` to the server at `addr`.
async fn ask_merge(
    exec: &Executor,
    addr: &str,
    left: TabletId,
    right: TabletId,
    merged: &TabletRecord,
) -> Result<(), Error> {
    exec.check_safe()?;
    let mut call = tonic::Request::new(tpb::MergeTabletsRequest {
        master_epoch: Some(tpb::MasterEpoch {
            epoch: exec.leadership.epoch().0,
        }),
        table_id: merged.table.0,
        left_tablet_id: left.0,
        right_tablet_id: right.0,
        merged_tablet_id: merged.tablet.0,
        merged_epoch: merged.epoch.0,
    });
    call.set_timeout(MERGE_TIMEOUT);
    let mut admin = exec.channels.admin(addr)?;
    admin.merge_tablets(call).await.map_err(Error::from)?;
    Ok(())
}

/// METADATA after a committed merge: the right's row (`right`, as stored now) becomes the
/// merged record, then the left's row (`left`, as stored now) goes. Each step is a
/// compare-and-set, so a stale picture changes nothing.
async fn record_merge(
    exec: &Executor,
    left: &TabletRecord,
    right: &TabletRecord,
    merged: &TabletRecord,
) -> Result<(), Error> {
    exec.record(right, merged).await?;
    delete_left(exec, left).await?;
    exec.forget_replaced(&[left.tablet, right.tablet]).await;
    info!(
        left = %left.tablet,
        right = %right.tablet,
        merged = %merged.tablet,
        table = merged.table.0,
        "merge recorded in METADATA"
    );
    Ok(())
}

async fn delete_left(exec: &Executor, left: &TabletRecord) -> Result<(), Error> {
    exec.check_safe()?;
    if !exec.meta.compare_and_delete(left).await? {
        return Err(Error::new(
            Code::Aborted,
            format!(
                "the record of tablet {} changed since it was read",
                left.tablet
            ),
        ));
    }
    Ok(())
}

/// Finishes a merge a `LoadTablet` of `loaded` (recorded as `loaded` now, at `addr`'s
/// server) found committed: the tablet was replaced by `merged`. Its partner is found in
/// `snapshot` by adjacency; the server's marks are completed by the same idempotent
/// `MergeTablets`, then METADATA as after a merge (a step already done is skipped).
pub async fn finish_merge(
    exec: &Executor,
    snapshot: &Snapshot,
    loaded: &TabletRecord,
    merged: &Child,
    addr: &str,
) -> Result<(), Error> {
    let same_table = |r: &&TabletRecord| r.table == loaded.table && r.tablet != loaded.tablet;
    let is_left = loaded.start_row == merged.start_row && loaded.end_row != merged.end_row;
    let is_right = loaded.end_row == merged.end_row && loaded.start_row != merged.start_row;
    let (left, right) = if is_left {
        let partner = snapshot
            .records
            .values()
            .filter(same_table)
            .find(|r| Some(&r.start_row) == loaded.end_row.as_ref() && r.end_row == merged.end_row)
            .cloned();
        (Some(loaded.clone()), partner)
    } else if is_right {
        let partner = snapshot
            .records
            .values()
            .filter(same_table)
            .find(|r| {
                r.end_row.as_ref() == Some(&loaded.start_row) && r.start_row == merged.start_row
            })
            .cloned();
        (partner, Some(loaded.clone()))
    } else {
        return Err(Error::new(
            Code::FailedPrecondition,
            format!(
                "tablet {} was replaced by tablet {}, whose rows do not start or end where \
                 its rows do",
                loaded.tablet, merged.tablet
            ),
        ));
    };
    let epochs = [&left, &right]
        .iter()
        .filter_map(|r| r.as_ref().map(|r| r.epoch.0))
        .max()
        .unwrap_or(0);
    let record = TabletRecord {
        table: loaded.table,
        tablet: merged.tablet,
        start_row: merged.start_row.clone(),
        end_row: merged.end_row.clone(),
        epoch: Epoch(epochs.max(merged.epoch.0) + 1),
        state: TabletState::Unassigned,
        server: None,
        server_addr: String::new(),
        master_epoch: exec.leadership.epoch(),
        manifest_path: crate::bootstrap::manifest_path(merged.tablet),
        split_parent: None,
        split_sibling: None,
        created: true,
    };
    if let (Some(l), Some(r)) = (&left, &right) {
        let partner = if is_left { r } else { l };
        if snapshot
            .servers
            .live
            .values()
            .any(|s| s.tablets.iter().any(|t| t.tablet == partner.tablet))
        {
            // Marking it from here would be undone by its server's next manifest store.
            return Err(Error::new(
                Code::FailedPrecondition,
                format!(
                    "tablet {} was merged into {} but its partner {} is served: the merge \
                     cannot be finished (see merge_ops, known gap)",
                    loaded.tablet, merged.tablet, partner.tablet
                ),
            ));
        }
        ask_merge(exec, addr, l.tablet, r.tablet, &record).await?;
    }
    if let Some(r) = &right {
        exec.record(r, &record).await?;
    }
    if let Some(l) = &left {
        delete_left(exec, l).await?;
    }
    let replaced: Vec<TabletId> = [&left, &right]
        .into_iter()
        .filter_map(|r| r.as_ref().map(|r| r.tablet))
        .collect();
    exec.forget_replaced(&replaced).await;
    info!(
        tablet = %loaded.tablet,
        merged = %merged.tablet,
        table = loaded.table.0,
        "a merge found committed was recorded in METADATA"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tabula_common::ServerId;

    use super::*;
    use crate::bootstrap::new_tablet;
    use crate::plan::{ServedTablet, ServerView};
    use crate::tables::Table;

    const T: TableId = TableId(7);

    fn serve(r: &mut TabletRecord, snapshot: &mut Snapshot) {
        let server = ServerId("ts".into());
        r.state = TabletState::Assigned;
        r.server = Some(server.clone());
        r.epoch = Epoch(3);
        let view = snapshot
            .servers
            .live
            .entry(server.clone())
            .or_insert_with(|| ServerView {
                id: server,
                addr: "127.0.0.1:1".into(),
                tablets: vec![],
            });
        view.tablets.push(ServedTablet {
            tablet: r.tablet,
            table: r.table,
            epoch: r.epoch,
            size_bytes: 0,
        });
    }

    /// Table "t" in three tablets `["", "g")` (served), `["g", "p")` (unassigned) and
    /// `["p", ∞)` (assigned to a server that does not serve it).
    fn snapshot() -> Snapshot {
        let mut s = Snapshot::default();
        s.tables.insert(
            T,
            Table {
                name: "t".into(),
                id: T,
                schema: tpb::Schema::default(),
                state: pb::TableState::Ready,
                generation: 1,
            },
        );
        let b = |x: &'static [u8]| Bytes::from_static(x);
        let mut a = new_tablet(T, TabletId(10), Bytes::new(), Some(b(b"g")));
        serve(&mut a, &mut s);
        let m = new_tablet(T, TabletId(11), b(b"g"), Some(b(b"p")));
        let mut z = new_tablet(T, TabletId(12), b(b"p"), None);
        z.state = TabletState::Assigned;
        z.server = Some(ServerId("gone".into()));
        for r in [a, m, z] {
            s.records.insert(r.tablet, r);
        }
        s
    }

    #[test]
    fn the_tablet_holding_the_row_merges_with_its_right_neighbour() {
        let s = snapshot();
        let (l, r) = merge_targets(&s, "t", b"c").unwrap();
        assert_eq!((l.tablet, r.tablet), (TabletId(10), TabletId(11)));
        let merged = merged_record(l, r, TabletId(20), Epoch(9));
        assert_eq!(merged.meta_key(), r.meta_key(), "it takes the right's row");
        assert_eq!(merged.start_row, Bytes::new());
        assert_eq!(merged.epoch, Epoch(4));
        assert_eq!(merged.state, TabletState::Unassigned);
        assert!(merged.created);
    }

    #[test]
    fn refusals_carry_the_right_codes() {
        let s = snapshot();
        let code = |table: &str, row: &[u8]| merge_targets(&s, table, row).unwrap_err().code;
        assert_eq!(code("nope", b"a"), Code::NotFound);
        // The last tablet has no right neighbour.
        assert_eq!(code("t", b"q"), Code::FailedPrecondition);
        // The right neighbour is assigned but not served.
        assert_eq!(code("t", b"h"), Code::Unavailable);
        let mut incomplete = snapshot();
        incomplete.incomplete.insert(T);
        assert_eq!(
            merge_targets(&incomplete, "t", b"c").unwrap_err().code,
            Code::Unavailable
        );
    }
}
