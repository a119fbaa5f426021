//! Table-wide tablet commands: `Flush` / `Compact` (a minor or major compaction of every
//! tablet of a table) and `DropRowRange` (delete the rows with a prefix, or all rows).
//!
//! Each takes a fresh picture of the cluster under the operation lock, then releases it and
//! sends one command per tablet to the server that serves it, with the master epoch and the
//! tablet's epoch, at most [`MAX_CONCURRENT`] at a time. Holding the lock for the whole run
//! would stop the rounds — and so the handling of a dead server — for as long as a major
//! compaction of a big table takes; without it, a tablet moved or split meanwhile answers its
//! server's `WrongTablet`, which is reported like a tablet that is not served.
//!
//! A tablet that is not served (being assigned or moved) is not skipped in silence: the answer
//! is `Unavailable` naming every tablet that failed, after the others were done; the commands
//! are idempotent, so the caller simply retries.

use std::sync::Arc;

use bytes::Bytes;
use tabula_client::meta::TabletRecord;
use tabula_common::{Code, Error, TabletId};
use tabula_proto::tabula::tablet::v1 as tpb;
use tabula_proto::tabula::tablet::v1::tablet_admin_client::TabletAdminClient;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tonic::transport::Channel;
use tracing::info;

use crate::active::Active;
use crate::view::Snapshot;

/// Most tablet commands of one table operation in flight at once.
pub const MAX_CONCURRENT: usize = 8;

/// The rows `DropRowRange` deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropTarget {
    /// Rows whose key starts with these (non-empty) bytes.
    Prefix(Bytes),
    /// Every row of the table.
    All,
}

/// One tablet command to send.
#[derive(Debug, Clone)]
enum Command {
    Compact { major: bool },
    Drop(DropTarget),
}

impl Active {
    /// `Flush` (`major = false`: every tablet's memtable becomes an SSTable) and `Compact`
    /// (`major = true`: every tablet's data becomes one SSTable) of the table `name`.
    pub async fn flush_table(&self, name: &str, major: bool) -> Result<(), Error> {
        let tablets = self
            .on_every_tablet(name, Command::Compact { major })
            .await?;
        info!(table = name, major, tablets, "table compacted");
        Ok(())
    }

    /// `DropRowRange`: deletes the rows `target` names from every tablet of the table `name`
    /// that can hold them; answers how many rows were deleted.
    pub async fn drop_row_range(&self, name: &str, target: DropTarget) -> Result<u64, Error> {
        if matches!(&target, DropTarget::Prefix(p) if p.is_empty()) {
            return Err(Error::invalid_argument(
                "DropRowRange needs a non-empty row key prefix or delete_all_data_from_table",
            ));
        }
        let rows = self.on_every_tablet(name, Command::Drop(target)).await?;
        info!(table = name, rows, "rows dropped");
        Ok(rows)
    }

    /// Sends `command` for every tablet of the table `name` it concerns; answers the sum of
    /// the per-tablet answers (rows dropped, or 1 per tablet compacted).
    async fn on_every_tablet(&self, name: &str, command: Command) -> Result<u64, Error> {
        let (snapshot, table) = {
            let _one = self.lock_ops().await;
            self.exec().check_safe()?;
            (self.gather().await?, self.catalog().get(name).await?)
        };
        if snapshot.incomplete.contains(&table.id) {
            return Err(Error::new(
                Code::Unavailable,
                format!("the tablets of table {name} cannot all be read now; try again"),
            ));
        }
        let records: Vec<&TabletRecord> = snapshot
            .records
            .values()
            .filter(|r| r.table == table.id && concerns(&command, r))
            .collect();
        let epoch = self.exec().leadership.epoch().0;
        let limit = Arc::new(Semaphore::new(MAX_CONCURRENT));
        let mut failed: Vec<(TabletId, Error)> = Vec::new();
        let mut tasks = JoinSet::new();
        for record in records {
            let client = match self.client_for(&snapshot, record) {
                Ok(client) => client,
                Err(e) => {
                    failed.push((record.tablet, e));
                    continue;
                }
            };
            self.exec().check_safe()?;
            let (tablet, tablet_epoch) = (record.tablet, record.epoch.0);
            let command = command.clone();
            let limit = limit.clone();
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let answer = send(client, epoch, tablet, tablet_epoch, command).await;
                (tablet, answer)
            });
        }
        let mut total = 0u64;
        while let Some(joined) = tasks.join_next().await {
            let (tablet, answer) = joined
                .map_err(|e| Error::internal(format!("a tablet command task failed: {e}")))?;
            match answer {
                Ok(n) => total += n,
                Err(e) => failed.push((tablet, e)),
            }
        }
        if failed.is_empty() {
            return Ok(total);
        }
        failed.sort_by_key(|(tablet, _)| *tablet);
        Err(summarise(name, &failed))
    }

    /// A minor (`major = false`) or major compaction of the one tablet `record` names, on the
    /// server `snapshot` has serving it.
    pub(crate) async fn compact_tablet(
        &self,
        snapshot: &Snapshot,
        record: &TabletRecord,
        major: bool,
    ) -> Result<(), Error> {
        self.exec().check_safe()?;
        let client = self.client_for(snapshot, record)?;
        let epoch = self.exec().leadership.epoch().0;
        send(
            client,
            epoch,
            record.tablet,
            record.epoch.0,
            Command::Compact { major },
        )
        .await?;
        Ok(())
    }

    /// The admin client of the server serving `record`'s tablet; `Unavailable` if it is not
    /// served now.
    fn client_for(
        &self,
        snapshot: &Snapshot,
        record: &TabletRecord,
    ) -> Result<TabletAdminClient<Channel>, Error> {
        let not_served = || {
            Error::new(
                Code::Unavailable,
                format!("tablet {} is not served; try again", record.tablet),
            )
        };
        if !snapshot.is_served(record) {
            return Err(not_served());
        }
        let server = record.server.as_ref().ok_or_else(not_served)?;
        let addr = snapshot.addr_of(server).ok_or_else(not_served)?;
        self.exec().channels.admin(&addr)
    }
}

