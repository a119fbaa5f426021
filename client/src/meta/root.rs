//! `/tabula/root`: the lock-service file naming the root tablet (META0). Its contents are an
//! encoded `tabula.master.v1.RootLocation` holding the root tablet's `TabletRecord`; its
//! generation is what a writer compares and sets, so a deposed master cannot overwrite a newer
//! master's root assignment.

use prost::Message;
use tabula_common::{Code, Error, TableId};
use tabula_lockservice::client::LockClient;
use tabula_proto::tabula::master::v1 as mpb;

use super::record::TabletRecord;

/// The lock-service file naming the root tablet.
pub const ROOT_PATH: &str = "/tabula/root";
/// Its parent directory (also the tablet servers' and the master's).
const TABULA_DIR: &str = "/tabula";

/// The root tablet's record and the file's generation; `None` when the cluster has no root
/// yet. `Internal` if the file holds something else than a valid root record.
pub async fn read_root(lock: &LockClient) -> Result<Option<(TabletRecord, u64)>, Error> {
    let file = match lock.get(ROOT_PATH).await {
        Ok(file) => file,
        Err(e) if e.code == Code::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let corrupt = |why: String| Error::internal(format!("{ROOT_PATH}: {why}"));
    let location = mpb::RootLocation::decode(&file.contents[..])
        .map_err(|e| corrupt(format!("undecodable: {e}")))?;
    let record = location
        .root
        .ok_or_else(|| corrupt("no root record".to_owned()))?;
    let record = TabletRecord::from_proto(record).map_err(|e| corrupt(e.message))?;
    if record.table != TableId::ROOT {
        return Err(corrupt(format!(
            "names tablet {} of table {}, not the root tablet",
            record.tablet, record.table.0
        )));
    }
    Ok(Some((record, file.generation)))
}

/// Writes the root tablet's record: creates `/tabula/root` when `expected_generation` is
/// `None` (`AlreadyExists` if it exists), else replaces it only if its generation is still
/// `expected_generation` (`Aborted` otherwise). Answers the new generation.
/// `InvalidArgument` if `root` is not a valid record of table 0.
pub async fn write_root(
    lock: &LockClient,
    root: &TabletRecord,
    expected_generation: Option<u64>,
) -> Result<u64, Error> {
    root.validate()?;
    if root.table != TableId::ROOT {
        return Err(Error::invalid_argument(format!(
            "{ROOT_PATH} must name a tablet of table 0, not of table {}",
            root.table.0
        )));
    }
    let contents = mpb::RootLocation {
        root: Some(root.to_proto()),
    }
    .encode_to_vec();
    match expected_generation {
        Some(generation) => lock.set(ROOT_PATH, &contents, Some(generation)).await,
        None => {
            match lock.create(TABULA_DIR, b"").await {
                Ok(_) => {}
                Err(e) if e.code == Code::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            lock.create(ROOT_PATH, &contents).await
        }
    }
}
