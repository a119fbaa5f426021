//! `google.bigtable.admin.v2.BigtableTableAdmin` over the client library's `Admin`: tables
//! (create with families, GC rules and initial splits; get; list; delete), column families,
//! `DropRowRange`, and the consistency tokens. Every other call (backups, snapshots,
//! authorized views, IAM, undelete, update) answers `UNIMPLEMENTED` naming what is missing.
//!
//! A Cloud Bigtable table `projects/P/instances/I/tables/T` is the Tabula table `T`, whatever
//! `P` and `I` are. Tables answer with their families (GC rules, value types) and granularity
//! unless the view is `NAME_ONLY` (`ListTables`' default).
//!
//! Tables created here keep timestamps at millisecond granularity, as Cloud Bigtable's (the
//! only granularity it has); a table created natively keeps microseconds and answers
//! `TIMESTAMP_GRANULARITY_UNSPECIFIED`. A family's `value_type` may be an aggregate Sum of
//! Int64 (big-endian bytes, the only encoding there is); it is fixed at creation: an update
//! naming another type is `INVALID_ARGUMENT`. Other types are `UNIMPLEMENTED`.
//!
//! `CreateTable` and `ModifyColumnFamilies` go to the active master's `MasterService`
//! directly: the client library's `Admin` speaks families without value types or
//! granularity. A master that answers `NotLeader` (nothing done) is asked again, a few times.
//!
//! Not yet supported, refused rather than ignored: deletion protection, change streams and
//! automated backups on create.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use std::time::Duration;

use tabula_client::{Admin, Client, TableInfo};
use tabula_common::{Code, Error};
use tabula_proto::google::bigtable::admin::v2 as admin;
use tabula_proto::google::iam::v1 as iam;
use tabula_proto::google::longrunning::Operation;
use tabula_proto::tabula::master::v1 as mpb;
use tabula_proto::tabula::master::v1::master_service_client::MasterServiceClient;
use tabula_proto::tabula::tablet::v1 as tpb;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::gc;
use crate::names::{Instance, TableName};
use crate::status::{to_status, unimplemented};

/// The consistency token the gateway hands out. Tabula acknowledges a write only once its
/// commit-log record is synced and it is visible to every later read (one copy of each tablet,
/// served by one server), so there is no replication to wait for: every write acknowledged
/// before `GenerateConsistencyToken` is already readable everywhere, and any token is
/// consistent the moment it exists.
const CONSISTENCY_TOKEN: &str = "tabula-writes-are-consistent-when-acknowledged";

/// The table admin API.
#[derive(Debug)]
pub struct TableAdminService {
    client: Client,
    admin: Admin,
}

/// How many times a call is sent to the master that `/tabula/master` names when the one
/// asked answers `NotLeader`, and the first pause between (doubling).
const MASTER_ATTEMPTS: u32 = 6;
const MASTER_FIRST_PAUSE: Duration = Duration::from_millis(50);

impl TableAdminService {
    /// The table admin API over `client`.
    pub fn new(client: &Client) -> TableAdminService {
        TableAdminService {
            client: client.clone(),
            admin: client.admin(),
        }
    }

    /// Runs `call` on the active master; again on `NotLeader` (the master did nothing), up
    /// to [`MASTER_ATTEMPTS`] times. Any other failure is the answer: a change may have been
    /// made, so it is not repeated.
    async fn on_master<T, F, Fut>(&self, call: F) -> Result<T, Status>
    where
        F: Fn(MasterServiceClient<Channel>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let mut pause = MASTER_FIRST_PAUSE;
        let mut attempt = 1;
        loop {
            let result = async {
                let addr = self.admin.active_master().await?;
                let master = self.client.channels().master(&addr)?;
                call(master).await.map_err(Error::from)
            }
            .await;
            match result {
                Ok(answer) => return Ok(answer.into_inner()),
                Err(e)
                    if attempt < MASTER_ATTEMPTS
                        && matches!(e.code, Code::NotLeader { .. } | Code::Unavailable)
                        && !matches!(e.code, Code::Unavailable if !e.message.contains("no active master")) =>
                {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    attempt += 1;
                }
                Err(e) => return Err(to_status(e)),
            }
        }
    }

    /// `NOT_FOUND` unless the table `name` names exists.
    async fn existing(&self, field: &str, name: &str) -> Result<(TableName, TableInfo), Status> {
        let name = TableName::parse(field, name).map_err(to_status)?;
        let info = self.admin.get_table(&name.table).await.map_err(to_status)?;
        Ok((name, info))
    }
}

