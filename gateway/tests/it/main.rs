//! The integration tests of `tabula-gateway`, in one binary: each file here is a module, so
//! a test is named `<file>::<test>` (one file's tests:
//! `cargo nextest run -p tabula-gateway <file>::`). A binary per file linked each one
//! separately and instantiated the tokio and tonic generics it used once per file, which was
//! most of the time CI spent building.

mod support;

mod aggregates;
mod bigtable_api;
mod bigtable_rs_client;
mod deadlines;
mod last_scanned;
