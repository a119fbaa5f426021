//! Rule 3: the balancer evens out tablet counts (bytes second) by moving user tablets.

use std::collections::BTreeSet;

use tabula_common::{ServerId, TableId, TabletId};

use super::assign::next_epoch;
use super::index::Index;
use super::load::Load;
use super::types::{Action, ClusterView, TabletMeta, TabletState};

/// `Move`s that even out tablet counts, at most `max_moves - moves_in_flight` of them; none
/// when the balancer is off. The caller runs it only when rules 1 and 2 planned nothing.
///
/// Each move goes to the least-loaded server (fewest tablets, then fewest bytes, then smallest
/// id) from the most-loaded server that holds a movable tablet and has at least two tablets
/// more than the target. Servers are tried from the most loaded down, so a server holding
/// only system tablets does not stop the balancer from draining the next one. Of the source's
/// movable tablets it takes the one that leaves the byte gap between source and target
/// smallest (|gap - 2 * size|; tie: smallest tablet id).
///
/// Movable: a user tablet (table >= 2; the root tablet and METADATA are never moved), not in
/// flight, not pinned (an operator's move stands: undoing it at once would make `MoveTablet`
/// pointless while the balancer is on), not already moved this round, `Assigned` in METADATA
/// to the source, which serves it at METADATA's epoch. A tablet `Moving` off the source yet
/// not in flight is a move a dead master left unfinished; it is movable too (moving it
/// finishes that move). The move's epoch is METADATA's + 1.
///
/// Every move lowers the sum of squared tablet counts, so repeated rounds settle; at rest no
/// server with a movable tablet holds two or more tablets above the least-loaded one.
pub(super) fn moves(view: &ClusterView, index: &Index<'_>, load: &mut Load) -> Vec<Action> {
    if !view.balancer.enabled {
        return Vec::new();
    }
    let budget = view.balancer.max_moves.saturating_sub(view.moves_in_flight);
    let mut moved = BTreeSet::new();
    let mut out = Vec::new();
    while out.len() < budget {
        let Some((m, from, to)) = next_move(view, index, load, &moved) else {
            break;
        };
        let bytes = load.tablet_bytes(&from, m.tablet).unwrap_or(m.size_bytes);
        load.remove(&from, m.tablet);
        load.add(&to, m.tablet, bytes);
        moved.insert(m.tablet);
        out.push(Action::Move {
            tablet: m.tablet,
            table: m.table,
            from,
            to,
            epoch: next_epoch(m.epoch),
        });
    }
    out
}

/// The next tablet to move, with its source and target, or `None` when balanced enough.
fn next_move<'a>(
    view: &ClusterView,
    index: &Index<'a>,
    load: &Load,
    moved: &BTreeSet<TabletId>,
) -> Option<(&'a TabletMeta, ServerId, ServerId)> {
    let to = load.least_loaded()?;
    let floor = load.count(&to);
    for from in load.by_most_loaded() {
        if load.count(&from) <= floor + 1 {
            // Sorted by count, descending: no later server is loaded enough either.
            return None;
        }
        let gap = i128::from(load.bytes(&from)) - i128::from(load.bytes(&to));
        let best = index
            .metas()
            .filter(|m| movable(view, index, m, &from) && !moved.contains(&m.tablet))
            .min_by_key(|m| {
                let size = load.tablet_bytes(&from, m.tablet).unwrap_or(m.size_bytes);
                ((gap - 2 * i128::from(size)).abs(), m.tablet)
            });
        if let Some(m) = best {
            return Some((m, from, to));
        }
    }
    None
}

/// Whether the balancer may move `m` off `from`.
fn movable(view: &ClusterView, index: &Index<'_>, m: &TabletMeta, from: &ServerId) -> bool {
    m.table >= TableId::FIRST_USER
        && matches!(m.state, TabletState::Assigned | TabletState::Moving)
        && m.server.as_ref() == Some(from)
        && !view.in_flight.contains(&m.tablet)
        && !view.pinned.contains(&m.tablet)
        && index.serves(from, m.tablet, m.epoch)
}
