//! Merges in flight, recorded in the lock service: `/tabula/merges/<merged tablet id>` holds
//! `table=T left=L right=R merged=M epoch=E` (decimal ids; `E` is the merged tablet's epoch).
//!
//! Why: a tablet server marks the two merged tablets as replaced one after the other, and the
//! left's mark is the merge's commit point. Without a record of the merge, a failure between
//! the two marks left a master free to load the unmarked right tablet and serve writes that
//! the merged tablet (which already names the right's SSTables) would never see. With the
//! record, the master writes it before asking for the merge (both tablets unloaded), never
//! assigns a tablet an intent names, and settles every intent first in each round
//! (`merge_ops::settle_merges`): it repeats the idempotent merge until it succeeds and then
//! records it in METADATA, or rolls it back when the merge is refused — a refusal is
//! deterministic (both tablets' manifests are unchanged while no one serves them), so a slow
//! copy of the same request still running elsewhere is refused too. Only then is the intent
//! deleted.
//!
//! This file is the encoding (pure) and the lock-service reads and writes.

use std::collections::BTreeMap;

use tabula_common::{Code, Epoch, Error, TableId, TabletId};
use tabula_lockservice::client::LockClient;

/// Where merge intents live.
pub const MERGES_DIR: &str = "/tabula/merges";

/// One merge in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeIntent {
    /// The table of both tablets.
    pub table: TableId,
    /// The tablet whose rows come first.
    pub left: TabletId,
    /// Its right neighbour.
    pub right: TabletId,
    /// The tablet replacing both.
    pub merged: TabletId,
    /// The merged tablet's epoch.
    pub merged_epoch: Epoch,
}

impl MergeIntent {
    /// The intent's file.
    pub fn path(&self) -> String {
        format!("{MERGES_DIR}/{}", self.merged.0)
    }

    /// The file's contents.
    pub fn encode(&self) -> String {
        format!(
            "table={} left={} right={} merged={} epoch={}",
            self.table.0, self.left.0, self.right.0, self.merged.0, self.merged_epoch.0
        )
    }

    /// Parses [`MergeIntent::encode`]'s form; `None` if `text` is not one.
    pub fn decode(text: &str) -> Option<MergeIntent> {
        let mut fields = BTreeMap::new();
        for part in text.split_whitespace() {
            let (key, value) = part.split_once('=')?;
            let value: u64 = value.parse().ok()?;
            if fields.insert(key, value).is_some() {
                return None;
            }
        }
        let field = |k: &str| fields.get(k).copied();
        let intent = MergeIntent {
            table: TableId(field("table")?),
            left: TabletId(field("left")?),
            right: TabletId(field("right")?),
            merged: TabletId(field("merged")?),
            merged_epoch: Epoch(field("epoch")?),
        };
        (fields.len() == 5).then_some(intent)
    }

    /// The tablets it names.
    pub fn tablets(&self) -> [TabletId; 3] {
        [self.left, self.right, self.merged]
    }
}

/// An intent as stored, with its file's generation (for the compare-and-set delete).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredIntent {
    /// The intent.
    pub intent: MergeIntent,
    /// Its file's generation.
    pub generation: u64,
}

/// Records `intent` (the merges directory is created when missing).
pub async fn write(lock: &LockClient, intent: &MergeIntent) -> Result<StoredIntent, Error> {
    match lock.create(MERGES_DIR, b"").await {
        Ok(_) => {}
        Err(e) if e.code == Code::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let generation = lock
        .create(&intent.path(), intent.encode().as_bytes())
        .await?;
    Ok(StoredIntent {
        intent: *intent,
        generation,
    })
}

/// Every recorded intent. An unreadable file is an `Internal` error: the tablets it names
/// cannot be known, so nothing may be planned safely.
pub async fn list(lock: &LockClient) -> Result<Vec<StoredIntent>, Error> {
    let children = match lock.list(MERGES_DIR).await {
        Ok(listing) => listing.children,
        Err(e) if e.code == Code::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::with_capacity(children.len());
    for name in children {
        let path = format!("{MERGES_DIR}/{name}");
        let info = match lock.get(&path).await {
            Ok(info) => info,
            // Settled by another master since the listing.
            Err(e) if e.code == Code::NotFound => continue,
            Err(e) => return Err(e),
        };
        let intent = std::str::from_utf8(&info.contents)
            .ok()
            .and_then(MergeIntent::decode)
            .ok_or_else(|| Error::internal(format!("{path} does not hold a merge intent")))?;
        out.push(StoredIntent {
            intent,
            generation: info.generation,
        });
    }
    Ok(out)
}

/// Deletes a settled intent (compare-and-set on its generation; already gone is fine).
pub async fn remove(lock: &LockClient, stored: &StoredIntent) -> Result<(), Error> {
    match lock
        .delete(&stored.intent.path(), Some(stored.generation))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.code == Code::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn intent() -> MergeIntent {
        MergeIntent {
            table: TableId(7),
            left: TabletId(10),
            right: TabletId(11),
            merged: TabletId(u64::MAX),
            merged_epoch: Epoch(4),
        }
    }

    #[test]
    fn an_intent_round_trips_through_its_file() {
        let i = intent();
        assert_eq!(MergeIntent::decode(&i.encode()), Some(i));
        assert_eq!(i.path(), format!("{MERGES_DIR}/{}", u64::MAX));
        assert_eq!(
            i.tablets(),
            [TabletId(10), TabletId(11), TabletId(u64::MAX)]
        );
    }

    #[test]
    fn malformed_intents_are_refused() {
        for text in [
            "",
            "table=7 left=10 right=11 merged=12",
            "table=7 left=10 right=11 merged=12 epoch=x",
            "table=7 left=10 right=11 merged=12 epoch=4 extra=1",
            "table=7 left=10 left=10 right=11 merged=12 epoch=4",
            "table=7 left=10 right=11 merged=12 epoch",
        ] {
            assert_eq!(MergeIntent::decode(text), None, "{text:?}");
        }
    }
}
