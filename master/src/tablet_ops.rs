//! Admin operations on single tablets: `SplitTablet` (`MergeTablets` is `merge_ops`).
//!
//! `SplitTablet(table, row, at_row)` runs under the operation lock like every admin command:
//! gather a fresh picture, find the tablet holding `row` ([`split_target`], pure), ask its
//! server to split it (`TabletAdmin.SplitTablet` at the master epoch, into two fresh ids at
//! the tablet's epoch + 1, at `row` or at the tablet's middle row), then record the split in
//! METADATA ([`record_split`]). The split's commit point is the server's manifest switch on the
//! storage root; if recording fails after it, the next round finds the children in the
//! server's `ListTablets` (their `split_parent`) and records them, so nothing is lost.
//!
//! Refused: the root tablet (`FailedPrecondition`, it never splits), a tablet not served at its
//! recorded epoch (`Unavailable`), a split row at the tablet's start or too long
//! (`InvalidArgument`), a tablet with no middle row yet (`FailedPrecondition`, from the
//! server: its data is still in memtables or too small).

use std::time::Duration;

use bytes::Bytes;
use tabula_client::meta::TabletRecord;
use tabula_common::{Code, Epoch, Error, RowKey, ServerId, TableId};
use tabula_proto::tabula::master::v1 as pb;
use tabula_proto::tabula::tablet::v1 as tpb;
use tracing::info;

use crate::active::Active;
use crate::bootstrap::fresh_tablet_id;
use crate::servers::child_of;
use crate::splits::{Child, record_split};
use crate::view::Snapshot;

/// How long a tablet server has to split a tablet.
const SPLIT_TIMEOUT: Duration = Duration::from_secs(60);

/// The names `ListTablets` shows for the two system tables, accepted by `SplitTablet`.
const ROOT_NAME: &str = "(root)";
const METADATA_NAME: &str = "(metadata)";

/// The tablet `SplitTablet(table, row, at_row)` splits: the record in `snapshot` of the table
/// named `table` whose range holds `row`. Checks everything that can be checked without the
/// tablet server.
pub fn split_target<'a>(
    snapshot: &'a Snapshot,
    table: &str,
    row: &[u8],
    at_row: bool,
) -> Result<&'a TabletRecord, Error> {
    if row.len() > RowKey::MAX_LEN {
        return Err(Error::invalid_argument(format!(
            "a row key is at most {} bytes, not {}",
            RowKey::MAX_LEN,
            row.len()
        )));
    }
    let table_id = match table {
        ROOT_NAME => TableId::ROOT,
        METADATA_NAME => TableId::METADATA,
        name => {
            let t = snapshot
                .tables
                .values()
                .find(|t| t.name == name)
                .ok_or_else(|| Error::new(Code::NotFound, format!("no table named {name}")))?;
            if t.state != pb::TableState::Ready {
                return Err(Error::new(
                    Code::FailedPrecondition,
                    format!("table {name} is {:?}, not ready", t.state),
                ));
            }
            t.id
        }
    };
    if table_id == TableId::ROOT {
        return Err(Error::new(
            Code::FailedPrecondition,
            "the root tablet never splits",
        ));
    }
    if snapshot.incomplete.contains(&table_id) {
        return Err(Error::new(
            Code::Unavailable,
            format!("the tablets of table {table} cannot all be read now; try again"),
        ));
    }
    let record = snapshot
        .records
        .values()
        .find(|r| r.table == table_id && r.contains(row))
        .ok_or_else(|| {
            Error::new(
                Code::Unavailable,
                format!(
                    "no tablet of table {table} holds row {:?} now; try again",
                    row.escape_ascii().to_string()
                ),
            )
        })?;
    if at_row && row == &record.start_row[..] {
        return Err(Error::invalid_argument(format!(
            "split row {:?} is where tablet {} starts: a split row must be inside the tablet",
            row.escape_ascii().to_string(),
            record.tablet
        )));
    }
    if !snapshot.is_served(record) {
        return Err(Error::new(
            Code::Unavailable,
            format!(
                "tablet {} is not served at epoch {} now; try again",
                record.tablet, record.epoch.0
            ),
        ));
    }
    Ok(record)
}

/// A split the tablet server made: where, and its children.
struct SplitDone {
    server: ServerId,
    addr: String,
    left: Child,
    right: Child,
}

impl Active {
    /// `SplitTablet`: see the module documentation. Answers the children's records
    /// `(left, right)`.
    pub async fn split_tablet(
        &self,
        table: &str,
        row: Bytes,
        at_row: bool,
    ) -> Result<(TabletRecord, TabletRecord), Error> {
        let _one = self.lock_ops().await;
        self.exec().check_safe()?;
        let snapshot = self.gather().await?;
        let parent = split_target(&snapshot, table, &row, at_row)?;
        let answer = self
            .ask_split(&snapshot, parent, at_row.then_some(row))
            .await;
        // Whatever happened, the next round looks at the tablet again.
        self.wake();
        let done = answer?;
        record_split(
            self.exec(),
            parent,
            &done.left,
            &done.right,
            Some((&done.server, &done.addr)),
        )
        .await
    }

