//! The planner's input and output: plain data, built by the master from the lock service,
//! the tablet servers' `ListTablets` answers and the METADATA records.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use tabula_common::{Epoch, ServerId, TableId, TabletId};

/// A tablet as METADATA (or `/tabula/root`, for the root tablet) records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TabletMeta {
    /// Its table.
    pub table: TableId,
    /// Its id.
    pub tablet: TabletId,
    /// First row (inclusive); empty = the table's beginning.
    pub start_row: Bytes,
    /// Row after the last (exclusive); `None` = the table's end.
    pub end_row: Option<Bytes>,
    /// The epoch of its current (or last) assignment.
    pub epoch: Epoch,
    /// Its assignment state.
    pub state: TabletState,
    /// The server it is assigned to, when `state` is `Assigned` or `Moving`.
    pub server: Option<ServerId>,
    /// Approximate bytes (from the serving server's report; 0 when unknown).
    pub size_bytes: u64,
}

/// Where a tablet is in its life, as METADATA records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TabletState {
    /// Not served by anyone.
    Unassigned,
    /// Assigned to `TabletMeta::server` at `TabletMeta::epoch`.
    Assigned,
    /// Being moved off `TabletMeta::server`.
    Moving,
    /// Its table is being deleted: never assigned again.
    Deleting,
}

/// A tablet a server says it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedTablet {
    /// The tablet.
    pub tablet: TabletId,
    /// Its table.
    pub table: TableId,
    /// The epoch the server serves it at.
    pub epoch: Epoch,
    /// Approximate bytes.
    pub size_bytes: u64,
}

/// A live tablet server (its `/tabula/servers/<id>` file exists and it answered `ListTablets`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerView {
    /// Its id.
    pub id: ServerId,
    /// Its `host:port`.
    pub addr: String,
    /// What it serves.
    pub tablets: Vec<ServedTablet>,
}

impl ServerView {
    /// The bytes of every tablet it serves.
    pub fn bytes(&self) -> u64 {
        self.tablets.iter().map(|t| t.size_bytes).sum()
    }
}

/// The balancer's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BalancerOptions {
    /// Whether the balancer moves tablets at all.
    pub enabled: bool,
    /// The most moves in flight at once.
    pub max_moves: usize,
}

impl Default for BalancerOptions {
    fn default() -> Self {
        BalancerOptions {
            enabled: true,
            max_moves: 2,
        }
    }
}

/// Everything the planner looks at.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    /// Live servers by id.
    pub servers: BTreeMap<ServerId, ServerView>,
    /// Every tablet METADATA knows (the root tablet included), any order.
    pub tablets: Vec<TabletMeta>,
    /// Tablets with an action being executed now: the planner leaves them alone.
    pub in_flight: BTreeSet<TabletId>,
    /// How many planned moves are being executed now.
    pub moves_in_flight: usize,
    /// Tablets an operator placed (`MoveTablet`) that still stand where they were put: the
    /// balancer does not move them; every other rule treats them as usual.
    pub pinned: BTreeSet<TabletId>,
    /// Balancer settings.
    pub balancer: BalancerOptions,
}

/// One thing the master should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Record the tablet in METADATA as assigned to `server` at `epoch` (its current epoch + 1),
    /// then tell the server to load it.
    Assign {
        /// The tablet.
        tablet: TabletId,
        /// Its table.
        table: TableId,
        /// The server to load it.
        server: ServerId,
        /// The new tablet epoch.
        epoch: Epoch,
    },
    /// Tell `server` to stop serving `tablet` (served at `epoch`), which it must not serve.
    Unload {
        /// The tablet.
        tablet: TabletId,
        /// The server serving it.
        server: ServerId,
        /// The epoch it serves it at.
        epoch: Epoch,
    },
    /// Move `tablet` from `from` (minor-compact and unload there) to `to` at `epoch`.
    Move {
        /// The tablet.
        tablet: TabletId,
        /// Its table.
        table: TableId,
        /// Where it is served now.
        from: ServerId,
        /// Where it should be served.
        to: ServerId,
        /// The new tablet epoch.
        epoch: Epoch,
    },
    /// Record `tablet`, left `Moving` by a move that did not finish, `Assigned` again to
    /// `server`, which still serves it at `epoch` (METADATA's epoch): the move is abandoned.
    EndMove {
        /// The tablet.
        tablet: TabletId,
        /// The server METADATA names, serving it.
        server: ServerId,
        /// METADATA's epoch, at which the server serves it.
        epoch: Epoch,
    },
}

impl Action {
    /// The tablet the action is about.
    pub fn tablet(&self) -> TabletId {
        match self {
            Action::Assign { tablet, .. }
            | Action::Unload { tablet, .. }
            | Action::Move { tablet, .. }
            | Action::EndMove { tablet, .. } => *tablet,
        }
    }
}