/// Whether `command` has work on `record`'s tablet: a prefix drop only on tablets whose rows
/// overlap the prefix's.
fn concerns(command: &Command, record: &TabletRecord) -> bool {
    let Command::Drop(DropTarget::Prefix(prefix)) = command else {
        return true;
    };
    let starts_before_prefix_end = match prefix_end(prefix) {
        Some(end) => record.start_row < end,
        None => true,
    };
    let ends_after_prefix = record.end_row.as_ref().is_none_or(|end| end > prefix);
    starts_before_prefix_end && ends_after_prefix
}

/// The first key after every key starting with `prefix`; `None` if there is none.
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

/// Sends one command; answers rows dropped, or 1 for a compaction.
async fn send(
    mut client: TabletAdminClient<Channel>,
    master_epoch: u64,
    tablet: TabletId,
    tablet_epoch: u64,
    command: Command,
) -> Result<u64, Error> {
    let master_epoch = Some(tpb::MasterEpoch {
        epoch: master_epoch,
    });
    match command {
        Command::Compact { major } => {
            client
                .compact_tablet(tpb::CompactTabletRequest {
                    master_epoch,
                    tablet_id: tablet.0,
                    tablet_epoch,
                    major,
                })
                .await
                .map_err(Error::from)?;
            Ok(1)
        }
        Command::Drop(target) => {
            use tpb::drop_rows_request::Target;
            let target = match target {
                DropTarget::Prefix(prefix) => Target::RowKeyPrefix(prefix.to_vec()),
                DropTarget::All => Target::DeleteAllDataFromTable(true),
            };
            let answer = client
                .drop_rows(tpb::DropRowsRequest {
                    master_epoch,
                    tablet_id: tablet.0,
                    tablet_epoch,
                    target: Some(target),
                })
                .await
                .map_err(Error::from)?;
            Ok(answer.into_inner().rows)
        }
    }
}

/// One error naming every tablet that failed; `Unavailable` when any of them only needs a
/// retry (not served, or moved or split since the picture), else the first failure's code.
fn summarise(table: &str, failed: &[(TabletId, Error)]) -> Error {
    let retry = |e: &Error| matches!(e.code, Code::Unavailable | Code::WrongTablet { .. });
    let code = if failed.iter().any(|(_, e)| retry(e)) {
        Code::Unavailable
    } else {
        failed
            .first()
            .map_or(Code::Internal, |(_, e)| e.code.clone())
    };
    let details: Vec<String> = failed
        .iter()
        .map(|(tablet, e)| format!("tablet {tablet}: {}", e.message))
        .collect();
    Error::new(
        code,
        format!(
            "{} tablet(s) of table {table} failed (the others are done): {}",
            failed.len(),
            details.join("; ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tabula_common::{Epoch, TableId};

    fn record(start: &str, end: Option<&str>) -> TabletRecord {
        let mut r = crate::bootstrap::new_tablet(
            TableId(5),
            TabletId(9),
            Bytes::copy_from_slice(start.as_bytes()),
            end.map(|e| Bytes::copy_from_slice(e.as_bytes())),
        );
        r.epoch = Epoch(1);
        r
    }

    #[test]
    fn a_prefix_drop_concerns_only_tablets_overlapping_the_prefix() {
        let drop =
            |p: &str| Command::Drop(DropTarget::Prefix(Bytes::copy_from_slice(p.as_bytes())));
        assert!(concerns(&drop("k"), &record("", Some("m"))));
        assert!(concerns(&drop("k"), &record("k5", None)));
        assert!(!concerns(&drop("k"), &record("", Some("k"))));
        assert!(!concerns(&drop("k"), &record("l", None)));
        assert!(concerns(&drop("k"), &record("", None)));
        assert!(concerns(
            &Command::Drop(DropTarget::All),
            &record("x", None)
        ));
        assert!(concerns(
            &Command::Compact { major: true },
            &record("x", None)
        ));
    }

    #[test]
    fn failures_name_every_tablet() {
        let e = summarise(
            "t",
            &[
                (TabletId(1), Error::new(Code::NotFound, "gone")),
                (
                    TabletId(2),
                    Error::new(Code::Unavailable, "tablet 2 is not served"),
                ),
            ],
        );
        assert_eq!(e.code, Code::Unavailable);
        assert!(e.message.contains("gone") && e.message.contains("not served"));
        let moved = Error::new(
            Code::WrongTablet {
                hint: String::new(),
            },
            "moved",
        );
        let e = summarise("t", &[(TabletId(3), moved)]);
        assert_eq!(
            e.code,
            Code::Unavailable,
            "a moved tablet only needs a retry"
        );
        let e = summarise("t", &[(TabletId(1), Error::new(Code::NotFound, "gone"))]);
        assert_eq!(e.code, Code::NotFound);
    }
}
