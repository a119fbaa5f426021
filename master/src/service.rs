//! `MasterService` over gRPC. Every master serves it; a standby answers `NotLeader` with the
//! active master's address as the hint when it knows it. The admin view (`ListTablets`,
//! `ListServers`, `ClusterStatus`) is answered from the latest round's snapshot, except the
//! balancer switch, which `ClusterStatus` reads from the lock service so it shows a
//! `SetBalancer` at once.

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;
use tabula_common::{Code, Error, ServerId, TableId, TabletId};
use tabula_lockservice::client::LockClient;
use tabula_proto::tabula::master::v1 as pb;
use tabula_proto::tabula::master::v1::master_service_server::{MasterService, MasterServiceServer};
use tonic::{Request, Response, Status};

use crate::active::Active;
use crate::election::{active_master, announced_masters};
use crate::table_ops::DropTarget;
use crate::view::Snapshot;

/// The largest request or answer.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Who answers admin calls: the active part when this master leads, else nobody.
#[derive(Debug, Default)]
pub struct Leader {
    active: RwLock<Option<Arc<Active>>>,
}

impl Leader {
    /// Sets (or clears) the active part.
    pub fn set(&self, active: Option<Arc<Active>>) {
        *self.active.write() = active;
    }

    /// The active part, if this master leads.
    pub fn get(&self) -> Option<Arc<Active>> {
        self.active.read().clone()
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct MasterApi {
    leader: Arc<Leader>,
    lock: LockClient,
    me: String,
}

impl MasterApi {
    /// The service of the master `me` (its id).
    pub fn new(leader: Arc<Leader>, lock: LockClient, me: String) -> MasterApi {
        MasterApi { leader, lock, me }
    }

    /// The tonic server with explicit message limits.
    pub fn into_server(self) -> MasterServiceServer<MasterApi> {
        MasterServiceServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    async fn active(&self) -> Result<Arc<Active>, Status> {
        if let Some(active) = self.leader.get()
            && active.exec().leadership.is_safe()
        {
            return Ok(active);
        }
        let hint = active_master(&self.lock)
            .await
            .ok()
            .flatten()
            .filter(|m| m.id != self.me)
            .map(|m| m.addr);
        Err(Error::new(
            Code::NotLeader { hint },
            "this master is not the active one",
        )
        .into())
    }
}

fn table_view(snapshot: &Snapshot, record: &tabula_client::meta::TabletRecord) -> pb::TabletView {
    let size = snapshot
        .servers
        .live
        .values()
        .flat_map(|s| s.tablets.iter())
        .find(|t| t.tablet == record.tablet && t.epoch == record.epoch)
        .map_or(0, |t| t.size_bytes);
    let table = match record.table {
        TableId::ROOT => "(root)".to_owned(),
        TableId::METADATA => "(metadata)".to_owned(),
        id => snapshot
            .tables
            .get(&id)
            .map_or_else(|| format!("#{}", id.0), |t| t.name.clone()),
    };
    pb::TabletView {
        record: Some(record.to_proto()),
        size_bytes: size,
        table,
    }
}

#[tonic::async_trait]
impl MasterService for MasterApi {
    async fn create_table(
        &self,
        request: Request<pb::CreateTableRequest>,
    ) -> Result<Response<pb::CreateTableResponse>, Status> {
        let active = self.active().await?;
        let req = request.into_inner();
        let table = active
            .create_table(&req.name, req.schema.unwrap_or_default(), req.split_keys)
            .await?;
        Ok(Response::new(pb::CreateTableResponse {
            table: Some(table.to_proto()),
        }))
    }

    async fn delete_table(
        &self,
        request: Request<pb::DeleteTableRequest>,
    ) -> Result<Response<pb::DeleteTableResponse>, Status> {
        let active = self.active().await?;
        active.delete_table(&request.into_inner().name).await?;
        Ok(Response::new(pb::DeleteTableResponse {}))
    }

    async fn modify_column_families(
        &self,
        request: Request<pb::ModifyColumnFamiliesRequest>,
    ) -> Result<Response<pb::ModifyColumnFamiliesResponse>, Status> {
        let active = self.active().await?;
        let req = request.into_inner();
        let table = active
            .modify_column_families(&req.name, req.modifications)
            .await?;
        Ok(Response::new(pb::ModifyColumnFamiliesResponse {
            table: Some(table.to_proto()),
        }))
    }

    async fn list_tables(
        &self,
        _request: Request<pb::ListTablesRequest>,
    ) -> Result<Response<pb::ListTablesResponse>, Status> {
        let active = self.active().await?;
        let tables = crate::tables::Catalog::new(active.exec().lock.clone())
            .list()
            .await?;
        Ok(Response::new(pb::ListTablesResponse {
            tables: tables
                .values()
                .map(crate::tables::Table::to_proto)
                .collect(),
        }))
    }

    async fn get_table(
        &self,
        request: Request<pb::GetTableRequest>,
    ) -> Result<Response<pb::GetTableResponse>, Status> {
        let active = self.active().await?;
        let table = crate::tables::Catalog::new(active.exec().lock.clone())
            .get(&request.into_inner().name)
            .await?;
        Ok(Response::new(pb::GetTableResponse {
            table: Some(table.to_proto()),
        }))
    }

    async fn drop_row_range(
        &self,
        request: Request<pb::DropRowRangeRequest>,
    ) -> Result<Response<pb::DropRowRangeResponse>, Status> {
        use pb::drop_row_range_request::Target;
        let active = self.active().await?;
        let req = request.into_inner();
        let target = match req.target {
            Some(Target::RowKeyPrefix(prefix)) if !prefix.is_empty() => {
                DropTarget::Prefix(Bytes::from(prefix))
            }
            Some(Target::DeleteAllDataFromTable(true)) => DropTarget::All,
            _ => {
                return Err(Error::invalid_argument(
                    "DropRowRange needs a non-empty row_key_prefix or delete_all_data_from_table",
                )
                .into());
            }
        };
        active.drop_row_range(&req.name, target).await?;
        Ok(Response::new(pb::DropRowRangeResponse {}))
    }

    async fn split_tablet(
        &self,
        request: Request<pb::SplitTabletRequest>,
    ) -> Result<Response<pb::SplitTabletResponse>, Status> {
        let active = self.active().await?;
        let req = request.into_inner();
        let (left, right) = active
            .split_tablet(&req.table, Bytes::from(req.row), req.at_row)
            .await?;
        Ok(Response::new(pb::SplitTabletResponse {
            left: Some(left.to_proto()),
            right: Some(right.to_proto()),
        }))
    }

    async fn merge_tablets(
        &self,
        request: Request<pb::MergeTabletsRequest>,
    ) -> Result<Response<pb::MergeTabletsResponse>, Status> {
        let active = self.active().await?;
        let req = request.into_inner();
        let merged = active
            .merge_tablets(&req.table, Bytes::from(req.row))
            .await?;
        Ok(Response::new(pb::MergeTabletsResponse {
            merged: Some(merged.to_proto()),
        }))
    }

    async fn move_tablet(
        &self,
        request: Request<pb::MoveTabletRequest>,
    ) -> Result<Response<pb::MoveTabletResponse>, Status> {
        let active = self.active().await?;
        let req = request.into_inner();
        let record = active
            .move_tablet(TabletId(req.tablet_id), ServerId(req.server_id))
            .await?;
        Ok(Response::new(pb::MoveTabletResponse {
            tablet: Some(record.to_proto()),
        }))
    }

    async fn flush(
        &self,
        request: Request<pb::FlushRequest>,
    ) -> Result<Response<pb::FlushResponse>, Status> {
        let active = self.active().await?;
        active
            .flush_table(&request.into_inner().table, false)
            .await?;
        Ok(Response::new(pb::FlushResponse {}))
    }

    async fn compact(
        &self,
        request: Request<pb::CompactRequest>,
    ) -> Result<Response<pb::CompactResponse>, Status> {
        let active = self.active().await?;
        let req = request.into_inner();
        active.flush_table(&req.table, req.major).await?;
        Ok(Response::new(pb::CompactResponse {}))
    }

    async fn list_tablets(
        &self,
        request: Request<pb::ListTabletsRequest>,
    ) -> Result<Response<pb::ListTabletsResponse>, Status> {
        let active = self.active().await?;
        let want = request.into_inner().table;
        let snapshot = active.latest();
        let table_id = if want.is_empty() {
            None
        } else {
            let id = snapshot
                .tables
                .values()
                .find(|t| t.name == want)
                .map(|t| t.id)
                .ok_or_else(|| Error::new(Code::NotFound, format!("no table named {want}")))?;
            Some(id)
        };
        let mut records: Vec<_> = snapshot
            .records
            .values()
            .filter(|r| table_id.is_none_or(|id| r.table == id))
            .collect();
        records.sort_by(|a, b| {
            (
                a.table,
                a.end_row.is_none(),
                a.end_row.clone().unwrap_or_default(),
            )
                .cmp(&(
                    b.table,
                    b.end_row.is_none(),
                    b.end_row.clone().unwrap_or_else(Bytes::new),
                ))
        });
        Ok(Response::new(pb::ListTabletsResponse {
            tablets: records.iter().map(|r| table_view(&snapshot, r)).collect(),
        }))
    }

    async fn list_servers(
        &self,
        _request: Request<pb::ListServersRequest>,
    ) -> Result<Response<pb::ListServersResponse>, Status> {
        let active = self.active().await?;
        let snapshot = active.latest();
        let servers = snapshot
            .servers
            .live
            .values()
            .map(|s| {
                let (reads, writes) = snapshot
                    .servers
                    .load
                    .get(&s.id)
                    .copied()
                    .unwrap_or_default();
                pb::ServerView {
                    server_id: s.id.0.clone(),
                    address: s.addr.clone(),
                    tablets: u32::try_from(s.tablets.len()).unwrap_or(u32::MAX),
                    bytes: s.bytes(),
                    reads,
                    writes,
                }
            })
            .collect();
        Ok(Response::new(pb::ListServersResponse { servers }))
    }

    async fn cluster_status(
        &self,
        _request: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let active = self.active().await?;
        let snapshot = active.latest();
        let standbys = announced_masters(&self.lock)
            .await?
            .into_iter()
            .filter(|(id, _)| *id != self.me)
            .map(|(id, addr)| format!("{id} {addr}"))
            .collect();
        let lock_leader = self
            .lock
            .status()
            .await
            .ok()
            .and_then(|s| s.leader)
            .map(|(id, addr)| format!("{id} {addr}"))
            .unwrap_or_default();
        let not_serving = snapshot
            .records
            .values()
            .filter(|r| !snapshot.is_served(r))
            .count();
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        // Unreadable counts as off, as it does for the rounds.
        let switch = crate::balancer_switch::read(&self.lock)
            .await
            .unwrap_or(false);
        let me = self.lock.get(crate::election::MASTER_LOCK).await.ok();
        let active_master = me
            .and_then(|info| crate::election::ActiveMaster::decode(&info.contents))
            .map(|m| format!("{} {}", m.id, m.addr))
            .unwrap_or_default();
        Ok(Response::new(pb::ClusterStatusResponse {
            cluster_id: active.cluster_id().to_owned(),
            active_master,
            master_epoch: active.exec().leadership.epoch().0,
            standby_masters: standbys,
            lock_leader,
            servers: count(snapshot.servers.live.len()),
            tables: count(snapshot.tables.len()),
            tablets: count(snapshot.records.len()),
            tablets_not_serving: count(not_serving),
            balancer_enabled: switch && active.balancer_allowed(),
        }))
    }

    async fn set_balancer(
        &self,
        request: Request<pb::SetBalancerRequest>,
    ) -> Result<Response<pb::SetBalancerResponse>, Status> {
        let active = self.active().await?;
        let previous = active.set_balancer(request.into_inner().enabled).await?;
        Ok(Response::new(pb::SetBalancerResponse { previous }))
    }

    async fn report_split(
        &self,
        _request: Request<pb::ReportSplitRequest>,
    ) -> Result<Response<pb::ReportSplitResponse>, Status> {
        let active = self.active().await?;
        // The split is in METADATA already; the next round reads it.
        active.wake();
        Ok(Response::new(pb::ReportSplitResponse {}))
    }
}
