//! Helpers of the tests that run the master with real tablet servers (`master_cluster`,
//! `master_tablet_ops`): a master configuration with short rounds, the cluster status, waiting
//! until every tablet is served, creating a table with one family `cf`, and single-cell writes
//! and reads (`cf:q`) routed through METADATA lookups.

use std::path::Path;
use std::time::Duration;

use prost::Message as _;
use tabula_client::Channels;
use tabula_client::meta::MetaTable;
use tabula_common::{Error, TableId};
use tabula_master::{Master, MasterConfig};
use tabula_proto::google::bigtable::v2 as bt;
use tabula_proto::tabula::master::v1 as mpb;
use tabula_proto::tabula::tablet::v1 as tpb;

use crate::cluster::{LockCell, eventually};

/// How long the master tests wait for a condition.
pub const WAIT: Duration = Duration::from_secs(30);

/// A master for `cell` and `root`: an ephemeral port, a 3 s session and 100 ms rounds.
pub fn master_config(cell: &LockCell, root: &Path) -> MasterConfig {
    MasterConfig {
        session_ttl: Duration::from_secs(3),
        round_interval: Duration::from_millis(100),
        ..MasterConfig::new(
            cell.addrs(),
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            root.to_path_buf(),
        )
    }
}

/// `ClusterStatus` of `master`.
pub async fn status(
    channels: &Channels,
    master: &Master,
) -> Result<mpb::ClusterStatusResponse, Error> {
    let mut client = channels.master(&master.addr().to_string())?;
    Ok(client
        .cluster_status(mpb::ClusterStatusRequest {})
        .await
        .map_err(Error::from)?
        .into_inner())
}

/// Waits until `master` leads and every tablet it knows (at least `tablets`) is served.
pub async fn all_served(channels: &Channels, master: &Master, tablets: u32) {
    eventually("every tablet served", WAIT, || async {
        let s = status(channels, master).await.ok()?;
        (s.tablets >= tablets && s.tablets_not_serving == 0).then_some(())
    })
    .await;
}

/// One column family, `cf`, with no GC rule.
pub fn schema() -> tpb::Schema {
    tpb::Schema {
        families: vec![tpb::ColumnFamily {
            name: "cf".into(),
            gc_rule: None,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Creates table `name` with `schema()` and `splits`; panics if the master refuses.
pub async fn create_table(
    channels: &Channels,
    master: &Master,
    name: &str,
    splits: &[&[u8]],
) -> mpb::Table {
    let mut client = channels
        .master(&master.addr().to_string())
        .expect("a channel to the master");
    client
        .create_table(mpb::CreateTableRequest {
            name: name.into(),
            schema: Some(schema()),
            split_keys: splits.iter().map(|s| s.to_vec()).collect(),
        })
        .await
        .expect("CreateTable")
        .into_inner()
        .table
        .expect("CreateTable answers the table")
}

/// Writes `value` to `row`'s `cf:q` at the server METADATA names.
pub async fn put(meta: &MetaTable, table: TableId, row: &[u8], value: &[u8]) -> Result<(), Error> {
    let record = meta.locate(table, row).await?;
    let mut data = meta.channels().data(&record.server_addr)?;
    data.mutate_row(tpb::MutateRowRequest {
        tablet: Some(record.tablet_ref()),
        row_key: row.to_vec(),
        mutations: vec![bt::Mutation {
            mutation: Some(bt::mutation::Mutation::SetCell(bt::mutation::SetCell {
                family_name: "cf".into(),
                column_qualifier: b"q".to_vec(),
                timestamp_micros: -1,
                value: value.to_vec(),
            })),
        }],
    })
    .await
    .map_err(Error::from)?;
    Ok(())
}

/// Reads `row`'s newest `cf:q` at the server METADATA names (`None`: no such row).
pub async fn get(meta: &MetaTable, table: TableId, row: &[u8]) -> Result<Option<Vec<u8>>, Error> {
    let record = meta.locate(table, row).await?;
    let mut data = meta.channels().data(&record.server_addr)?;
    let mut stream = data
        .read_rows(tpb::ReadRowsRequest {
            tablet: Some(record.tablet_ref()),
            rows: Some(bt::RowSet {
                row_keys: vec![row.to_vec()],
                row_ranges: vec![],
            }),
            filter: None,
            rows_limit: 0,
            reversed: false,
        })
        .await
        .map_err(Error::from)?
        .into_inner();
    while let Some(msg) = stream.message().await.map_err(Error::from)? {
        let rows = msg
            .encoded_rows()
            .map_err(|e| Error::internal(e.to_string()))?;
        if let Some(r) = rows.first() {
            let r = bt::Row::decode(r.clone()).map_err(|e| Error::internal(e.to_string()))?;
            let cell = r
                .families
                .first()
                .and_then(|f| f.columns.first())
                .and_then(|c| c.cells.first());
            return Ok(cell.map(|c| c.value.to_vec()));
        }
    }
    Ok(None)
}

/// Writes until it succeeds (the location may be moving), up to `WAIT`.
pub async fn put_retrying(meta: &MetaTable, table: TableId, row: &[u8], value: &[u8]) {
    eventually("a write to succeed", WAIT, || async {
        put(meta, table, row, value).await.ok()
    })
    .await;
}
