//! Tabula's Cloud Bigtable gateway: `google.bigtable.v2.Bigtable` and
//! `google.bigtable.admin.v2.BigtableTableAdmin` served over the client library, so the
//! Cloud Bigtable client libraries work against a Tabula cluster unchanged (point them at it
//! with `BIGTABLE_EMULATOR_HOST`).
//!
//! The gateway translates and keeps no state of its own (the client library's location and
//! channel caches and a few seconds of resolved table names aside, none of which decides an
//! outcome): any number can run side by side. Proto types stop here; inside, the
//! client library's builders.
//!
//! Reading order: `names` (resource names), `status` (error codes), `convert` (requests ->
//! builders, with Cloud Bigtable's checks), `chunks` (the `ReadRows` chunk protocol), `tables`
//! (resolved tables, kept a few seconds), `data` (the data API), `gc` and `admin` (the table
//! admin API), `deadline` (client deadlines answered `DEADLINE_EXCEEDED`), `server`.
//!
//! Not yet offered: aggregate column families (`value_type`, `AddToCell`, `MergeToCell`),
//! change streams, SQL, backups, snapshots, authorized views, IAM (all `UNIMPLEMENTED`).

mod admin;
mod chunks;
mod convert;
mod data;
mod deadline;
mod gc;
mod names;
mod server;
mod status;
mod tables;

pub use admin::TableAdminService;
pub use data::DataService;
pub use server::{MAX_REQUEST_BYTES, ServeOptions, serve, serve_with};