/// `info` in Cloud Bigtable's form, named in `instance`, families unless `NAME_ONLY`.
fn table_answer(instance: &Instance, info: &TableInfo, view: i32) -> admin::Table {
    table_answer_of(instance, &info.proto, view)
}

/// A table as the master describes it in Cloud Bigtable's form.
fn table_answer_of(instance: &Instance, table: &mpb::Table, view: i32) -> admin::Table {
    let name_only = view == admin::table::View::NameOnly as i32;
    let schema = table.schema.clone().unwrap_or_default();
    let column_families: HashMap<String, admin::ColumnFamily> = if name_only {
        HashMap::new()
    } else {
        schema
            .families
            .iter()
            .map(|f| {
                (
                    f.name.clone(),
                    admin::ColumnFamily {
                        gc_rule: gc::to_admin(f.gc_rule.as_ref()),
                        value_type: admin_value_type(f.value_type()),
                    },
                )
            })
            .collect()
    };
    let granularity = match schema.granularity() {
        _ if name_only => admin::table::TimestampGranularity::Unspecified,
        tpb::TimestampGranularity::Millis => admin::table::TimestampGranularity::Millis,
        tpb::TimestampGranularity::Micros => admin::table::TimestampGranularity::Unspecified,
    };
    admin::Table {
        name: instance.table_name(&table.name),
        column_families,
        granularity: granularity as i32,
        ..Default::default()
    }
}

/// Cloud Bigtable's `Aggregate { input_type: Int64 (big-endian bytes), Sum }`.
fn sum_of_int64() -> admin::Type {
    use admin::r#type::{Aggregate, Int64, Kind, aggregate};
    let int64 = admin::Type {
        kind: Some(Kind::Int64Type(Int64 {
            encoding: Some(admin::r#type::int64::Encoding {
                encoding: Some(admin::r#type::int64::encoding::Encoding::BigEndianBytes(
                    admin::r#type::int64::encoding::BigEndianBytes::default(),
                )),
            }),
        })),
    };
    admin::Type {
        kind: Some(Kind::AggregateType(Box::new(Aggregate {
            input_type: Some(Box::new(int64.clone())),
            state_type: Some(Box::new(int64)),
            aggregator: Some(aggregate::Aggregator::Sum(aggregate::Sum {})),
        }))),
    }
}

fn admin_value_type(value_type: tpb::ValueType) -> Option<admin::Type> {
    match value_type {
        tpb::ValueType::Bytes => None,
        tpb::ValueType::SumInt64 => Some(sum_of_int64()),
    }
}

/// The value type a family asks for: none is plain bytes, an aggregate Sum of Int64 (any
/// Int64 encoding given is big-endian bytes, the only one) is ours; anything else is
/// `UNIMPLEMENTED`.
fn value_type(field: &str, t: Option<admin::Type>) -> Result<tpb::ValueType, Status> {
    use admin::r#type::{Kind, aggregate::Aggregator};
    let Some(kind) = t.and_then(|t| t.kind) else {
        return Ok(tpb::ValueType::Bytes);
    };
    let Kind::AggregateType(agg) = kind else {
        return Err(unimplemented(&format!(
            "{field}: value types other than an aggregate Sum of Int64"
        )));
    };
    let input_is_int64 = matches!(
        agg.input_type.as_deref().and_then(|t| t.kind.as_ref()),
        Some(Kind::Int64Type(_))
    );
    match (&agg.aggregator, input_is_int64) {
        (Some(Aggregator::Sum(_)), true) => Ok(tpb::ValueType::SumInt64),
        (None, _) => Err(to_status(Error::invalid_argument(format!(
            "{field}.aggregate_type: an aggregator is required"
        )))),
        _ => Err(unimplemented(&format!(
            "{field}: aggregates other than Sum of Int64"
        ))),
    }
}

/// A family to create or update, checked, in the master's form (named `id`).
fn family(id: &str, family: admin::ColumnFamily) -> Result<tpb::ColumnFamily, Status> {
    let field = format!("column_families[{id}]");
    let value_type = value_type(&format!("{field}.value_type"), family.value_type)?;
    let gc = gc::from_admin(&format!("{field}.gc_rule"), family.gc_rule).map_err(to_status)?;
    Ok(tpb::ColumnFamily {
        name: id.to_owned(),
        gc_rule: gc::to_tablet(&gc),
        value_type: value_type as i32,
    })
}

