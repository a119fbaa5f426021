//! Lookups every rule shares: the METADATA record of each tablet, and which live servers
//! report serving it (at which epoch).

use std::collections::BTreeMap;

use tabula_common::{Epoch, ServerId, TabletId};

use super::types::{ClusterView, ServedTablet, TabletMeta};

/// METADATA by tablet id and the servers' reports by tablet id, borrowed from one view.
pub(super) struct Index<'a> {
    meta: BTreeMap<TabletId, &'a TabletMeta>,
    served: BTreeMap<TabletId, Vec<(&'a ServerId, &'a ServedTablet)>>,
}

impl<'a> Index<'a> {
    /// Indexes `view`. Tablet ids are unique for a tablet's whole life, so METADATA should hold
    /// one record per id; should it hold more, the one with the highest epoch counts (the
    /// first such in `view.tablets` on a tie) and the others are ignored.
    pub(super) fn new(view: &'a ClusterView) -> Self {
        let mut meta: BTreeMap<TabletId, &'a TabletMeta> = BTreeMap::new();
        for m in &view.tablets {
            let keep = meta.get(&m.tablet).is_some_and(|old| old.epoch >= m.epoch);
            if !keep {
                meta.insert(m.tablet, m);
            }
        }
        let mut served: BTreeMap<TabletId, Vec<(&'a ServerId, &'a ServedTablet)>> = BTreeMap::new();
        for (id, server) in &view.servers {
            for t in &server.tablets {
                served.entry(t.tablet).or_default().push((id, t));
            }
        }
        Index { meta, served }
    }

    /// The METADATA record of `tablet`, if METADATA knows it.
    pub(super) fn meta(&self, tablet: TabletId) -> Option<&'a TabletMeta> {
        self.meta.get(&tablet).copied()
    }

    /// Every METADATA record, one per tablet id, in tablet id order.
    pub(super) fn metas(&self) -> impl Iterator<Item = &'a TabletMeta> + '_ {
        self.meta.values().copied()
    }

    /// Whether any live server reports serving `tablet`, at any epoch.
    pub(super) fn is_served(&self, tablet: TabletId) -> bool {
        self.served.contains_key(&tablet)
    }

    /// Whether `server` reports serving `tablet` at exactly `epoch`.
    pub(super) fn serves(&self, server: &ServerId, tablet: TabletId, epoch: Epoch) -> bool {
        self.served
            .get(&tablet)
            .is_some_and(|v| v.iter().any(|(s, t)| *s == server && t.epoch == epoch))
    }
}
