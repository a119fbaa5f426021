//! Rule 1: a live server serving a tablet it must not serve is told to unload it.

use tabula_common::{Epoch, ServerId};

use super::index::Index;
use super::types::{Action, ClusterView, ServedTablet, TabletMeta, TabletState};

/// An `Unload` for every copy a live server serves wrongly, by server id, then tablet id, then
/// epoch. A copy is right only when METADATA records the tablet `Assigned` (or `Moving`) to
/// that very server at exactly the served epoch; every other copy is wrong: a tablet METADATA
/// does not know, one it records `Deleting` or `Unassigned` (so no one may serve it), one it
/// places on another server, and one served at any other epoch (older: a newer assignment
/// superseded it; newer: an assignment whose METADATA write never landed, and METADATA is the
/// truth). Tablets in `view.in_flight` are skipped. A copy reported twice gets one `Unload`.
pub(super) fn unloads(view: &ClusterView, index: &Index<'_>) -> Vec<Action> {
    let mut out = Vec::new();
    for (id, server) in &view.servers {
        let mut served: Vec<&ServedTablet> = server.tablets.iter().collect();
        served.sort_by_key(|t| (t.tablet, t.epoch));
        served.dedup_by_key(|t| (t.tablet, t.epoch));
        for t in served {
            if view.in_flight.contains(&t.tablet) || rightful(index.meta(t.tablet), id, t.epoch) {
                continue;
            }
            out.push(Action::Unload {
                tablet: t.tablet,
                server: id.clone(),
                epoch: t.epoch,
            });
        }
    }
    out
}

/// Whether `server` may serve the tablet recorded as `meta` at `epoch`.
fn rightful(meta: Option<&TabletMeta>, server: &ServerId, epoch: Epoch) -> bool {
    meta.is_some_and(|m| {
        matches!(m.state, TabletState::Assigned | TabletState::Moving)
            && m.server.as_ref() == Some(server)
            && m.epoch == epoch
    })
}
