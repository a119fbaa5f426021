//! A new cluster's first records (DESIGN.md section 5): the cluster id in `/tabula/cluster`, the
//! root tablet (META0: table 0, tablet 1, all rows, never splits) in `/tabula/root`, and the
//! first METADATA tablet (table 1, tablet 2, all rows), whose record lives in the root tablet
//! and so can only be written once the root is served. Every step is idempotent: a master that
//! dies half-way leaves what the next one finishes.

use bytes::Bytes;
use prost::Message;
use tabula_client::meta::{TabletRecord, TabletState, read_root, write_root};
use tabula_common::{Code, Epoch, Error, TableId, TabletId};
use tabula_lockservice::client::LockClient;
use tabula_proto::tabula::master::v1 as pb;
use tracing::info;

/// Where the cluster id lives.
pub const CLUSTER_PATH: &str = "/tabula/cluster";
/// The root tablet's id.
pub const ROOT_TABLET: TabletId = TabletId(1);
/// The first METADATA tablet's id.
pub const FIRST_META_TABLET: TabletId = TabletId(2);

/// The manifest path of a tablet on the storage root (the tablet server's layout).
pub fn manifest_path(tablet: TabletId) -> String {
    format!("tablets/{tablet}/manifest")
}

/// A new, never-loaded tablet's record.
pub fn new_tablet(
    table: TableId,
    tablet: TabletId,
    start_row: Bytes,
    end_row: Option<Bytes>,
) -> TabletRecord {
    TabletRecord {
        table,
        tablet,
        start_row,
        end_row,
        epoch: Epoch(0),
        state: TabletState::Unassigned,
        server: None,
        server_addr: String::new(),
        master_epoch: Epoch(0),
        manifest_path: manifest_path(tablet),
        split_parent: None,
        split_sibling: None,
        created: false,
    }
}

/// A fresh tablet id: random, never 0, 1 or 2 (the root and first METADATA tablets).
pub fn fresh_tablet_id() -> TabletId {
    TabletId(rand::random::<u64>() | (1 << 62))
}

/// Creates the cluster record if there is none; answers the cluster id.
pub async fn ensure_cluster(lock: &LockClient) -> Result<String, Error> {
    match lock.get(CLUSTER_PATH).await {
        Ok(info) => {
            let record = pb::ClusterRecord::decode(&info.contents[..]).map_err(|e| {
                Error::new(Code::Internal, format!("{CLUSTER_PATH} is corrupt: {e}"))
            })?;
            return Ok(record.cluster_id);
        }
        Err(e) if e.code == Code::NotFound => {}
        Err(e) => return Err(e),
    }
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    let record = pb::ClusterRecord {
        cluster_id: format!("tabula-{:016x}", rand::random::<u64>()),
        created_micros: micros,
    };
    match lock.create(CLUSTER_PATH, &record.encode_to_vec()).await {
        Ok(_) => {
            info!(cluster_id = %record.cluster_id, "created a new cluster");
            Ok(record.cluster_id)
        }
        // Another master got there first: read what it wrote.
        Err(e) if e.code == Code::AlreadyExists => Box::pin(ensure_cluster(lock)).await,
        Err(e) => Err(e),
    }
}

/// Creates the root tablet's record if there is none.
pub async fn ensure_root(lock: &LockClient) -> Result<(), Error> {
    if read_root(lock).await?.is_some() {
        return Ok(());
    }
    let root = new_tablet(TableId::ROOT, ROOT_TABLET, Bytes::new(), None);
    match write_root(lock, &root, None).await {
        Ok(_) => {
            info!("recorded the root tablet");
            Ok(())
        }
        Err(e) if e.code == Code::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The first METADATA tablet's record.
pub fn first_meta_tablet() -> TabletRecord {
    new_tablet(TableId::METADATA, FIRST_META_TABLET, Bytes::new(), None)
}
