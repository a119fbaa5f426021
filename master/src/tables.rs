//! The table catalog in the lock service: `/tabula/tables/<name>` holds an encoded
//! `TableRecord` (id, name, schema, state); `/tabula/next-table-id` holds the next table id as
//! decimal text, taken by compare-and-set so two masters never hand out one id.
//!
//! Names follow Cloud Bigtable's table ids: `[_a-zA-Z0-9][-_.a-zA-Z0-9]*`, 1 to 50 characters.

use std::collections::BTreeMap;

use prost::Message;
use tabula_common::schema::check_schema;
use tabula_common::{Code, Error, TableId};
use tabula_lockservice::client::LockClient;
use tabula_proto::tabula::master::v1 as pb;
use tabula_proto::tabula::tablet::v1 as tpb;

/// Where table records live.
pub const TABLES_DIR: &str = "/tabula/tables";
/// The next table id to hand out.
pub const NEXT_TABLE_ID: &str = "/tabula/next-table-id";
/// The longest table name.
pub const MAX_TABLE_NAME_LEN: usize = 50;

/// A table as the catalog records it.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Its name.
    pub name: String,
    /// Its id (2 or more).
    pub id: TableId,
    /// Its column families.
    pub schema: tpb::Schema,
    /// Creating, ready or deleting.
    pub state: pb::TableState,
    /// The lock-service generation of its record (for compare-and-set).
    pub generation: u64,
}

impl Table {
    /// The wire form.
    pub fn to_proto(&self) -> pb::Table {
        pb::Table {
            name: self.name.clone(),
            table_id: self.id.0,
            schema: Some(self.schema.clone()),
            state: self.state as i32,
        }
    }

    fn record(&self) -> pb::TableRecord {
        pb::TableRecord {
            name: self.name.clone(),
            table_id: self.id.0,
            schema: Some(self.schema.clone()),
            state: self.state as i32,
        }
    }
}