/// `INVALID_ARGUMENT` if update `i` names a value type other than its family's (fixed at
/// creation, as in Cloud Bigtable). A family the table lacks is left to the master
/// (`NOT_FOUND`).
fn check_same_type(
    i: usize,
    f: &tpb::ColumnFamily,
    table: Option<&TableInfo>,
) -> Result<(), Status> {
    let now = table
        .and_then(|t| t.proto.schema.as_ref())
        .and_then(|s| s.families.iter().find(|g| g.name == f.name));
    match now {
        Some(g) if g.value_type != f.value_type => {
            Err(to_status(Error::invalid_argument(format!(
                "modifications[{i}].update.value_type: the value type of column family {} is fixed \
             when it is created ({}); it cannot become {}",
                f.name,
                tabula_common::schema::value_type_name(g.value_type),
                tabula_common::schema::value_type_name(f.value_type)
            ))))
        }
        _ => Ok(()),
    }
}

/// Refuses the parts of a new table Tabula does not offer.
fn check_new_table(table: &admin::Table) -> Result<(), Status> {
    if table.deletion_protection {
        return Err(unimplemented("deletion_protection"));
    }
    if table.change_stream_config.is_some() {
        return Err(unimplemented("change streams (change_stream_config)"));
    }
    if table.automated_backup_config.is_some() {
        return Err(unimplemented("automated backups"));
    }
    Ok(())
}

/// Answers `UNIMPLEMENTED` for `$what` from each listed method. `#[tonic::async_trait]`
/// rewrites only the `async fn`s written out in the impl, not those a macro expands to later,
/// so these are written in its desugared form: a boxed future borrowing `self`.
macro_rules! unimplemented_calls {
    ($($method:ident($request:ty) -> $answer:ty: $what:literal;)*) => {
        $(
            fn $method<'life0, 'async_trait>(
                &'life0 self,
                _request: Request<$request>,
            ) -> Pin<Box<dyn Future<Output = Result<Response<$answer>, Status>> + Send + 'async_trait>>
            where
                'life0: 'async_trait,
                Self: 'async_trait,
            {
                Box::pin(std::future::ready(Err(unimplemented($what))))
            }
        )*
    };
}

#[tonic::async_trait]
impl admin::bigtable_table_admin_server::BigtableTableAdmin for TableAdminService {
    async fn create_table(
        &self,
        request: Request<admin::CreateTableRequest>,
    ) -> Result<Response<admin::Table>, Status> {
        let req = request.into_inner();
        let instance = Instance::parse("parent", &req.parent).map_err(to_status)?;
        if req.table_id.is_empty() {
            return Err(to_status(Error::invalid_argument(
                "table_id: a table id is required",
            )));
        }
        let table = req.table.unwrap_or_default();
        check_new_table(&table)?;
        let mut families = table
            .column_families
            .into_iter()
            .map(|(id, f)| family(&id, f))
            .collect::<Result<Vec<_>, _>>()?;
        families.sort_by(|a, b| a.name.cmp(&b.name));
        // Cloud Bigtable: unspecified is MILLIS, and MILLIS is all there is.
        if table.granularity != admin::table::TimestampGranularity::Unspecified as i32
            && table.granularity != admin::table::TimestampGranularity::Millis as i32
        {
            return Err(to_status(Error::invalid_argument(format!(
                "table.granularity: {} is not a timestamp granularity (want MILLIS)",
                table.granularity
            ))));
        }
        let mut splits: Vec<Vec<u8>> = req.initial_splits.into_iter().map(|s| s.key).collect();
        if splits.iter().any(Vec::is_empty) {
            return Err(to_status(Error::invalid_argument(
                "initial_splits: a split key must not be empty",
            )));
        }
        splits.sort();
        splits.dedup();
        let request = mpb::CreateTableRequest {
            name: req.table_id.clone(),
            schema: Some(tpb::Schema {
                families,
                granularity: tpb::TimestampGranularity::Millis as i32,
            }),
            split_keys: splits,
        };
        let answer = self
            .on_master(|mut m| {
                let r = request.clone();
                async move { m.create_table(r).await }
            })
            .await?;
        let table = answer
            .table
            .ok_or_else(|| to_status(Error::internal("CreateTable answered no table")))?;
        Ok(Response::new(table_answer_of(
            &instance,
            &table,
            admin::table::View::SchemaView as i32,
        )))
    }

