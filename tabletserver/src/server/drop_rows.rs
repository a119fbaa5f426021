//! `DropRows`: deleting every row of one tablet that starts with a prefix, or all of them.
//!
//! The engine has no range tombstone, so the rows are found by scanning and deleted one by
//! one through the normal write path: each `DeleteFromRow` is a row mutation applied under the
//! row's lock (as `MutateRow` does), appended to the commit log and synced before it counts.
//! Work goes in bounded batches: a scan of at most [`DROP_BATCH_ROWS`] row keys, then their
//! deletes spread over at most [`DROP_LANES`] blocking tasks so that their syncs share group
//! commits. Between batches the tablet is looked up again (an unload or a newer epoch ends
//! the drop with that error) and the gate is asked again: rows deleted after the server
//! stopped being safe make the answer `Unavailable` (outcome unknown; a retry is harmless).

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use tabula_common::{Code, Error};
use tokio::task::JoinSet;

use super::gate::Gate;
use super::registry::ServedTablet;
use crate::engine::sstable::RowRange;
use crate::engine::{CellFilter, Mutation, RowMutation, ScanOptions};

/// Most row keys scanned (and deleted) per batch.
pub const DROP_BATCH_ROWS: usize = 512;

/// Most blocking tasks deleting the rows of one batch at once.
const DROP_LANES: usize = 16;

/// Which rows of a tablet to drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropTarget {
    /// Rows whose key starts with these (non-empty) bytes.
    Prefix(Bytes),
    /// Every row.
    All,
}

impl DropTarget {
    /// The rows this target names (before intersecting with the tablet's range).
    pub fn range(&self) -> RowRange {
        match self {
            DropTarget::All => RowRange::all(),
            DropTarget::Prefix(prefix) => RowRange {
                start: Bound::Included(prefix.clone()),
                end: prefix_end(prefix).map_or(Bound::Unbounded, Bound::Excluded),
            },
        }
    }
}

/// The first key after every key starting with `prefix`, or `None` if there is none (the
/// prefix is all `0xff`).
fn prefix_end(prefix: &[u8]) -> Option<Bytes> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(Bytes::from(end));
        }
    }
    None
}

/// Deletes every row of the tablet `find` answers that `target` names; answers how many
/// rows were deleted. `find` is asked before every batch.
pub async fn drop_rows(
    gate: &Gate,
    find: impl Fn() -> Result<Arc<ServedTablet>, Error>,
    target: &DropTarget,
) -> Result<u64, Error> {
    let wanted = target.range();
    let mut after: Option<Bytes> = None;
    let mut deleted = 0u64;
    loop {
        gate.check_serving()?;
        let served = find()?;
        let mut range = wanted.clone();
        if let Some(last) = &after {
            range.start = Bound::Excluded(last.clone());
        }
        let scanning = served.clone();
        let keys = blocking(move || next_keys(&scanning, range)).await?;
        let Some(last) = keys.last().cloned() else {
            return Ok(deleted);
        };
        let full = keys.len() == DROP_BATCH_ROWS;
        deleted += delete_rows(served, keys).await?;
        gate.check_serving().map_err(|e| {
            Error::new(
                Code::Unavailable,
                format!(
                    "{deleted} rows were deleted, but this server stopped being safe to serve \
                     before it could acknowledge them ({}); retry the drop",
                    e.message
                ),
            )
        })?;
        if !full {
            return Ok(deleted);
        }
        after = Some(last);
    }
}

/// The keys of the next rows in `range` that hold a cell, at most [`DROP_BATCH_ROWS`].
fn next_keys(served: &ServedTablet, range: RowRange) -> Result<Vec<Bytes>, Error> {
    let rows = served.tablet.scan(ScanOptions {
        range,
        // One cell per column is enough to know the row exists.
        filter: CellFilter {
            max_versions: Some(1),
            ..CellFilter::default()
        },
        reverse: false,
        limit: Some(DROP_BATCH_ROWS),
    })?;
    let mut keys = Vec::with_capacity(DROP_BATCH_ROWS);
    for row in rows {
        keys.push(row?.key);
    }
    Ok(keys)
}

/// Deletes `rows` (in key order) from `served`, each under its row's lock, in lanes of
/// neighbouring rows; answers how many were deleted.
async fn delete_rows(served: Arc<ServedTablet>, rows: Vec<Bytes>) -> Result<u64, Error> {
    let per_lane = rows.len().div_ceil(DROP_LANES).max(1);
    let mut lanes = JoinSet::new();
    for chunk in rows.chunks(per_lane) {
        let chunk = chunk.to_vec();
        let served = served.clone();
        lanes.spawn_blocking(move || {
            for row in chunk {
                let _guard = served.tablet.lock_row(&row);
                served.count_write();
                served.tablet.apply(RowMutation {
                    row: row.clone(),
                    mutations: vec![Mutation::DeleteFromRow],
                })?;
            }
            Ok::<_, Error>(())
        });
    }
    let mut first_error = None;
    while let Some(joined) = lanes.join_next().await {
        let done = joined
            .map_err(|e| Error::internal(format!("a DropRows task failed: {e}")))
            .and_then(|r| r);
        if let Err(e) = done
            && first_error.is_none()
        {
            first_error = Some(e);
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(rows.len() as u64),
    }
}

/// Runs engine work on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(format!("a DropRows task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges_end_after_the_last_key_with_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(Bytes::from_static(b"ac")));
        assert_eq!(prefix_end(b"a\xff"), Some(Bytes::from_static(b"b")));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        let range = DropTarget::Prefix(Bytes::from_static(b"k")).range();
        assert!(range.contains(b"k"));
        assert!(range.contains(b"k\xff\xff"));
        assert!(!range.contains(b"l"));
        assert!(!range.contains(b"j\xff"));
        assert!(DropTarget::All.range().contains(b""));
    }
}
