//! Test helpers: building views by hand, applying a round's actions to a view as if every one
//! succeeded, and checking the placement invariants.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use tabula_common::{Epoch, ServerId, TableId, TabletId};

use super::plan;
use super::types::{
    Action, BalancerOptions, ClusterView, ServedTablet, ServerView, TabletMeta, TabletState,
};

/// A server id.
pub(super) fn sid(s: &str) -> ServerId {
    ServerId(s.to_string())
}

/// A view with these live servers (serving nothing) and no tablets.
pub(super) fn view(servers: &[&str]) -> ClusterView {
    ClusterView {
        servers: servers
            .iter()
            .map(|s| {
                (
                    sid(s),
                    ServerView {
                        id: sid(s),
                        addr: format!("{s}:7000"),
                        tablets: Vec::new(),
                    },
                )
            })
            .collect(),
        balancer: BalancerOptions::default(),
        ..ClusterView::default()
    }
}

/// An unassigned tablet at epoch 0 whose start row is its id (zero-padded), 0 bytes.
pub(super) fn unassigned(table: u64, tablet: u64) -> TabletMeta {
    TabletMeta {
        table: TableId(table),
        tablet: TabletId(tablet),
        start_row: Bytes::from(format!("{tablet:08}")),
        end_row: None,
        epoch: Epoch(0),
        state: TabletState::Unassigned,
        server: None,
        size_bytes: 0,
    }
}

/// A tablet METADATA records as assigned to `server` at `epoch`.
pub(super) fn assigned(table: u64, tablet: u64, server: &str, epoch: u64) -> TabletMeta {
    TabletMeta {
        epoch: Epoch(epoch),
        state: TabletState::Assigned,
        server: Some(sid(server)),
        ..unassigned(table, tablet)
    }
}

/// Adds `meta` to METADATA and, when it is assigned to a live server, has that server serve
/// it at METADATA's epoch with METADATA's size: a correctly placed tablet.
pub(super) fn place(view: &mut ClusterView, meta: TabletMeta) {
    if let Some(server) = meta.server.as_ref().and_then(|s| view.servers.get_mut(s))
        && matches!(meta.state, TabletState::Assigned | TabletState::Moving)
    {
        server.tablets.push(ServedTablet {
            tablet: meta.tablet,
            table: meta.table,
            epoch: meta.epoch,
            size_bytes: meta.size_bytes,
        });
    }
    view.tablets.push(meta);
}

/// Has live server `server` report serving `tablet` at `epoch` (whatever METADATA says).
pub(super) fn serve(view: &mut ClusterView, server: &str, table: u64, tablet: u64, epoch: u64) {
    if let Some(s) = view.servers.get_mut(&sid(server)) {
        s.tablets.push(ServedTablet {
            tablet: TabletId(tablet),
            table: TableId(table),
            epoch: Epoch(epoch),
            size_bytes: 0,
        });
    }
}

/// Applies `actions` to `view` as if each succeeded: METADATA records assignments and moves,
/// servers load and unload. A server that is not live ignores what it is told.
pub(super) fn apply(view: &mut ClusterView, actions: &[Action]) {
    for action in actions {
        match action {
            Action::Unload {
                tablet,
                server,
                epoch,
            } => {
                if let Some(s) = view.servers.get_mut(server) {
                    s.tablets
                        .retain(|t| !(t.tablet == *tablet && t.epoch == *epoch));
                }
            }
            Action::Assign {
                tablet,
                table,
                server,
                epoch,
            } => settle_on(view, *tablet, *table, None, server, *epoch),
            Action::Move {
                tablet,
                table,
                from,
                to,
                epoch,
            } => settle_on(view, *tablet, *table, Some(from), to, *epoch),
            Action::EndMove { tablet, .. } => {
                for m in view.tablets.iter_mut().filter(|m| m.tablet == *tablet) {
                    m.state = TabletState::Assigned;
                }
            }
        }
    }
}

/// METADATA records `tablet` on `to` at `epoch`; `from` (if any) stops serving it; `to`
/// serves it at `epoch` only (a load at a newer epoch replaces an older copy).
fn settle_on(
    view: &mut ClusterView,
    tablet: TabletId,
    table: TableId,
    from: Option<&ServerId>,
    to: &ServerId,
    epoch: Epoch,
) {
    let mut size_bytes = 0;
    for m in view.tablets.iter_mut().filter(|m| m.tablet == tablet) {
        m.state = TabletState::Assigned;
        m.server = Some(to.clone());
        m.epoch = epoch;
        size_bytes = m.size_bytes;
    }
    if let Some(s) = from.and_then(|f| view.servers.get_mut(f)) {
        s.tablets.retain(|t| t.tablet != tablet);
    }
    if let Some(s) = view.servers.get_mut(to) {
        s.tablets.retain(|t| t.tablet != tablet);
        s.tablets.push(ServedTablet {
            tablet,
            table,
            epoch,
            size_bytes,
        });
    }
}

/// Plans and applies rounds until a round plans nothing; the rounds' actions, the last
/// (empty) one left out. `Err` when `max_rounds` rounds do not settle it.
pub(super) fn settle(
    view: &mut ClusterView,
    max_rounds: usize,
) -> Result<Vec<Vec<Action>>, String> {
    let mut rounds = Vec::new();
    for _ in 0..max_rounds {
        let actions = plan(view);
        if actions.is_empty() {
            return Ok(rounds);
        }
        apply(view, &actions);
        rounds.push(actions);
    }
    Err(format!("not settled after {max_rounds} rounds: {view:#?}"))
}

/// How many distinct tablets each live server serves.
pub(super) fn counts(view: &ClusterView) -> BTreeMap<ServerId, usize> {
    view.servers
        .iter()
        .map(|(id, s)| {
            let distinct: BTreeSet<TabletId> = s.tablets.iter().map(|t| t.tablet).collect();
            (id.clone(), distinct.len())
        })
        .collect()
}

/// The placement invariants of a settled view: no tablet served twice or wrongly; every
/// tablet not being deleted `Assigned` to a live server that serves it at METADATA's epoch.
pub(super) fn check_safe(view: &ClusterView) -> Result<(), String> {
    let mut holders: BTreeMap<TabletId, Vec<(&ServerId, Epoch)>> = BTreeMap::new();
    for (id, s) in &view.servers {
        for t in &s.tablets {
            holders.entry(t.tablet).or_default().push((id, t.epoch));
        }
    }
    for (tablet, h) in holders.iter_mut() {
        h.sort();
        h.dedup(); // the same copy reported twice is one copy
        if h.len() > 1 {
            return Err(format!("{tablet} served more than once: {h:?}"));
        }
    }
    for m in &view.tablets {
        let held = holders.get(&m.tablet).and_then(|h| h.first());
        if m.state == TabletState::Deleting {
            if let Some(h) = held {
                return Err(format!("deleting {} still served by {h:?}", m.tablet));
            }
            continue;
        }
        let Some(server) = m.server.as_ref().filter(|s| view.servers.contains_key(*s)) else {
            return Err(format!("{} not assigned to a live server: {m:?}", m.tablet));
        };
        if m.state != TabletState::Assigned || held != Some(&(server, m.epoch)) {
            return Err(format!(
                "{} not served as recorded: {m:?}, served {held:?}",
                m.tablet
            ));
        }
    }
    let known: Vec<TabletId> = view.tablets.iter().map(|m| m.tablet).collect();
    if let Some(t) = holders.keys().find(|t| !known.contains(t)) {
        return Err(format!("unknown tablet {t} still served"));
    }
    Ok(())
}
