//! `Admin`: thin wrappers over the active master's `MasterService`.
//!
//! The active master is found in the lock service: `/tabula/master`'s contents are
//! `id addr epoch` while someone holds the lock. A standby answers `NotLeader` with the active
//! master's address as its hint, which the next attempt follows. Reads (list, get, status)
//! retry on any retryable code until the deadline; changes retry only when the master did not
//! act (`NotLeader`, a refused connection, no master known yet), so a create that may have
//! happened is reported, not repeated. `drop_row_range`, like `flush` and `compact`, is
//! retried on any retryable code: repeating it is like a drop that ran a little later.

use std::time::Duration;

use parking_lot::Mutex;
use tabula_common::{Code, Error, ServerId, TableId, TabletId};
use tabula_proto::tabula::master::v1 as mpb;
use tabula_proto::tabula::master::v1::master_service_client::MasterServiceClient;
use tabula_proto::tabula::tablet::v1 as tpb;
use tonic::transport::Channel;

use crate::client::Client;
use crate::meta::{TabletRecord, from_status};
use crate::retry::{Backoff, never_sent};

/// The lock whose holder is the active master; its contents are `id addr epoch`.
pub const MASTER_LOCK: &str = "/tabula/master";

/// How a column family drops old cells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GcRule {
    /// Keep everything.
    KeepAll,
    /// Keep at most this many versions per column.
    MaxVersions(i32),
    /// Drop cells older than this.
    MaxAge(Duration),
    /// Drop a cell if every rule would.
    Intersection(Vec<GcRule>),
    /// Drop a cell if any rule would.
    Union(Vec<GcRule>),
}

impl GcRule {
    fn to_proto(&self) -> Option<tpb::GcRule> {
        use tpb::gc_rule::Rule;
        let rule = match self {
            GcRule::KeepAll => return None,
            GcRule::MaxVersions(n) => Rule::MaxNumVersions(*n),
            GcRule::MaxAge(d) => {
                Rule::MaxAgeMicros(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
            }
            GcRule::Intersection(rules) => Rule::Intersection(tpb::gc_rule::Intersection {
                rules: rules.iter().filter_map(GcRule::to_proto).collect(),
            }),
            GcRule::Union(rules) => Rule::Union(tpb::gc_rule::Union {
                rules: rules.iter().filter_map(GcRule::to_proto).collect(),
            }),
        };
        Some(tpb::GcRule { rule: Some(rule) })
    }
}

/// A column family to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family {
    /// Its name.
    pub name: String,
    /// Its GC rule.
    pub gc: GcRule,
}

impl Family {
    /// A family keeping everything.
    pub fn new(name: impl Into<String>) -> Family {
        Family {
            name: name.into(),
            gc: GcRule::KeepAll,
        }
    }

    /// The same family with `gc`.
    pub fn gc(self, gc: GcRule) -> Family {
        Family { gc, ..self }
    }
}

/// One change of `modify_column_families`.
#[derive(Debug, Clone, PartialEq)]
pub enum FamilyChange {
    /// Add a family (error AlreadyExists if it exists).
    Create(Family),
    /// Change an existing family's GC rule.
    Update(Family),
    /// Drop a family and all its data.
    Drop(String),
}

impl FamilyChange {
    fn to_proto(&self) -> mpb::ColumnFamilyModification {
        use mpb::column_family_modification::Mod;
        // The wire form of "keep everything" is a rule with nothing in it.
        let rule = |f: &Family| f.gc.to_proto().unwrap_or_default();
        let (family, change) = match self {
            FamilyChange::Create(f) => (f.name.clone(), Mod::Create(rule(f))),
            FamilyChange::Update(f) => (f.name.clone(), Mod::Update(rule(f))),
            FamilyChange::Drop(name) => (name.clone(), Mod::Drop(true)),
        };
        mpb::ColumnFamilyModification {
            family,
            r#mod: Some(change),
        }
    }
}