/// The schema of the root and METADATA tablets: one family keeping one version.
pub fn meta_schema() -> tpb::Schema {
    tpb::Schema {
        families: vec![tpb::ColumnFamily {
            name: tabula_common::meta::FAMILY.to_owned(),
            gc_rule: Some(tpb::GcRule {
                rule: Some(tpb::gc_rule::Rule::MaxNumVersions(1)),
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// `InvalidArgument` unless `name` is a valid table name.
pub fn check_table_name(name: &str) -> Result<(), Error> {
    let valid = !name.is_empty()
        && name.len() <= MAX_TABLE_NAME_LEN
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(Error::invalid_argument(format!(
            "table name {name:?} must be 1 to {MAX_TABLE_NAME_LEN} characters of \
             [-_.a-zA-Z0-9], starting with a letter, digit or underscore"
        )))
    }
}

fn table_path(name: &str) -> String {
    format!("{TABLES_DIR}/{name}")
}

fn decode(name: &str, contents: &[u8], generation: u64) -> Result<Table, Error> {
    let record = pb::TableRecord::decode(contents).map_err(|e| {
        Error::new(
            Code::Internal,
            format!("table record {name} is corrupt: {e}"),
        )
    })?;
    let state = pb::TableState::try_from(record.state).unwrap_or(pb::TableState::Unspecified);
    Ok(Table {
        name: record.name,
        id: TableId(record.table_id),
        schema: record.schema.unwrap_or_default(),
        state,
        generation,
    })
}

/// The catalog's operations; every one reads or writes the lock service.
#[derive(Debug, Clone)]
pub struct Catalog {
    lock: LockClient,
}

impl Catalog {
    /// A catalog over `lock`.
    pub fn new(lock: LockClient) -> Catalog {
        Catalog { lock }
    }

    /// Creates the catalog's directory and id counter (idempotent).
    pub async fn prepare(&self) -> Result<(), Error> {
        for (path, contents) in [
            (TABLES_DIR, &b""[..]),
            (NEXT_TABLE_ID, TableId::FIRST_USER.0.to_string().as_bytes()),
        ] {
            match self.lock.create(path, contents).await {
                Ok(_) => {}
                Err(e) if e.code == Code::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Every table by id.
    pub async fn list(&self) -> Result<BTreeMap<TableId, Table>, Error> {
        let listing = self.lock.list(TABLES_DIR).await?;
        let mut out = BTreeMap::new();
        for name in listing.children {
            match self.get(&name).await {
                Ok(table) => {
                    out.insert(table.id, table);
                }
                Err(e) if e.code == Code::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// One table by name (`NotFound` if there is none).
    pub async fn get(&self, name: &str) -> Result<Table, Error> {
        check_table_name(name)?;
        let info = self.lock.get(&table_path(name)).await.map_err(|e| {
            if e.code == Code::NotFound {
                Error::new(Code::NotFound, format!("no table named {name}"))
            } else {
                e
            }
        })?;
        decode(name, &info.contents, info.generation)
    }

    /// Records a new table in state `Creating` with a fresh id; `AlreadyExists` if the name
    /// is taken.
    pub async fn create(&self, name: &str, schema: tpb::Schema) -> Result<Table, Error> {
        check_table_name(name)?;
        check_schema(&schema)?;
        if self.lock.get(&table_path(name)).await.is_ok() {
            return Err(Error::new(
                Code::AlreadyExists,
                format!("table {name} exists"),
            ));
        }
        let id = self.next_id().await?;
        let mut table = Table {
            name: name.to_owned(),
            id,
            schema,
            state: pb::TableState::Creating,
            generation: 0,
        };
        table.generation = self
            .lock
            .create(&table_path(name), &table.record().encode_to_vec())
            .await
            .map_err(|e| {
                if e.code == Code::AlreadyExists {
                    Error::new(Code::AlreadyExists, format!("table {name} exists"))
                } else {
                    e
                }
            })?;
        Ok(table)
    }

    /// Replaces a table's record if it has not changed since `table.generation` was read
    /// (`Aborted` otherwise); answers the updated table.
    pub async fn update(&self, table: &Table) -> Result<Table, Error> {
        let generation = self
            .lock
            .set(
                &table_path(&table.name),
                &table.record().encode_to_vec(),
                Some(table.generation),
            )
            .await?;
        Ok(Table {
            generation,
            ..table.clone()
        })
    }

    /// Deletes a table's record.
    pub async fn remove(&self, table: &Table) -> Result<(), Error> {
        match self.lock.delete(&table_path(&table.name), None).await {
            Ok(_) => Ok(()),
            Err(e) if e.code == Code::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Takes the next table id (compare-and-set on the counter, retried on a race).
    async fn next_id(&self) -> Result<TableId, Error> {
        loop {
            let info = self.lock.get(NEXT_TABLE_ID).await?;
            let text = String::from_utf8_lossy(&info.contents).into_owned();
            let next: u64 = text.trim().parse().map_err(|_| {
                Error::new(
                    Code::Internal,
                    format!("{NEXT_TABLE_ID} holds {text:?}, not a number"),
                )
            })?;
            let next = next.max(TableId::FIRST_USER.0);
            let after = next
                .checked_add(1)
                .ok_or_else(|| Error::new(Code::ResourceExhausted, "table ids are exhausted"))?;
            match self
                .lock
                .set(
                    NEXT_TABLE_ID,
                    after.to_string().as_bytes(),
                    Some(info.generation),
                )
                .await
            {
                Ok(_) => return Ok(TableId(next)),
                Err(e) if e.code == Code::Aborted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names() {
        for good in ["t", "_x", "my-table.v2", &"a".repeat(50)] {
            assert!(check_table_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-t", ".t", "a/b", "a b", "ü", &"a".repeat(51)] {
            let e = check_table_name(bad).unwrap_err();
            assert_eq!(e.code, Code::InvalidArgument, "{bad}");
        }
    }

    #[test]
    fn the_meta_schema_is_valid() {
        assert!(check_schema(&meta_schema()).is_ok());
    }
}
