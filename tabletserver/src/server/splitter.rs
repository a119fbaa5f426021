//! Automatic splits: every `interval`, while the gate is open, each served tablet whose
//! approximate size has passed the split threshold is split at its middle row through the same
//! path as `SplitTablet` (`TabletAdminService::split_tablet`), into two fresh child tablet ids
//! at the parent's epoch + 1. The root tablet (`TableId::ROOT`) never splits.
//!
//! Each completed split is reported as a `SplitEvent` to the optional listener (a bounded
//! channel; a full or closed one drops the event with a log line, it never holds the splitter
//! back). Until the master issue lands, nobody records the split anywhere but this server's
//! registry and the storage root: the master's listener is meant to commit it to METADATA and
//! tell the master (DESIGN.md section 6).
//!
//! A tablet with no middle row (one huge row, or rows all in one block) is remembered at its
//! size and tried again only once its size changes, so it never loops.
//!
//! Reading order: `pick` (pure), then `Splitter::run`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tabula_common::{Code, Epoch, Error, StorageRoot, TableId, TabletId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::admin::{SplitPlan, TabletAdminService};
use super::gate::Gate;
use super::registry::{Registry, ServedTablet};
use crate::engine::manifest::Manifest;

/// The default split threshold.
pub const DEFAULT_SPLIT_THRESHOLD_BYTES: u64 = 1 << 30;
/// The default time between two split checks.
pub const DEFAULT_SPLIT_CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// How many random ids are tried for a child before the split is put off to the next check.
const ID_ATTEMPTS: usize = 16;

/// Where a served tablet is, what rows it holds and at which epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TabletDescriptor {
    /// The table.
    pub table: TableId,
    /// The tablet.
    pub id: TabletId,
    /// First row (inclusive); empty is the table's beginning.
    pub start_row: Bytes,
    /// Row after the last (exclusive); `None` is the table's end.
    pub end_row: Option<Bytes>,
    /// The tablet epoch it is served at.
    pub epoch: Epoch,
}

impl TabletDescriptor {
    /// The descriptor of a served tablet.
    pub fn of(served: &ServedTablet) -> TabletDescriptor {
        let m = served.tablet.manifest();
        TabletDescriptor {
            table: served.table,
            id: served.id(),
            start_row: m.start_row,
            end_row: m.end_row,
            epoch: served.epoch,
        }
    }
}

/// An automatic split this server made: `parent` is no longer served; `left` and `right` are,
/// at the parent's epoch + 1. The master issue commits it to METADATA and notifies the master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitEvent {
    /// The table.
    pub table: TableId,
    /// The tablet that was split.
    pub parent: TabletId,
    /// The child with the rows before the split row.
    pub left: TabletDescriptor,
    /// The child with the split row and the rows after it.
    pub right: TabletDescriptor,
}

/// When the splitter splits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitterOptions {
    /// A tablet whose approximate size reaches this many bytes is split.
    pub threshold_bytes: u64,
    /// Time between two checks.
    pub interval: Duration,
}

/// One served tablet as the splitter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Its table.
    pub table: TableId,
    /// Its id.
    pub id: TabletId,
    /// Its approximate size.
    pub size_bytes: u64,
}

/// The tablets to split now: at or past `threshold_bytes`, not the root tablet, and not known
/// to have no middle row at exactly this size (`unsplittable`: id -> size when it had none).
pub fn pick(
    tablets: &[Candidate],
    threshold_bytes: u64,
    unsplittable: &HashMap<TabletId, u64>,
) -> Vec<TabletId> {
    tablets
        .iter()
        .filter(|t| t.table != TableId::ROOT)
        .filter(|t| t.size_bytes >= threshold_bytes)
        .filter(|t| unsplittable.get(&t.id) != Some(&t.size_bytes))
        .map(|t| t.id)
        .collect()
}

/// The task; see the module documentation.
pub(crate) struct Splitter {
    pub(crate) admin: Arc<TabletAdminService>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) gate: Arc<Gate>,
    pub(crate) storage: Arc<dyn StorageRoot>,
    pub(crate) options: SplitterOptions,
    pub(crate) listener: Option<mpsc::Sender<SplitEvent>>,
    /// Checks finished, for tests waiting for the splitter to have looked.
    pub(crate) passes: Arc<AtomicU64>,
}

impl Splitter {
    /// Checks every `interval` until `cancel`.
    pub(crate) async fn run(self, cancel: CancellationToken) {
        let mut unsplittable: HashMap<TabletId, u64> = HashMap::new();
        let mut tick = tokio::time::interval(self.options.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick completes at once; a check right at start finds nothing to do.
        tick.tick().await;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            if self.gate.check_serving().is_ok() {
                self.check(&mut unsplittable, &cancel).await;
            }
            self.passes.fetch_add(1, Ordering::Release);
        }
    }

