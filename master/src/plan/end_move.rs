//! Rule 4: a move that did not finish is ended where the tablet still is.

use std::collections::BTreeSet;

use tabula_common::TabletId;

use super::index::Index;
use super::types::{Action, ClusterView, TabletState};

/// An `EndMove` for every tablet METADATA records `Moving` that is not in flight, not touched
/// by another action this round (`touched`: the balancer may be finishing the move, or a stray
/// copy being unloaded), and served by the server METADATA names at METADATA's epoch, in
/// tablet id order. Such a record is a move that stopped after marking the tablet (its METADATA
/// write's answer was lost, or its master died) and before unloading it; the source still
/// serves it. The balancer may finish such a move when it wants one; otherwise the record
/// would stay `Moving` for good, and the tablet would count as not served.
/// A `Moving` tablet its server no longer serves is rule 2's: it is assigned.
pub(super) fn end_moves(
    view: &ClusterView,
    index: &Index<'_>,
    touched: &BTreeSet<TabletId>,
) -> Vec<Action> {
    index
        .metas()
        .filter(|m| {
            m.state == TabletState::Moving
                && !view.in_flight.contains(&m.tablet)
                && !touched.contains(&m.tablet)
        })
        .filter_map(|m| {
            let server = m.server.as_ref()?;
            index
                .serves(server, m.tablet, m.epoch)
                .then(|| Action::EndMove {
                    tablet: m.tablet,
                    server: server.clone(),
                    epoch: m.epoch,
                })
        })
        .collect()
}
