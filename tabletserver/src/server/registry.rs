//! The tablets this server serves, by id and by `(table, end row)`, and the routing check every
//! request goes through: a row (or a row range) of a table must fall inside one tablet served
//! here, at the tablet epoch the caller names, or the answer is `WrongTablet` with what this
//! server knows.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::RwLock;
use tabula_common::{Code, Epoch, Error, TableId, TabletId};

use crate::engine::Tablet;
use crate::engine::sstable::RowRange;

/// One served tablet: the engine's tablet plus what the master assigned.
#[derive(Debug)]
pub struct ServedTablet {
    /// The table it belongs to.
    pub table: TableId,
    /// The tablet epoch it was assigned at.
    pub epoch: Epoch,
    /// The data.
    pub tablet: Tablet,
    /// Read requests served since it was loaded.
    pub reads: AtomicU64,
    /// Write requests served since it was loaded.
    pub writes: AtomicU64,
    /// For a child of a split made here: its parent (reported so the master records the
    /// split in METADATA).
    pub split_parent: Option<TabletId>,
}

impl ServedTablet {
    /// A served tablet with zeroed counters.
    pub fn new(table: TableId, epoch: Epoch, tablet: Tablet) -> ServedTablet {
        ServedTablet {
            table,
            epoch,
            tablet,
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            split_parent: None,
        }
    }

    /// A child of a split of `parent`, with zeroed counters.
    pub fn child_of(
        parent: TabletId,
        table: TableId,
        epoch: Epoch,
        tablet: Tablet,
    ) -> ServedTablet {
        ServedTablet {
            split_parent: Some(parent),
            ..ServedTablet::new(table, epoch, tablet)
        }
    }

    /// The tablet's id.
    pub fn id(&self) -> TabletId {
        self.tablet.id()
    }

    /// Counts one read request.
    pub fn count_read(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one write request.
    pub fn count_write(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
    }

    fn describe(&self) -> String {
        format!(
            "table {} tablet {} epoch {} rows {}",
            self.table.0,
            self.id(),
            self.epoch.0,
            describe_range(self.tablet.range())
        )
    }
}

/// Which tablet a request believes it addresses (`TabletRef` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Required.
    pub table: TableId,
    /// `None`: any tablet of the table that holds the rows.
    pub tablet: Option<TabletId>,
    /// `None`: any epoch.
    pub epoch: Option<Epoch>,
}

/// The end of a tablet's range as a map key: `None` (the table's end) sorts last.
type EndKey = Option<Bytes>;

#[derive(Debug, Default)]
struct Maps {
    by_id: HashMap<TabletId, Arc<ServedTablet>>,
    /// `(table, end row)` -> tablet; `None` end rows sort after every `Some`.
    by_end: BTreeMap<(TableId, EndKeyOrd), TabletId>,
}

impl Maps {
    fn insert(&mut self, tablet: Arc<ServedTablet>) -> Result<(), Error> {
        if let Some(existing) = self.by_id.get(&tablet.id()) {
            return Err(Error::new(
                Code::AlreadyExists,
                format!("already serving {}", existing.describe()),
            ));
        }
        if let Some(other) = self
            .by_id
            .values()
            .find(|t| t.table == tablet.table && overlaps(t.tablet.range(), tablet.tablet.range()))
        {
            return Err(Error::new(
                Code::FailedPrecondition,
                format!(
                    "{} overlaps {} served here",
                    tablet.describe(),
                    other.describe()
                ),
            ));
        }
        let end = EndKeyOrd::from(&end_row(tablet.tablet.range()));
        self.by_end.insert((tablet.table, end), tablet.id());
        self.by_id.insert(tablet.id(), tablet);
        Ok(())
    }

    fn remove(&mut self, id: TabletId) -> Option<Arc<ServedTablet>> {
        let tablet = self.by_id.remove(&id)?;
        let end = EndKeyOrd::from(&end_row(tablet.tablet.range()));
        self.by_end.remove(&(tablet.table, end));
        Some(tablet)
    }
}

/// `EndKey` ordered with `None` last.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum EndKeyOrd {
    Row(Bytes),
    End,
}

impl From<&EndKey> for EndKeyOrd {
    fn from(k: &EndKey) -> Self {
        match k {
            Some(row) => EndKeyOrd::Row(row.clone()),
            None => EndKeyOrd::End,
        }
    }
}

/// The served tablets. Lookups take a read lock for a few map operations; loads and unloads
/// take the write lock only to swap entries (never across I/O).
#[derive(Debug, Default)]
pub struct Registry {
    maps: RwLock<Maps>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Starts serving `tablet`. Refused if a tablet with that id, or an overlapping range of the
    /// same table, is served already.
    pub fn insert(&self, tablet: Arc<ServedTablet>) -> Result<(), Error> {
        self.maps.write().insert(tablet)
    }

