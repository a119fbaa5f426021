//! One planning round: the three rules applied in priority order over one view.

use std::collections::BTreeSet;

use tabula_common::TabletId;

use super::index::Index;
use super::load::Load;
use super::types::{Action, ClusterView};
use super::{assign, balance, end_move, unload};

/// What to do next for `view`: first every `Unload` (rule 1), then every `Assign` (rule 2),
/// and only when there is neither, the balancer's `Move`s (rule 3); then, in every round, an
/// `EndMove` for each unfinished move no other action of the round touches (rule 4). Deterministic:
/// the same view gives the same actions in the same order, whatever the order of
/// `view.tablets` and of each server's reported tablets. A tablet gets at most one `Assign`,
/// `Move` or `EndMove` per round, and never in the round that unloads a copy of it.
pub fn plan(view: &ClusterView) -> Vec<Action> {
    let index = Index::new(view);
    let mut actions = unload::unloads(view, &index);
    let mut load = Load::new(view, &index, &actions);
    actions.extend(assign::assigns(view, &index, &mut load));
    if actions.is_empty() {
        actions.extend(balance::moves(view, &index, &mut load));
    }
    let touched: BTreeSet<TabletId> = actions.iter().map(Action::tablet).collect();
    actions.extend(end_move::end_moves(view, &index, &touched));
    actions
}
