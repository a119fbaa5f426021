//! Tabula's client library: the data API users link (`Client`, `Table`, `RowStream`), the
//! admin API (`Admin`), and the parts the master shares — a cache of gRPC channels
//! (`channels`) and METADATA access (`meta`).
//!
//! ```ignore
//! let client = Client::connect(&lock_addrs).await?;
//! let table = client.table("users").await?;
//! table.mutate_row("ada", vec![Mutation::set_cell("cf", "name", "Ada")]).await?;
//! let mut rows = table.read_rows(RowSet::new().range(RowRange::prefix("a")), None);
//! while let Some(row) = rows.next_row().await { println!("{:?}", row?.key); }
//! ```
//!
//! Reading order: `channels`, `meta` (`record`, `root`, `table`), `location` (the pure
//! location cache), `builders` and `row` (what callers send and get), `retry`, `client`,
//! `table` (writes, conditional writes), `scan` (reads across tablets), `admin`.
//!
//! Invariant: proto types stay at the edge. Callers see `Row`, `Mutation`, `RowSet`,
//! `TabletRecord`, `TableId`, `Bytes` and `tabula_common::Error`; the filter's wire form is
//! Cloud Bigtable v2's `RowFilter` (wrapped by `Filter`), and admin answers without a clearer
//! domain type are the master's protos.

pub mod admin;
pub mod builders;
pub mod channels;
mod client;
mod connector;
pub mod location;
pub mod meta;
mod point_read;
mod retry;
mod row;
mod row_wire;
mod scan;
mod table;

pub use admin::{Admin, Family, FamilyChange, GcRule, TableInfo, TabletInfo};
pub use builders::{Filter, Mutation, RowRange, RowSet, Rule, escape_regex};
pub use channels::{ChannelOptions, Channels};
pub use client::{Client, TABLES_DIR};
pub use location::LocationCache;
pub use meta::{
    MetaOptions, MetaTable, ROOT_PATH, TabletRecord, TabletState, read_root, write_root,
};
pub use retry::ClientOptions;
pub use row::{Cell, Row};
pub use scan::{RowStream, ScanItem};
pub use table::{ReadOptions, SampleRowKey, Table};