    async fn list_tables(
        &self,
        request: Request<admin::ListTablesRequest>,
    ) -> Result<Response<admin::ListTablesResponse>, Status> {
        let req = request.into_inner();
        let instance = Instance::parse("parent", &req.parent).map_err(to_status)?;
        let view = if req.view == admin::table::View::Unspecified as i32 {
            admin::table::View::NameOnly as i32
        } else {
            req.view
        };
        let tables = self.admin.list_tables().await.map_err(to_status)?;
        let deleting = tabula_proto::tabula::master::v1::TableState::Deleting as i32;
        Ok(Response::new(admin::ListTablesResponse {
            tables: tables
                .iter()
                .filter(|t| t.proto.state != deleting)
                .map(|t| table_answer(&instance, t, view))
                .collect(),
            next_page_token: String::new(),
        }))
    }

    async fn get_table(
        &self,
        request: Request<admin::GetTableRequest>,
    ) -> Result<Response<admin::Table>, Status> {
        let req = request.into_inner();
        let (name, info) = self.existing("name", &req.name).await?;
        Ok(Response::new(table_answer(&name.instance, &info, req.view)))
    }

    async fn delete_table(
        &self,
        request: Request<admin::DeleteTableRequest>,
    ) -> Result<Response<()>, Status> {
        let name = TableName::parse("name", &request.into_inner().name).map_err(to_status)?;
        self.admin
            .delete_table(&name.table)
            .await
            .map_err(to_status)?;
        Ok(Response::new(()))
    }

