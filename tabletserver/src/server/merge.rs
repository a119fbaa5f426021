//! `MergeTablets`: the master merges two adjacent tablets that no server serves (it unloaded
//! both; unloading flushes) into one new tablet. The engine does the work
//! (`Engine::merge_tablets`: the merged manifest names both tablets' SSTables, then both are
//! marked as replaced by it); this is the command around it: the master epoch is checked
//! first, the merge runs one at a time with the other lifecycle commands (so no load of
//! either tablet races it), it is refused while this server serves either tablet
//! (`FailedPrecondition`: unload first), and it runs on the blocking pool. Idempotent: a retry
//! after any failure finishes the merge.

use std::sync::Arc;

use tabula_common::{Code, Epoch, Error, TabletId};
use tabula_proto::tabula::tablet::v1 as pb;
use tracing::info;

use super::gate::Gate;
use super::registry::Registry;
use crate::engine::Engine;

/// What `MergeTablets` needs of the tablet server.
#[derive(Debug, Clone, Copy)]
pub struct MergeParts<'a> {
    /// The engine the manifests are merged by.
    pub engine: &'a Arc<Engine>,
    /// The served tablets (neither tablet may be among them).
    pub registry: &'a Registry,
    /// Master-epoch fencing and the serving check.
    pub gate: &'a Gate,
    /// The lifecycle commands' lock.
    pub lifecycle: &'a tokio::sync::Mutex<()>,
}

/// `MergeTablets`: see the module documentation. Answers the merged tablet's descriptor at
/// the request's `merged_epoch`.
pub async fn merge_tablets(
    parts: MergeParts<'_>,
    req: pb::MergeTabletsRequest,
) -> Result<pb::MergeTabletsResponse, Error> {
    let epoch = req.master_epoch.ok_or_else(|| {
        Error::invalid_argument("a lifecycle command must carry the master epoch")
    })?;
    parts.gate.accept_master_epoch(Epoch(epoch.epoch))?;
    let left = TabletId(req.left_tablet_id);
    let right = TabletId(req.right_tablet_id);
    let merged = TabletId(req.merged_tablet_id);
    if left.0 == 0 || right.0 == 0 || merged.0 == 0 {
        return Err(Error::invalid_argument(
            "MergeTablets needs non-zero left, right and merged tablet ids",
        ));
    }
    if req.merged_epoch == 0 {
        return Err(Error::invalid_argument("merged_epoch must be positive"));
    }
    parts.gate.check_serving()?;
    let _one_at_a_time = parts.lifecycle.lock().await;
    for id in [left, right, merged] {
        if parts.registry.get(id).is_some() {
            return Err(Error::new(
                Code::FailedPrecondition,
                format!("tablet {id} is served by this server: unload it before merging"),
            ));
        }
    }
    let engine = parts.engine.clone();
    let manifest = tokio::task::spawn_blocking(move || engine.merge_tablets(left, right, merged))
        .await
        .map_err(|e| Error::internal(format!("the merge task failed: {e}")))??;
    info!(%left, %right, %merged, table = req.table_id, "tablets merged on request");
    Ok(pb::MergeTabletsResponse {
        merged: Some(pb::TabletDescriptor {
            table_id: req.table_id,
            tablet_id: merged.0,
            start_row: manifest.start_row.to_vec(),
            end_row: manifest.end_row.map(|e| e.to_vec()),
            tablet_epoch: req.merged_epoch,
        }),
    })
}
