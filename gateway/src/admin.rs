//! `google.bigtable.admin.v2.BigtableTableAdmin` over the client library's `Admin`: tables
//! (create with families, GC rules and initial splits; get; list; delete), column families,
//! `DropRowRange`, and the consistency tokens. Every other call (backups, snapshots,
//! authorized views, IAM, undelete, update) answers `UNIMPLEMENTED` naming what is missing.
//!
//! A Cloud Bigtable table `projects/P/instances/I/tables/T` is the Tabula table `T`, whatever
//! `P` and `I` are. Tables answer with their families and GC rules and granularity `MILLIS`
//! unless the view is `NAME_ONLY` (`ListTables`' default).
//!
//! Not yet supported, refused rather than ignored: aggregate families (`value_type`),
//! deletion protection, change streams and automated backups on create.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use tabula_client::{Admin, Client, Family, FamilyChange, TableInfo};
use tabula_common::{Code, Error};
use tabula_proto::google::bigtable::admin::v2 as admin;
use tabula_proto::google::iam::v1 as iam;
use tabula_proto::google::longrunning::Operation;
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
    admin: Admin,
}

impl TableAdminService {
    /// The table admin API over `client`.
    pub fn new(client: &Client) -> TableAdminService {
        TableAdminService {
            admin: client.admin(),
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
    let name_only = view == admin::table::View::NameOnly as i32;
    let column_families: HashMap<String, admin::ColumnFamily> = if name_only {
        HashMap::new()
    } else {
        info.proto
            .schema
            .iter()
            .flat_map(|s| s.families.iter())
            .map(|f| {
                (
                    f.name.clone(),
                    admin::ColumnFamily {
                        gc_rule: gc::to_admin(f.gc_rule.as_ref()),
                        value_type: None,
                    },
                )
            })
            .collect()
    };
    admin::Table {
        name: instance.table_name(&info.name),
        column_families,
        granularity: if name_only {
            0
        } else {
            admin::table::TimestampGranularity::Millis as i32
        },
        ..Default::default()
    }
}

/// A family to create or update, checked.
fn family(id: &str, family: admin::ColumnFamily) -> Result<Family, Status> {
    if family.value_type.is_some() {
        return Err(unimplemented(&format!(
            "column family {id:?}: value_type (aggregate column families)"
        )));
    }
    let gc = gc::from_admin(&format!("column_families[{id}].gc_rule"), family.gc_rule)
        .map_err(to_status)?;
    Ok(Family::new(id).gc(gc))
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
        let mut splits: Vec<Vec<u8>> = req.initial_splits.into_iter().map(|s| s.key).collect();
        if splits.iter().any(Vec::is_empty) {
            return Err(to_status(Error::invalid_argument(
                "initial_splits: a split key must not be empty",
            )));
        }
        splits.sort();
        splits.dedup();
        let split_refs: Vec<&[u8]> = splits.iter().map(Vec::as_slice).collect();
        let info = self
            .admin
            .create_table(&req.table_id, &families, &split_refs)
            .await
            .map_err(to_status)?;
        Ok(Response::new(table_answer(
            &instance,
            &info,
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
        let mut changes = Vec::with_capacity(req.modifications.len());
        for (i, m) in req.modifications.into_iter().enumerate() {
            if m.id.is_empty() {
                return Err(to_status(Error::invalid_argument(format!(
                    "modifications[{i}].id: a column family id is required"
                ))));
            }
            changes.push(match m.r#mod {
                Some(Mod::Create(f)) => FamilyChange::Create(family(&m.id, f)?),
                Some(Mod::Update(f)) => FamilyChange::Update(family(&m.id, f)?),
                Some(Mod::Drop(true)) => FamilyChange::Drop(m.id),
                Some(Mod::Drop(false)) | None => {
                    return Err(to_status(Error::invalid_argument(format!(
                        "modifications[{i}]: none of create, update or drop is set"
                    ))));
                }
            });
        }
        let info = self
            .admin
            .modify_column_families(&name.table, &changes)
            .await
            .map_err(to_status)?;
        Ok(Response::new(table_answer(
            &name.instance,
            &info,
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