    async fn modify_column_families(
        &self,
        request: Request<admin::ModifyColumnFamiliesRequest>,
    ) -> Result<Response<admin::Table>, Status> {
        use admin::modify_column_families_request::modification::Mod;
        let req = request.into_inner();
        let name = TableName::parse("name", &req.name).map_err(to_status)?;
        if req.modifications.is_empty() {
            return Err(to_status(Error::invalid_argument(
                "modifications: at least one modification is required",
            )));
        }
        use mpb::column_family_modification::Mod as M;
        // The value types of the families as they are now, for updates naming one.
        let mut current: Option<TableInfo> = None;
        let mut changes = Vec::with_capacity(req.modifications.len());
        for (i, m) in req.modifications.into_iter().enumerate() {
            if m.id.is_empty() {
                return Err(to_status(Error::invalid_argument(format!(
                    "modifications[{i}].id: a column family id is required"
                ))));
            }
            let change = match m.r#mod {
                Some(Mod::Create(f)) => M::CreateFamily(family(&m.id, f)?),
                Some(Mod::Update(f)) => {
                    let names_type = f.value_type.is_some();
                    let f = family(&m.id, f)?;
                    if names_type {
                        if current.is_none() {
                            current =
                                Some(self.admin.get_table(&name.table).await.map_err(to_status)?);
                        }
                        check_same_type(i, &f, current.as_ref())?;
                    }
                    M::Update(f.gc_rule.unwrap_or_default())
                }
                Some(Mod::Drop(true)) => M::Drop(true),
                Some(Mod::Drop(false)) | None => {
                    return Err(to_status(Error::invalid_argument(format!(
                        "modifications[{i}]: none of create, update or drop is set"
                    ))));
                }
            };
            changes.push(mpb::ColumnFamilyModification {
                family: m.id,
                r#mod: Some(change),
            });
        }
        let request = mpb::ModifyColumnFamiliesRequest {
            name: name.table.clone(),
            modifications: changes,
        };
        let answer = self
            .on_master(|mut m| {
                let r = request.clone();
                async move { m.modify_column_families(r).await }
            })
            .await?;
        let table = answer
            .table
            .ok_or_else(|| to_status(Error::internal("ModifyColumnFamilies answered no table")))?;
        Ok(Response::new(table_answer_of(
            &name.instance,
            &table,
            admin::table::View::SchemaView as i32,
        )))
    }

    async fn drop_row_range(
        &self,
        request: Request<admin::DropRowRangeRequest>,
    ) -> Result<Response<()>, Status> {
        use admin::drop_row_range_request::Target;
        let req = request.into_inner();
        let (name, _) = self.existing("name", &req.name).await?;
        let prefix = match req.target {
            Some(Target::RowKeyPrefix(p)) if !p.is_empty() => Some(p),
            Some(Target::DeleteAllDataFromTable(true)) => None,
            Some(Target::RowKeyPrefix(_)) => {
                return Err(to_status(Error::invalid_argument(
                    "row_key_prefix: must not be empty (use delete_all_data_from_table)",
                )));
            }
            Some(Target::DeleteAllDataFromTable(false)) | None => {
                return Err(to_status(Error::invalid_argument(
                    "set row_key_prefix or delete_all_data_from_table",
                )));
            }
        };
        self.admin
            .drop_row_range(&name.table, prefix.as_deref())
            .await
            .map_err(to_status)?;
        Ok(Response::new(()))
    }

    async fn generate_consistency_token(
        &self,
        request: Request<admin::GenerateConsistencyTokenRequest>,
    ) -> Result<Response<admin::GenerateConsistencyTokenResponse>, Status> {
        self.existing("name", &request.into_inner().name).await?;
        Ok(Response::new(admin::GenerateConsistencyTokenResponse {
            consistency_token: CONSISTENCY_TOKEN.to_owned(),
        }))
    }

    async fn check_consistency(
        &self,
        request: Request<admin::CheckConsistencyRequest>,
    ) -> Result<Response<admin::CheckConsistencyResponse>, Status> {
        let req = request.into_inner();
        self.existing("name", &req.name).await?;
        if req.consistency_token != CONSISTENCY_TOKEN {
            return Err(to_status(Error::new(
                Code::InvalidArgument,
                "consistency_token: not a token this gateway handed out",
            )));
        }
        Ok(Response::new(admin::CheckConsistencyResponse {
            consistent: true,
        }))
    }

    unimplemented_calls! {
        create_table_from_snapshot(admin::CreateTableFromSnapshotRequest) -> Operation: "snapshots (CreateTableFromSnapshot)";
        update_table(admin::UpdateTableRequest) -> Operation: "UpdateTable";
        undelete_table(admin::UndeleteTableRequest) -> Operation: "UndeleteTable";
        create_authorized_view(admin::CreateAuthorizedViewRequest) -> Operation: "authorized views (CreateAuthorizedView)";
        list_authorized_views(admin::ListAuthorizedViewsRequest) -> admin::ListAuthorizedViewsResponse: "authorized views (ListAuthorizedViews)";
        get_authorized_view(admin::GetAuthorizedViewRequest) -> admin::AuthorizedView: "authorized views (GetAuthorizedView)";
        update_authorized_view(admin::UpdateAuthorizedViewRequest) -> Operation: "authorized views (UpdateAuthorizedView)";
        delete_authorized_view(admin::DeleteAuthorizedViewRequest) -> (): "authorized views (DeleteAuthorizedView)";
        snapshot_table(admin::SnapshotTableRequest) -> Operation: "snapshots (SnapshotTable)";
        get_snapshot(admin::GetSnapshotRequest) -> admin::Snapshot: "snapshots (GetSnapshot)";
        list_snapshots(admin::ListSnapshotsRequest) -> admin::ListSnapshotsResponse: "snapshots (ListSnapshots)";
        delete_snapshot(admin::DeleteSnapshotRequest) -> (): "snapshots (DeleteSnapshot)";
        create_backup(admin::CreateBackupRequest) -> Operation: "backups (CreateBackup)";
        get_backup(admin::GetBackupRequest) -> admin::Backup: "backups (GetBackup)";
        update_backup(admin::UpdateBackupRequest) -> admin::Backup: "backups (UpdateBackup)";
        delete_backup(admin::DeleteBackupRequest) -> (): "backups (DeleteBackup)";
        list_backups(admin::ListBackupsRequest) -> admin::ListBackupsResponse: "backups (ListBackups)";
        restore_table(admin::RestoreTableRequest) -> Operation: "backups (RestoreTable)";
        copy_backup(admin::CopyBackupRequest) -> Operation: "backups (CopyBackup)";
        get_iam_policy(iam::GetIamPolicyRequest) -> iam::Policy: "IAM (GetIamPolicy)";
        set_iam_policy(iam::SetIamPolicyRequest) -> iam::Policy: "IAM (SetIamPolicy)";
        test_iam_permissions(iam::TestIamPermissionsRequest) -> iam::TestIamPermissionsResponse: "IAM (TestIamPermissions)";
    }
}
