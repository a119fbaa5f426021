//! The integration tests of `tabula-tabletserver`, in one binary: each file here is a module, so
//! a test is named `<file>::<test>` (one file's tests:
//! `cargo nextest run -p tabula-tabletserver <file>::`). A binary per file linked each one
//! separately and instantiated the tokio and tonic generics it used once per file, which was
//! most of the time CI spent building.

mod auto_split;
mod compact_and_drop;
mod corruption;
mod crash;
mod data_service;
mod faulty_storage;
mod filters;
mod lifecycle;
mod manifest_permit;
mod membership;
mod merge;
mod metrics;
mod model;
mod tablet;