    /// One check: splits every tablet `pick` names, one after the other.
    async fn check(&self, unsplittable: &mut HashMap<TabletId, u64>, cancel: &CancellationToken) {
        // Only ids and sizes are kept: holding a served tablet would hold back an unload.
        let tablets: Vec<Candidate> = self
            .registry
            .list()
            .iter()
            .map(|t| Candidate {
                table: t.table,
                id: t.id(),
                size_bytes: t.tablet.approximate_size_bytes(),
            })
            .collect();
        unsplittable.retain(|id, _| tablets.iter().any(|t| t.id == *id));
        for id in pick(&tablets, self.options.threshold_bytes, unsplittable) {
            if cancel.is_cancelled() || self.gate.check_serving().is_err() {
                return;
            }
            let size = tablets
                .iter()
                .find(|t| t.id == id)
                .map_or(0, |t| t.size_bytes);
            match self.split(id).await {
                Ok(()) => {}
                Err(e) if e.code == Code::FailedPrecondition => {
                    debug!(tablet_id = %id, size_bytes = size, reason = %e.message, "tablet past the split threshold has no split row");
                    unsplittable.insert(id, size);
                }
                Err(e) => {
                    warn!(tablet_id = %id, size_bytes = size, error = %e, "automatic split failed; retried at the next check");
                }
            }
        }
    }

    /// Splits `id` at its middle row and reports it.
    async fn split(&self, id: TabletId) -> Result<(), Error> {
        let Some(parent) = self.registry.get(id) else {
            return Ok(());
        };
        let (table, epoch) = (parent.table, parent.epoch);
        let size = parent.tablet.approximate_size_bytes();
        drop(parent);
        let (left, right) = self.fresh_ids().await?;
        let (l, r) = self
            .admin
            .split_tablet(SplitPlan {
                parent: id,
                tablet_epoch: epoch,
                left,
                right,
                child_epoch: Epoch(epoch.0 + 1),
                at: None,
            })
            .await?;
        let event = SplitEvent {
            table,
            parent: id,
            left: TabletDescriptor::of(&l),
            right: TabletDescriptor::of(&r),
        };
        drop((l, r));
        info!(
            table = table.0,
            tablet_id = %id,
            size_bytes = size,
            threshold_bytes = self.options.threshold_bytes,
            left = %left,
            right = %right,
            at = %event.right.start_row.escape_ascii(),
            "tablet split automatically"
        );
        if let Some(listener) = &self.listener {
            match listener.try_send(event) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(e)) => {
                    warn!(tablet_id = %e.parent, "split listener is full; split event dropped");
                }
                Err(mpsc::error::TrySendError::Closed(e)) => {
                    debug!(tablet_id = %e.parent, "split listener is gone; split event dropped");
                }
            }
        }
        Ok(())
    }

    /// Two distinct random non-zero tablet ids, neither served here nor with a directory under
    /// `tablets/` on the storage root.
    async fn fresh_ids(&self) -> Result<(TabletId, TabletId), Error> {
        let storage = self.storage.clone();
        let registry = self.registry.clone();
        tokio::task::spawn_blocking(move || {
            let mut ids = Vec::with_capacity(2);
            for _ in 0..ID_ATTEMPTS {
                let id = TabletId(rand::random::<u64>());
                if id.0 == 0 || ids.contains(&id) || registry.get(id).is_some() {
                    continue;
                }
                let manifest = Manifest::path(id);
                let dir = manifest.rsplit_once('/').map_or(&manifest[..], |(d, _)| d);
                let taken = storage
                    .exists(dir)
                    .map_err(|e| Error::internal(format!("checking {dir}: {e}")))?;
                if !taken {
                    ids.push(id);
                }
                if let [left, right] = ids[..] {
                    return Ok((left, right));
                }
            }
            Err(Error::new(
                Code::Unavailable,
                "no unused tablet ids found for a split",
            ))
        })
        .await
        .map_err(|e| Error::internal(format!("choosing child ids: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(table: u64, id: u64, size_bytes: u64) -> Candidate {
        Candidate {
            table: TableId(table),
            id: TabletId(id),
            size_bytes,
        }
    }

    #[test]
    fn picks_big_tablets_but_never_the_root_or_a_known_unsplittable_size() {
        let tablets = [
            c(0, 1, 5_000),
            c(1, 2, 5_000),
            c(2, 3, 999),
            c(2, 4, 1_000),
            c(3, 5, 7_000),
            c(3, 6, 8_000),
        ];
        let unsplittable = HashMap::from([(TabletId(5), 7_000), (TabletId(6), 7_500)]);
        assert_eq!(
            pick(&tablets, 1_000, &unsplittable),
            vec![TabletId(2), TabletId(4), TabletId(6)]
        );
        assert!(pick(&tablets, u64::MAX, &HashMap::new()).is_empty());
    }
}
