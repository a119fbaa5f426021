//! Rule 2: tablets no live server serves are assigned to the least-loaded live server.

use tabula_common::Epoch;

use super::index::Index;
use super::load::Load;
use super::types::{Action, ClusterView, TabletMeta, TabletState};

/// An `Assign` for every tablet that needs a server, in priority order: by table id (so the
/// root tablet, table 0, first, then METADATA, table 1, then user tables), then start row,
/// then tablet id. Each goes to the least-loaded live server at the time it is chosen
/// ([`Load::least_loaded`]), at its METADATA epoch + 1. No live server: no assignments.
///
/// A tablet needs a server when it is not in flight, not `Deleting`, and no live server
/// reports serving it at all. That covers `Unassigned` tablets, tablets `Assigned`/`Moving` to
/// a server that is gone (or to none), and tablets `Assigned` to a live server that does not
/// serve them (its load failed). A tablet some live server serves wrongly is not assigned in
/// the round that unloads it but in the next one, once no one serves it: so an `Assign` is
/// never planned while another server still holds a copy.
pub(super) fn assigns(view: &ClusterView, index: &Index<'_>, load: &mut Load) -> Vec<Action> {
    let mut wanted: Vec<&TabletMeta> = index
        .metas()
        .filter(|m| {
            m.state != TabletState::Deleting
                && !view.in_flight.contains(&m.tablet)
                && !index.is_served(m.tablet)
        })
        .collect();
    wanted
        .sort_by(|a, b| (a.table, &a.start_row, a.tablet).cmp(&(b.table, &b.start_row, b.tablet)));
    let mut out = Vec::new();
    for m in wanted {
        let Some(server) = load.least_loaded() else {
            break;
        };
        load.add(&server, m.tablet, m.size_bytes);
        out.push(Action::Assign {
            tablet: m.tablet,
            table: m.table,
            server,
            epoch: next_epoch(m.epoch),
        });
    }
    out
}

/// The epoch of a tablet's next assignment. Saturates rather than wraps: 2^64 assignments of
/// one tablet do not happen.
pub(super) fn next_epoch(epoch: Epoch) -> Epoch {
    Epoch(epoch.0.saturating_add(1))
}
