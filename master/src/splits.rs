//! Recording splits in METADATA.
//!
//! A tablet server splits a tablet on its own (past the size threshold) or when asked. The
//! split's commit point is on the storage root: the parent's manifest is replaced by one naming
//! its two children, whose manifests were written first (the tablet server's engine). From
//! then on the parent can never be loaded again — a `LoadTablet` of it answers its children
//! instead — so a split is never lost, even if the server and the master both die before
//! METADATA knows. The master learns of a split three ways, all leading here: the server's
//! `ReportSplit`, a served tablet whose status names a `split_parent` METADATA still lists, or
//! a `LoadTablet` of the parent answering `split_into`.
//!
//! Recording it is two single-row writes, each idempotent: insert the left child's row (keyed
//! by its end row, naming its parent and right sibling), then replace the parent's row (keyed
//! by the shared end row) with the right child's by compare-and-set. A master that dies between
//! the two leaves a left row whose `split_parent` names a tablet still in METADATA: the next
//! master, seeing the children again, redoes both steps (the insert finds its own row).

use bytes::Bytes;
use tabula_client::meta::{TabletRecord, TabletState};
use tabula_common::{Code, Epoch, Error, ServerId, TableId, TabletId};
use tracing::info;

use crate::execute::Executor;

/// A child of a split, as a tablet server describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    /// Its id.
    pub tablet: TabletId,
    /// Its table.
    pub table: TableId,
    /// Its first row.
    pub start_row: Bytes,
    /// The row after its last.
    pub end_row: Option<Bytes>,
    /// The epoch it is served (or to be served) at.
    pub epoch: Epoch,
}

/// The two records replacing `parent`: `(left, right)`. `server` is where the children are
/// served already (`None`: nowhere yet, the planner assigns them).
pub fn child_records(
    parent: &TabletRecord,
    left: &Child,
    right: &Child,
    server: Option<(&ServerId, &str)>,
    master_epoch: Epoch,
) -> Result<(TabletRecord, TabletRecord), Error> {
    let tiles = left.table == parent.table
        && right.table == parent.table
        && left.start_row == parent.start_row
        && left.end_row.as_ref() == Some(&right.start_row)
        && right.end_row == parent.end_row
        && left.tablet != right.tablet;
    if !tiles {
        return Err(Error::new(
            Code::FailedPrecondition,
            format!(
                "children {} and {} do not split tablet {} in two",
                left.tablet, right.tablet, parent.tablet
            ),
        ));
    }
    let record = |child: &Child| TabletRecord {
        table: child.table,
        tablet: child.tablet,
        start_row: child.start_row.clone(),
        end_row: child.end_row.clone(),
        epoch: child.epoch,
        state: if server.is_some() {
            TabletState::Assigned
        } else {
            TabletState::Unassigned
        },
        server: server.map(|(id, _)| id.clone()),
        server_addr: server.map(|(_, a)| a.to_owned()).unwrap_or_default(),
        master_epoch,
        manifest_path: crate::bootstrap::manifest_path(child.tablet),
        split_parent: Some(parent.tablet),
        split_sibling: None,
        // The split wrote both manifests.
        created: true,
    };
    let mut l = record(left);
    l.split_sibling = Some(right.tablet);
    let r = record(right);
    Ok((l, r))
}

/// Records in METADATA that `parent` was split into `left` and `right` (see the module
/// documentation); answers the children's records.
pub async fn record_split(
    exec: &Executor,
    parent: &TabletRecord,
    left: &Child,
    right: &Child,
    server: Option<(&ServerId, &str)>,
) -> Result<(TabletRecord, TabletRecord), Error> {
    if parent.table == TableId::ROOT {
        return Err(Error::new(
            Code::FailedPrecondition,
            "the root tablet never splits",
        ));
    }
    let (l, r) = child_records(parent, left, right, server, exec.leadership.epoch())?;
    exec.check_safe()?;
    if !exec.meta.compare_and_set(None, &l).await? {
        // Inserted before (by this split's earlier attempt) — or a different tablet ends
        // there, which would be a conflicting split.
        let existing = exec.meta.locate(l.table, &l.start_row).await?;
        if existing.tablet != l.tablet {
            return Err(Error::new(
                Code::FailedPrecondition,
                format!(
                    "METADATA holds tablet {} where the split of {} puts {}",
                    existing.tablet, parent.tablet, l.tablet
                ),
            ));
        }
    }
    exec.record(parent, &r).await?;
    exec.forget_replaced(&[parent.tablet]).await;
    info!(
        parent = %parent.tablet,
        left = %l.tablet,
        right = %r.tablet,
        table = parent.table.0,
        "split recorded in METADATA"
    );
    Ok((l, r))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::bootstrap::new_tablet;

    fn child(id: u64, start: &[u8], end: Option<&[u8]>) -> Child {
        Child {
            tablet: TabletId(id),
            table: TableId(5),
            start_row: Bytes::copy_from_slice(start),
            end_row: end.map(Bytes::copy_from_slice),
            epoch: Epoch(4),
        }
    }

    #[test]
    fn children_replace_their_parent() {
        let parent = new_tablet(TableId(5), TabletId(9), Bytes::from_static(b"c"), None);
        let server = ServerId("ts-1".into());
        let (l, r) = child_records(
            &parent,
            &child(10, b"c", Some(b"m")),
            &child(11, b"m", None),
            Some((&server, "127.0.0.1:1")),
            Epoch(7),
        )
        .unwrap();
        assert_eq!(l.split_parent, Some(TabletId(9)));
        assert_eq!(l.split_sibling, Some(TabletId(11)));
        assert_eq!(r.meta_key(), parent.meta_key());
        assert_eq!(l.state, TabletState::Assigned);
        assert_eq!(r.server.as_ref(), Some(&server));
        assert!(l.created && r.created);
        assert_eq!(l.epoch, Epoch(4));
        assert_eq!(r.master_epoch, Epoch(7));
        let (l, _) = child_records(
            &parent,
            &child(10, b"c", Some(b"m")),
            &child(11, b"m", None),
            None,
            Epoch(7),
        )
        .unwrap();
        assert_eq!(l.state, TabletState::Unassigned);
        assert_eq!(l.server, None);
    }

    #[test]
    fn children_that_do_not_tile_the_parent_are_refused() {
        let parent = new_tablet(TableId(5), TabletId(9), Bytes::from_static(b"c"), None);
        for (l, r) in [
            (child(10, b"a", Some(b"m")), child(11, b"m", None)),
            (child(10, b"c", Some(b"m")), child(11, b"n", None)),
            (child(10, b"c", Some(b"m")), child(11, b"m", Some(b"z"))),
            (child(10, b"c", Some(b"m")), child(10, b"m", None)),
        ] {
            let e = child_records(&parent, &l, &r, None, Epoch(1)).unwrap_err();
            assert_eq!(e.code, Code::FailedPrecondition);
        }
    }
}
