//! Tabula's client library. Today: the part the master needs — a cache of gRPC channels to
//! tablet servers and masters (`channels`), and METADATA access (`meta`): the root tablet's
//! record in the lock service, typed tablet records, locating the tablet that holds a row,
//! scanning a table's tablets, and compare-and-set of records. The data API (`Client`, tables,
//! streams across tablets, a location cache) comes with the client issue.
//!
//! Reading order: `channels`, then `meta` (`record`, `root`, `table`).
//!
//! Invariant: proto types stay at the edge. Callers see `TabletRecord`, `TableId`, `Bytes`
//! and `tabula_common::Error`; the only proto values handed out are the ones a caller sends
//! to a server itself (`TabletRef`, `TabletDescriptor`, the gRPC clients).

pub mod channels;
pub mod meta;

pub use channels::{ChannelOptions, Channels};
pub use meta::{
    MetaOptions, MetaTable, ROOT_PATH, TabletRecord, TabletState, read_root, write_root,
};