    /// Sends `TabletAdmin.SplitTablet` for `parent` to its server; answers the server, its
    /// address and the two children.
    async fn ask_split(
        &self,
        snapshot: &Snapshot,
        parent: &TabletRecord,
        split_row: Option<Bytes>,
    ) -> Result<SplitDone, Error> {
        let server = parent.server.clone().ok_or_else(|| {
            Error::new(
                Code::Unavailable,
                format!("tablet {} is not assigned", parent.tablet),
            )
        })?;
        let addr = snapshot.addr_of(&server).ok_or_else(|| {
            Error::new(Code::Unavailable, format!("tablet server {server} is gone"))
        })?;
        let (left_id, right_id) = loop {
            let (l, r) = (fresh_tablet_id(), fresh_tablet_id());
            if l != r && !snapshot.records.contains_key(&l) && !snapshot.records.contains_key(&r) {
                break (l, r);
            }
        };
        let child_epoch = Epoch(parent.epoch.0 + 1);
        let mut call = tonic::Request::new(tpb::SplitTabletRequest {
            master_epoch: Some(tpb::MasterEpoch {
                epoch: self.exec().leadership.epoch().0,
            }),
            tablet_id: parent.tablet.0,
            tablet_epoch: parent.epoch.0,
            split_row: split_row.map(|r| r.to_vec()),
            left_tablet_id: left_id.0,
            right_tablet_id: right_id.0,
            child_epoch: child_epoch.0,
        });
        call.set_timeout(SPLIT_TIMEOUT);
        self.exec().check_safe()?;
        let mut admin = self.exec().channels.admin(&addr)?;
        let answer = admin
            .split_tablet(call)
            .await
            .map_err(Error::from)?
            .into_inner();
        let child = |status: Option<tpb::TabletStatus>, side: &str| {
            status
                .and_then(|s| s.tablet)
                .map(|d| child_of(&d))
                .ok_or_else(|| {
                    Error::new(
                        Code::Internal,
                        format!(
                            "tablet server {server} split tablet {} but named no {side} child",
                            parent.tablet
                        ),
                    )
                })
        };
        let left = child(answer.left, "left")?;
        let right = child(answer.right, "right")?;
        info!(
            parent = %parent.tablet,
            left = %left.tablet,
            right = %right.tablet,
            %server,
            epoch = child_epoch.0,
            "tablet split on request"
        );
        Ok(SplitDone {
            server,
            addr,
            left,
            right,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tabula_client::meta::TabletState;
    use tabula_common::TabletId;

    use super::*;
    use crate::bootstrap::new_tablet;
    use crate::plan::{ServedTablet, ServerView};
    use crate::tables::Table;

    const T: TableId = TableId(7);

    fn served(mut r: TabletRecord, server: &ServerId, snapshot: &mut Snapshot) -> TabletRecord {
        r.state = TabletState::Assigned;
        r.server = Some(server.clone());
        r.epoch = Epoch(3);
        let view = snapshot
            .servers
            .live
            .entry(server.clone())
            .or_insert_with(|| ServerView {
                id: server.clone(),
                addr: "127.0.0.1:1".into(),
                tablets: vec![],
            });
        view.tablets.push(ServedTablet {
            tablet: r.tablet,
            table: r.table,
            epoch: r.epoch,
            size_bytes: 0,
        });
        r
    }

    /// Table "t" in two tablets `["", "m")` (served) and `["m", ∞)` (not served), and the
    /// root tablet.
    fn snapshot() -> Snapshot {
        let mut s = Snapshot::default();
        let server = ServerId("ts".into());
        s.tables.insert(
            T,
            Table {
                name: "t".into(),
                id: T,
                schema: tpb::Schema::default(),
                state: pb::TableState::Ready,
                generation: 1,
            },
        );
        let left = new_tablet(
            T,
            TabletId(10),
            Bytes::new(),
            Some(Bytes::from_static(b"m")),
        );
        let left = served(left, &server, &mut s);
        let right = new_tablet(T, TabletId(11), Bytes::from_static(b"m"), None);
        let root = new_tablet(TableId::ROOT, TabletId(1), Bytes::new(), None);
        let root = served(root, &server, &mut s);
        for r in [left, right, root] {
            s.records.insert(r.tablet, r);
        }
        s
    }

    #[test]
    fn the_tablet_holding_the_row_is_split() {
        let s = snapshot();
        assert_eq!(
            split_target(&s, "t", b"c", true).unwrap().tablet,
            TabletId(10)
        );
        assert_eq!(
            split_target(&s, "t", b"", false).unwrap().tablet,
            TabletId(10)
        );
    }

    #[test]
    fn refusals_carry_the_right_codes() {
        let s = snapshot();
        let code = |table: &str, row: &[u8], at_row| {
            split_target(&s, table, row, at_row).unwrap_err().code
        };
        assert_eq!(code("(root)", b"a", true), Code::FailedPrecondition);
        assert_eq!(code("nope", b"a", true), Code::NotFound);
        // At a tablet's start: the table's beginning or an existing boundary.
        assert_eq!(code("t", b"", true), Code::InvalidArgument);
        // "m" is where the unserved tablet starts; the start is checked first.
        assert_eq!(code("t", b"m", true), Code::InvalidArgument);
        assert_eq!(code("t", b"x", true), Code::Unavailable);
        let long = vec![b'a'; RowKey::MAX_LEN + 1];
        assert_eq!(code("t", &long, true), Code::InvalidArgument);
        let mut incomplete = snapshot();
        incomplete.incomplete.insert(T);
        assert_eq!(
            split_target(&incomplete, "t", b"c", true).unwrap_err().code,
            Code::Unavailable
        );
        let mut deleting = snapshot();
        deleting.tables.get_mut(&T).unwrap().state = pb::TableState::Deleting;
        assert_eq!(
            split_target(&deleting, "t", b"c", true).unwrap_err().code,
            Code::FailedPrecondition
        );
    }
}
