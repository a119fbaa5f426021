//! Shared vocabulary of every Tabula crate: ids and keys as newtypes, timestamps, the public
//! error code and its mapping to `tonic::Status`, the injected clock, and the storage root.
//!
//! Reading order: `ids` and `timestamp` (plain values), `error` (the one public error code),
//! `meta` (the METADATA row key), `schema` (the checks on a wire schema), `metrics` (histogram and Prometheus text), `clock`, then `storage` (the storage-root trait and its local-directory implementation — the
//! only place outside the lock service's log store that touches `std::fs`).

pub mod clock;
pub mod coalesce;
pub mod error;
pub mod ids;
pub mod meta;
pub mod metrics;
pub mod schema;
pub mod storage;
pub mod timestamp;

pub use clock::{Clock, ManualClock, SystemClock};
pub use coalesce::Coalescing;
pub use error::{Code, Error};
pub use ids::{Epoch, FileId, RowKey, ServerId, TableId, TabletId};
pub use storage::{AppendFile, AsyncStorage, LocalDir, ReadFile, StorageRoot};
pub use timestamp::Timestamp;