/// A table as the master describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct TableInfo {
    /// Its name.
    pub name: String,
    /// Its id.
    pub id: TableId,
    /// Its family names.
    pub families: Vec<String>,
    /// The wire form, with GC rules and state.
    pub proto: mpb::Table,
}

impl TableInfo {
    fn from_proto(t: mpb::Table) -> TableInfo {
        TableInfo {
            name: t.name.clone(),
            id: TableId(t.table_id),
            families: t
                .schema
                .as_ref()
                .map(|s| s.families.iter().map(|f| f.name.clone()).collect())
                .unwrap_or_default(),
            proto: t,
        }
    }
}

/// One tablet in the admin view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TabletInfo {
    /// Its table's name.
    pub table: String,
    /// Its METADATA record.
    pub record: TabletRecord,
    /// Its approximate size.
    pub size_bytes: u64,
}

/// The admin API. Cheap to clone.
#[derive(Debug)]
pub struct Admin {
    client: Client,
    master: Mutex<Option<String>>,
}

impl Admin {
    pub(crate) fn new(client: Client) -> Admin {
        Admin {
            client,
            master: Mutex::new(None),
        }
    }

    /// The active master's address, as `/tabula/master` says.
    pub async fn active_master(&self) -> Result<String, Error> {
        let info = self.client.lock().get(MASTER_LOCK).await?;
        let text = std::str::from_utf8(&info.contents).unwrap_or_default();
        let mut parts = text.split_whitespace();
        match (
            info.lock_holders.is_empty(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) {
            (false, Some(_id), Some(addr), Some(_epoch)) => Ok(addr.to_owned()),
            _ => Err(Error::new(Code::Unavailable, "no active master right now")),
        }
    }

    /// Runs `call` on the active master, retried as the module doc says.
    async fn call<T, F, Fut>(&self, what: &str, read_only: bool, call: F) -> Result<T, Error>
    where
        F: Fn(MasterServiceClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut backoff = Backoff::new(self.client.options());
        let timeout = self.client.options().rpc_timeout;
        loop {
            let cached = self.master.lock().clone();
            let addr = match cached {
                Some(a) => a,
                None => match self.active_master().await {
                    Ok(a) => a,
                    Err(e) => {
                        backoff.wait(what, e).await?;
                        continue;
                    }
                },
            };
            let master = self.client.channels().master(&addr)?;
            let status = match tokio::time::timeout(timeout, call(master)).await {
                Ok(Ok(answer)) => {
                    *self.master.lock() = Some(addr);
                    return Ok(answer.into_inner());
                }
                Ok(Err(status)) => status,
                Err(_) => tonic::Status::deadline_exceeded(format!("no answer within {timeout:?}")),
            };
            let sent = !never_sent(&status);
            let e = from_status(status);
            let not_acted = match &e.code {
                Code::NotLeader { hint } => {
                    *self.master.lock() = hint.clone();
                    true
                }
                _ => {
                    *self.master.lock() = None;
                    !sent
                }
            };
            if !(read_only || not_acted) {
                return Err(e);
            }
            backoff.wait(what, e).await?;
        }
    }

    /// Creates table `name` with `families`, split at `split_keys` (len + 1 tablets).
    pub async fn create_table(
        &self,
        name: &str,
        families: &[Family],
        split_keys: &[&[u8]],
    ) -> Result<TableInfo, Error> {
        let request = mpb::CreateTableRequest {
            name: name.to_owned(),
            schema: Some(tpb::Schema {
                families: families
                    .iter()
                    .map(|f| tpb::ColumnFamily {
                        name: f.name.clone(),
                        gc_rule: f.gc.to_proto(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            split_keys: split_keys.iter().map(|k| k.to_vec()).collect(),
        };
        let answer = self
            .call("create a table", false, |mut m| {
                let r = request.clone();
                async move { m.create_table(r).await }
            })
            .await?;
        answer
            .table
            .map(TableInfo::from_proto)
            .ok_or_else(|| Error::internal("CreateTable answered no table"))
    }

    /// Deletes table `name`.
    pub async fn delete_table(&self, name: &str) -> Result<(), Error> {
        let request = mpb::DeleteTableRequest { name: name.into() };
        self.call("delete a table", false, |mut m| {
            let r = request.clone();
            async move { m.delete_table(r).await }
        })
        .await
        .map(|_| ())
    }

    /// Applies `changes` to the column families of `table`, in order and all or nothing;
    /// answers the table with its new schema. A dropped family's cells are hidden at once
    /// and removed by the next major compaction.
    pub async fn modify_column_families(
        &self,
        table: &str,
        changes: &[FamilyChange],
    ) -> Result<TableInfo, Error> {
        let request = mpb::ModifyColumnFamiliesRequest {
            name: table.to_owned(),
            modifications: changes.iter().map(FamilyChange::to_proto).collect(),
        };
        let answer = self
            .call("modify column families", false, |mut m| {
                let r = request.clone();
                async move { m.modify_column_families(r).await }
            })
            .await?;
        answer
            .table
            .map(TableInfo::from_proto)
            .ok_or_else(|| Error::internal("ModifyColumnFamilies answered no table"))
    }

    /// Deletes every row starting with `prefix`; `None`: every row of the table.
    pub async fn drop_row_range(&self, table: &str, prefix: Option<&[u8]>) -> Result<(), Error> {
        use mpb::drop_row_range_request::Target;
        let target = match prefix {
            Some([]) => {
                return Err(Error::invalid_argument(
                    "drop_row_range: an empty prefix; pass None to drop every row",
                ));
            }
            Some(p) => Target::RowKeyPrefix(p.to_vec()),
            None => Target::DeleteAllDataFromTable(true),
        };
        let request = mpb::DropRowRangeRequest {
            name: table.to_owned(),
            target: Some(target),
        };
        self.call("drop a row range", true, |mut m| {
            let r = request.clone();
            async move { m.drop_row_range(r).await }
        })
        .await
        .map(|_| ())
    }

    /// Turns the balancer on or off cluster-wide (survives master failover); answers the previous setting.
    pub async fn set_balancer(&self, enabled: bool) -> Result<bool, Error> {
        let request = mpb::SetBalancerRequest { enabled };
        let answer = self
            .call("set the balancer", false, |mut m| async move {
                m.set_balancer(request).await
            })
            .await?;
        Ok(answer.previous)
    }

    /// Every table.
    pub async fn list_tables(&self) -> Result<Vec<TableInfo>, Error> {
        let answer = self
            .call("list tables", true, |mut m| async move {
                m.list_tables(mpb::ListTablesRequest {}).await
            })
            .await?;
        Ok(answer
            .tables
            .into_iter()
            .map(TableInfo::from_proto)
            .collect())
    }

    /// Table `name`.
    pub async fn get_table(&self, name: &str) -> Result<TableInfo, Error> {
        let request = mpb::GetTableRequest { name: name.into() };
        let answer = self
            .call("get a table", true, |mut m| {
                let r = request.clone();
                async move { m.get_table(r).await }
            })
            .await?;
        answer
            .table
            .map(TableInfo::from_proto)
            .ok_or_else(|| Error::internal("GetTable answered no table"))
    }

    /// The tablets of `table` (every table's, METADATA included, for `None`).
    pub async fn list_tablets(&self, table: Option<&str>) -> Result<Vec<TabletInfo>, Error> {
        let request = mpb::ListTabletsRequest {
            table: table.unwrap_or_default().to_owned(),
        };
        let answer = self
            .call("list tablets", true, |mut m| {
                let r = request.clone();
                async move { m.list_tablets(r).await }
            })
            .await?;
        answer
            .tablets
            .into_iter()
            .map(|t| {
                let record = t
                    .record
                    .ok_or_else(|| Error::internal("ListTablets: a tablet without a record"))?;
                Ok(TabletInfo {
                    table: t.table,
                    record: TabletRecord::from_proto(record)?,
                    size_bytes: t.size_bytes,
                })
            })
            .collect()
    }

    /// The live tablet servers.
    pub async fn list_servers(&self) -> Result<Vec<mpb::ServerView>, Error> {
        let answer = self
            .call("list servers", true, |mut m| async move {
                m.list_servers(mpb::ListServersRequest {}).await
            })
            .await?;
        Ok(answer.servers)
    }

    /// The cluster's status (`balancer_enabled`: the active master balances now).
    pub async fn cluster_status(&self) -> Result<mpb::ClusterStatusResponse, Error> {
        self.call("read the cluster status", true, |mut m| async move {
            m.cluster_status(mpb::ClusterStatusRequest {}).await
        })
        .await
    }

    /// Splits the tablet of `table` holding `row`: at `row` if `at_row`, else at its middle.
    /// Answers the two children.
    pub async fn split_tablet(
        &self,
        table: &str,
        row: &[u8],
        at_row: bool,
    ) -> Result<(TabletRecord, TabletRecord), Error> {
        let request = mpb::SplitTabletRequest {
            table: table.into(),
            row: row.to_vec(),
            at_row,
        };
        let answer = self
            .call("split a tablet", false, |mut m| {
                let r = request.clone();
                async move { m.split_tablet(r).await }
            })
            .await?;
        let child = |r: Option<mpb::TabletRecord>| {
            r.ok_or_else(|| Error::internal("SplitTablet answered no child"))
                .and_then(TabletRecord::from_proto)
        };
        Ok((child(answer.left)?, child(answer.right)?))
    }

    /// Merges the tablet of `table` holding `row` with its right neighbour; answers the
    /// merged tablet.
    pub async fn merge_tablets(&self, table: &str, row: &[u8]) -> Result<TabletRecord, Error> {
        let request = mpb::MergeTabletsRequest {
            table: table.into(),
            row: row.to_vec(),
        };
        let answer = self
            .call("merge tablets", false, |mut m| {
                let r = request.clone();
                async move { m.merge_tablets(r).await }
            })
            .await?;
        answer
            .merged
            .ok_or_else(|| Error::internal("MergeTablets answered no record"))
            .and_then(TabletRecord::from_proto)
    }

    /// Moves `tablet` to `server`; answers its new record.
    pub async fn move_tablet(
        &self,
        tablet: TabletId,
        server: &ServerId,
    ) -> Result<TabletRecord, Error> {
        let request = mpb::MoveTabletRequest {
            tablet_id: tablet.0,
            server_id: server.0.clone(),
        };
        let answer = self
            .call("move a tablet", false, |mut m| {
                let r = request.clone();
                async move { m.move_tablet(r).await }
            })
            .await?;
        answer
            .tablet
            .ok_or_else(|| Error::internal("MoveTablet answered no record"))
            .and_then(TabletRecord::from_proto)
    }

    /// Flushes every memtable of `table` to SSTables.
    pub async fn flush(&self, table: &str) -> Result<(), Error> {
        let request = mpb::FlushRequest {
            table: table.into(),
        };
        self.call("flush a table", true, |mut m| {
            let r = request.clone();
            async move { m.flush(r).await }
        })
        .await
        .map(|_| ())
    }

    /// Compacts every tablet of `table` (all SSTables into one if `major`).
    pub async fn compact(&self, table: &str, major: bool) -> Result<(), Error> {
        let request = mpb::CompactRequest {
            table: table.into(),
            major,
        };
        self.call("compact a table", true, |mut m| {
            let r = request.clone();
            async move { m.compact(r).await }
        })
        .await
        .map(|_| ())
    }
}
