//! One round's picture of the cluster: the live servers and what they serve, the root record,
//! every METADATA record that could be read, and the table catalog; and from it the planner's
//! [`ClusterView`].
//!
//! METADATA is read through the tablets it describes (root, then METADATA tablets), so early
//! in a cluster's life, or right after a failure, parts of it cannot be read yet. A table whose
//! records could not all be read is *incomplete*: its tablets are left out of the view, and any
//! tablet a server serves of it is marked in flight, so the planner neither assigns nor unloads
//! what it cannot see.
//!
//! The picture also holds the cluster-wide balancer switch (`balancer_switch`) as the round
//! read it; the planner balances only if both the switch and the process's own setting
//! (`--no-balancer`) allow it. A switch that cannot be read counts as off for that round.

use std::collections::{BTreeMap, BTreeSet};

use tabula_client::Channels;
use tabula_client::meta::{MetaTable, TabletRecord, TabletState, read_root};
use tabula_common::{Error, ServerId, TableId, TabletId};
use tabula_lockservice::client::LockClient;
use tracing::{debug, warn};

use crate::plan::{self, BalancerOptions, ClusterView, TabletMeta};
use crate::servers::{self, Servers};
use crate::tables::{Catalog, Table};

/// See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Tablet servers.
    pub servers: Servers,
    /// Every tablet record read, by tablet id (the root's included).
    pub records: BTreeMap<TabletId, TabletRecord>,
    /// The table catalog.
    pub tables: BTreeMap<TableId, Table>,
    /// Tables whose records could not all be read (METADATA included).
    pub incomplete: BTreeSet<TableId>,
    /// The cluster-wide balancer switch as this round read it (off if it could not be read).
    pub balancer_switch: bool,
}

impl Snapshot {
    /// The root tablet's record.
    pub fn root(&self) -> Option<&TabletRecord> {
        self.records.values().find(|r| r.table == TableId::ROOT)
    }

    /// Whether `record`'s tablet is served by its assigned server at its epoch.
    pub fn is_served(&self, record: &TabletRecord) -> bool {
        let Some(server) = &record.server else {
            return false;
        };
        record.state == TabletState::Assigned
            && self.servers.live.get(server).is_some_and(|s| {
                s.tablets
                    .iter()
                    .any(|t| t.tablet == record.tablet && t.epoch == record.epoch)
            })
    }

    /// The planner's view; `in_flight` are tablets with an action being executed, `pinned`
    /// tablets the balancer leaves where an operator moved them. Balancing is on only if
    /// `balancer` (the process's setting) and the cluster-wide switch allow it.
    pub fn cluster_view(
        &self,
        in_flight: &BTreeSet<TabletId>,
        pinned: BTreeSet<TabletId>,
        moves_in_flight: usize,
        balancer: BalancerOptions,
    ) -> ClusterView {
        let mut frozen: BTreeSet<TabletId> = in_flight.clone();
        // Tablets of tables not fully read, wherever they are served.
        for server in self.servers.live.values() {
            for t in &server.tablets {
                if self.incomplete.contains(&t.table) {
                    frozen.insert(t.tablet);
                }
            }
        }
        // Tablets an unreachable server may be serving.
        frozen.extend(servers::frozen_by_unreachable(
            &self.servers,
            self.records
                .values()
                .filter_map(|r| r.server.clone().map(|s| (r.tablet, s))),
        ));
        let sizes: BTreeMap<TabletId, u64> = self
            .servers
            .live
            .values()
            .flat_map(|s| s.tablets.iter().map(|t| (t.tablet, t.size_bytes)))
            .collect();
        let tablets = self
            .records
            .values()
            .filter(|r| !self.incomplete.contains(&r.table))
            .map(|r| TabletMeta {
                table: r.table,
                tablet: r.tablet,
                start_row: r.start_row.clone(),
                end_row: r.end_row.clone(),
                epoch: r.epoch,
                state: match r.state {
                    TabletState::Unassigned => plan::TabletState::Unassigned,
                    TabletState::Assigned => plan::TabletState::Assigned,
                    TabletState::Moving => plan::TabletState::Moving,
                    TabletState::Deleting => plan::TabletState::Deleting,
                },
                server: r.server.clone(),
                size_bytes: sizes.get(&r.tablet).copied().unwrap_or(0),
            })
            .collect();
        ClusterView {
            servers: self.servers.live.clone(),
            tablets,
            in_flight: frozen,
            moves_in_flight,
            pinned,
            balancer: BalancerOptions {
                enabled: balancer.enabled && self.balancer_switch,
                ..balancer
            },
        }
    }

    /// The address of a listed server.
    pub fn addr_of(&self, server: &ServerId) -> Option<String> {
        self.servers.addr(server).map(str::to_owned)
    }
}

/// Reads servers (fencing them with `master_epoch`), the balancer switch, the root record, the
/// catalog and every METADATA record it can.
pub async fn gather(
    lock: &LockClient,
    channels: &Channels,
    meta: &MetaTable,
    catalog: &Catalog,
    master_epoch: tabula_common::Epoch,
) -> Result<Snapshot, Error> {
    let servers = servers::gather(lock, channels, master_epoch).await?;
    let tables = catalog.list().await?;
    let balancer_switch = match crate::balancer_switch::read(lock).await {
        Ok(on) => on,
        Err(e) => {
            warn!(error = %e, "the balancer switch cannot be read; no balancing this round");
            false
        }
    };
    let mut snapshot = Snapshot {
        servers,
        tables,
        balancer_switch,
        ..Snapshot::default()
    };
    let Some((root, _generation)) = read_root(lock).await? else {
        snapshot.incomplete.insert(TableId::METADATA);
        snapshot.incomplete.extend(snapshot.tables.keys().copied());
        return Ok(snapshot);
    };
    let root_served = snapshot.is_served(&root);
    snapshot.records.insert(root.tablet, root);
    if !root_served {
        snapshot.incomplete.insert(TableId::METADATA);
        snapshot.incomplete.extend(snapshot.tables.keys().copied());
        return Ok(snapshot);
    }
    match meta.scan_table(TableId::METADATA).await {
        Ok(records) => {
            for r in records {
                snapshot.records.insert(r.tablet, r);
            }
        }
        Err(e) => {
            debug!(error = %e, "METADATA's own records could not be read");
            snapshot.incomplete.insert(TableId::METADATA);
            snapshot.incomplete.extend(snapshot.tables.keys().copied());
            return Ok(snapshot);
        }
    }
    let meta_served = snapshot
        .records
        .values()
        .filter(|r| r.table == TableId::METADATA)
        .all(|r| snapshot.is_served(r));
    let table_ids: Vec<TableId> = snapshot.tables.keys().copied().collect();
    for table in table_ids {
        if !meta_served {
            snapshot.incomplete.insert(table);
            continue;
        }
        match meta.scan_table(table).await {
            Ok(records) => {
                for r in records {
                    snapshot.records.insert(r.tablet, r);
                }
            }
            Err(e) => {
                debug!(table = table.0, error = %e, "a table's records could not be read");
                snapshot.incomplete.insert(table);
            }
        }
    }
    Ok(snapshot)
}
