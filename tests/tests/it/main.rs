//! The integration tests of `tabula-tests`, in one binary: each file here is a module, so
//! a test is named `<file>::<test>` (one file's tests:
//! `cargo nextest run -p tabula-tests <file>::`). A binary per file linked each one
//! separately and instantiated the tokio and tonic generics it used once per file, which was
//! most of the time CI spent building.

mod architecture;
mod client_reads;
mod master_admin;
mod master_cluster;
mod master_merge;
mod master_tablet_ops;
mod meta_access;