    /// Serves `children` instead of `parent`, in one step: no lookup sees neither (a split's
    /// switch). Refused as `insert` refuses, with nothing changed.
    pub fn replace(&self, parent: TabletId, children: &[Arc<ServedTablet>]) -> Result<(), Error> {
        let mut maps = self.maps.write();
        let old = maps.remove(parent);
        for (i, child) in children.iter().enumerate() {
            if let Err(e) = maps.insert(child.clone()) {
                for done in &children[..i] {
                    maps.remove(done.id());
                }
                if let Some(old) = old {
                    maps.insert(old)?;
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Stops routing requests to `id`; the tablet itself closes when the last request holding
    /// it finishes.
    pub fn remove(&self, id: TabletId) -> Option<Arc<ServedTablet>> {
        self.maps.write().remove(id)
    }

    /// The tablet with this id, if served.
    pub fn get(&self, id: TabletId) -> Option<Arc<ServedTablet>> {
        self.maps.read().by_id.get(&id).cloned()
    }

    /// Every served tablet, by table and row order.
    pub fn list(&self) -> Vec<Arc<ServedTablet>> {
        let maps = self.maps.read();
        maps.by_end
            .values()
            .filter_map(|id| maps.by_id.get(id).cloned())
            .collect()
    }

    /// Number of served tablets.
    pub fn len(&self) -> usize {
        self.maps.read().by_id.len()
    }

    /// Whether no tablet is served.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tablet that serves `row` of `route.table`, checked against the route's tablet and
    /// epoch; `WrongTablet` otherwise.
    pub fn route_row(&self, route: &Route, row: &[u8]) -> Result<Arc<ServedTablet>, Error> {
        // Built before taking the lock: the map needs an owned key.
        let after_row = (route.table, EndKeyOrd::Row(Bytes::copy_from_slice(row)));
        let maps = self.maps.read();
        let found = maps
            .by_end
            .range((
                Bound::Excluded(after_row),
                Bound::Included((route.table, EndKeyOrd::End)),
            ))
            .next()
            .and_then(|(_, id)| maps.by_id.get(id))
            .filter(|t| t.tablet.contains(row));
        let Some(tablet) = found else {
            return Err(wrong_tablet(format!(
                "this server serves no tablet of table {} holding row {:?}",
                route.table.0,
                row.escape_ascii().to_string()
            )));
        };
        check_route(route, tablet)?;
        Ok(tablet.clone())
    }

    /// The tablet that serves all of `range` (clipped to nothing larger than one tablet: a range
    /// that crosses tablet boundaries is `WrongTablet`, the client splits it). An unbounded or
    /// empty range needs `route.tablet` to say which tablet is meant.
    pub fn route_range(&self, route: &Route, range: &RowRange) -> Result<Arc<ServedTablet>, Error> {
        let tablet = match route.tablet {
            Some(id) => self
                .get(id)
                .ok_or_else(|| wrong_tablet(format!("this server does not serve tablet {id}")))?,
            None => {
                let start: &[u8] = match &range.start {
                    Bound::Included(s) | Bound::Excluded(s) => s,
                    Bound::Unbounded => &[],
                };
                self.route_row(route, start)?
            }
        };
        check_route(route, &tablet)?;
        if !within(range, tablet.tablet.range()) {
            return Err(wrong_tablet(format!(
                "rows {} are not all in {}",
                describe_range(range),
                tablet.describe()
            )));
        }
        Ok(tablet)
    }
}

fn check_route(route: &Route, tablet: &ServedTablet) -> Result<(), Error> {
    if tablet.table != route.table {
        return Err(wrong_tablet(format!(
            "asked for table {} but {}",
            route.table.0,
            tablet.describe()
        )));
    }
    if route.tablet.is_some_and(|id| id != tablet.id()) {
        return Err(wrong_tablet(format!(
            "asked for tablet {} but the row is in {}",
            route.tablet.map_or(0, |t| t.0),
            tablet.describe()
        )));
    }
    if route.epoch.is_some_and(|e| e != tablet.epoch) {
        return Err(wrong_tablet(format!(
            "asked for epoch {} but serving {}",
            route.epoch.map_or(0, |e| e.0),
            tablet.describe()
        )));
    }
    Ok(())
}

fn wrong_tablet(hint: String) -> Error {
    Error::new(Code::WrongTablet { hint: hint.clone() }, hint)
}

fn end_row(range: &RowRange) -> EndKey {
    match &range.end {
        Bound::Excluded(e) | Bound::Included(e) => Some(e.clone()),
        Bound::Unbounded => None,
    }
}

/// Whether every row of `inner` is in `outer`.
fn within(inner: &RowRange, outer: &RowRange) -> bool {
    let start_ok = match (&outer.start, &inner.start) {
        (Bound::Unbounded, _) => true,
        (_, Bound::Unbounded) => false,
        (Bound::Included(o), Bound::Included(i) | Bound::Excluded(i)) => i >= o,
        (Bound::Excluded(o), Bound::Included(i)) => i > o,
        (Bound::Excluded(o), Bound::Excluded(i)) => i >= o,
    };
    let end_ok = match (&outer.end, &inner.end) {
        (Bound::Unbounded, _) => true,
        (_, Bound::Unbounded) => false,
        (Bound::Excluded(o), Bound::Excluded(i)) => i <= o,
        (Bound::Excluded(o), Bound::Included(i)) => i < o,
        (Bound::Included(o), Bound::Included(i) | Bound::Excluded(i)) => i <= o,
    };
    start_ok && end_ok
}

fn overlaps(a: &RowRange, b: &RowRange) -> bool {
    a.intersect(b).is_some_and(|r| !r.is_empty())
}

fn describe_range(r: &RowRange) -> String {
    let show = |b: &Bound<Bytes>, open: &str| match b {
        Bound::Included(k) => format!("[{:?}", k.escape_ascii().to_string()),
        Bound::Excluded(k) => format!("({:?}", k.escape_ascii().to_string()),
        Bound::Unbounded => open.to_owned(),
    };
    let end = match &r.end {
        Bound::Included(k) => format!("{:?}]", k.escape_ascii().to_string()),
        Bound::Excluded(k) => format!("{:?})", k.escape_ascii().to_string()),
        Bound::Unbounded => "end)".to_owned(),
    };
    format!("{}, {}", show(&r.start, "(start"), end)
}
