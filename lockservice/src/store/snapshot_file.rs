//! The snapshot file: `snapshot/current`, a blob (`record.rs`) whose body is
//!
//! ```text
//!  0          4                      4+meta_len
//!  +----------+----------------------+------------------------------------+
//!  | meta_len | SnapshotMeta         | LockState::to_snapshot() bytes     |
//!  |   u32    | (postcard: last log  | (what openraft sends to followers) |
//!  |          | id, membership, id)  |                                    |
//!  +----------+----------------------+------------------------------------+
//! ```
//!
//! replaced atomically (temp + fsync + rename + directory fsync).

use std::path::Path;

use openraft::{BasicNode, SnapshotMeta};

use super::durable;
use super::error::StoreError;
use crate::types::NodeId;

/// The current snapshot's file name in `snapshot/`.
pub(super) const SNAPSHOT_FILE: &str = "current";
const SNAPSHOT_MAGIC: [u8; 8] = *b"TLKSNAP1";

/// Snapshot metadata as openraft defines it for our types.
pub(super) type Meta = SnapshotMeta<NodeId, BasicNode>;

/// Replaces the snapshot file durably.
pub(super) fn write(dir: &Path, meta: &Meta, data: &[u8]) -> Result<(), StoreError> {
    let meta_bytes = postcard::to_stdvec(meta).map_err(|source| StoreError::Encode {
        what: "snapshot meta",
        source,
    })?;
    let meta_len = u32::try_from(meta_bytes.len()).map_err(|_| {
        StoreError::inconsistent(&dir.join(SNAPSHOT_FILE), "snapshot meta over 4 GiB")
    })?;
    let mut body = Vec::with_capacity(4 + meta_bytes.len() + data.len());
    body.extend_from_slice(&meta_len.to_le_bytes());
    body.extend_from_slice(&meta_bytes);
    body.extend_from_slice(data);
    durable::write_blob(dir, SNAPSHOT_FILE, &SNAPSHOT_MAGIC, &body)
}

/// Reads the snapshot file: its meta and the state machine's bytes.
pub(super) fn read(dir: &Path) -> Result<Option<(Meta, Vec<u8>)>, StoreError> {
    let path = dir.join(SNAPSHOT_FILE);
    let Some(mut body) = durable::read_blob(dir, SNAPSHOT_FILE, &SNAPSHOT_MAGIC)? else {
        return Ok(None);
    };
    let meta_len = body
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(|| StoreError::corrupt(&path, 16, "snapshot body shorter than 4 bytes"))?;
    let meta_bytes = body
        .get(4..4 + meta_len)
        .ok_or_else(|| StoreError::corrupt(&path, 20, "snapshot meta runs past the end"))?;
    let meta: Meta = postcard::from_bytes(meta_bytes)
        .map_err(|e| StoreError::corrupt(&path, 20, format!("snapshot meta: {e}")))?;
    let data = body.split_off(4 + meta_len);
    Ok(Some((meta, data)))
}
