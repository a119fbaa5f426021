//! How loaded each live server is, as the planner sees it while it plans a round: which
//! tablets it holds and their bytes. Assignments and moves planned this round are added as
//! they are chosen, so later choices see them.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use tabula_common::{ServerId, TabletId};

use super::index::Index;
use super::types::{Action, ClusterView, TabletState};

/// The tablets (and their bytes) counted on each live server.
#[derive(Debug)]
pub(super) struct Load {
    servers: BTreeMap<ServerId, Held>,
}

#[derive(Debug, Default)]
struct Held {
    /// Tablet -> bytes.
    tablets: BTreeMap<TabletId, u64>,
    /// The sum of `tablets`' bytes.
    bytes: u64,
}

impl Held {
    fn add(&mut self, tablet: TabletId, bytes: u64) {
        if let Some(old) = self.tablets.insert(tablet, bytes) {
            self.bytes -= old;
        }
        self.bytes += bytes;
    }
}

impl Load {
    /// The load at the start of a round. A live server holds:
    /// - every tablet it reports serving, except the copies `unloads` tell it to drop (a
    ///   tablet reported at two epochs counts once, with the larger reported size);
    /// - every in-flight tablet METADATA places on it (`Assigned`/`Moving`) that it does not
    ///   report yet: an assignment being executed is about to land there.
    pub(super) fn new(view: &ClusterView, index: &Index<'_>, unloads: &[Action]) -> Self {
        let mut servers: BTreeMap<ServerId, Held> = view
            .servers
            .keys()
            .map(|id| (id.clone(), Held::default()))
            .collect();
        for (id, server) in &view.servers {
            let held = servers.entry(id.clone()).or_default();
            for t in &server.tablets {
                let dropped = unloads.iter().any(|a| {
                    matches!(a, Action::Unload { tablet, server, epoch }
                        if *tablet == t.tablet && server == id && *epoch == t.epoch)
                });
                if dropped {
                    continue;
                }
                let bytes = held
                    .tablets
                    .get(&t.tablet)
                    .map_or(t.size_bytes, |b| (*b).max(t.size_bytes));
                held.add(t.tablet, bytes);
            }
        }
        for tablet in &view.in_flight {
            let Some(m) = index.meta(*tablet) else {
                continue;
            };
            if !matches!(m.state, TabletState::Assigned | TabletState::Moving) {
                continue;
            }
            let Some(held) = m.server.as_ref().and_then(|s| servers.get_mut(s)) else {
                continue;
            };
            if !held.tablets.contains_key(tablet) {
                held.add(*tablet, m.size_bytes);
            }
        }
        Load { servers }
    }

    /// The live server with the fewest tablets; ties: fewest bytes, then smallest id.
    /// `None` when no server is live.
    pub(super) fn least_loaded(&self) -> Option<ServerId> {
        self.servers
            .iter()
            .min_by_key(|(id, h)| (h.tablets.len(), h.bytes, *id))
            .map(|(id, _)| id.clone())
    }

    /// Live servers from the most tablets to the fewest; ties: most bytes, then smallest id.
    pub(super) fn by_most_loaded(&self) -> Vec<ServerId> {
        let mut ids: Vec<(&ServerId, &Held)> = self.servers.iter().collect();
        ids.sort_by_key(|(id, h)| (Reverse(h.tablets.len()), Reverse(h.bytes), *id));
        ids.into_iter().map(|(id, _)| id.clone()).collect()
    }

    /// How many tablets `server` holds (0 for a server that is not live).
    pub(super) fn count(&self, server: &ServerId) -> usize {
        self.servers.get(server).map_or(0, |h| h.tablets.len())
    }

    /// How many bytes `server` holds (0 for a server that is not live).
    pub(super) fn bytes(&self, server: &ServerId) -> u64 {
        self.servers.get(server).map_or(0, |h| h.bytes)
    }

    /// The bytes counted for `tablet` on `server`, if it holds it.
    pub(super) fn tablet_bytes(&self, server: &ServerId, tablet: TabletId) -> Option<u64> {
        self.servers
            .get(server)
            .and_then(|h| h.tablets.get(&tablet).copied())
    }

    /// Counts `tablet` (of `bytes`) on `server`; a server that is not live is ignored.
    pub(super) fn add(&mut self, server: &ServerId, tablet: TabletId, bytes: u64) {
        if let Some(h) = self.servers.get_mut(server) {
            h.add(tablet, bytes);
        }
    }

    /// Stops counting `tablet` on `server`.
    pub(super) fn remove(&mut self, server: &ServerId, tablet: TabletId) {
        if let Some(h) = self.servers.get_mut(server)
            && let Some(bytes) = h.tablets.remove(&tablet)
        {
            h.bytes -= bytes;
        }
    }
}
