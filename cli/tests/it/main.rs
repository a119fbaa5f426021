//! The integration tests of `tabula`, in one binary: each file here is a module, so
//! a test is named `<file>::<test>` (one file's tests:
//! `cargo nextest run -p tabula <file>::`). A binary per file linked each one
//! separately and instantiated the tokio and tonic generics it used once per file, which was
//! most of the time CI spent building.

mod support;

mod bench_ceiling;
mod bench_cluster;
mod cli_commands;
mod ingest_verify;
mod linearizability;
mod local_agitate;
mod local_cluster;
mod local_gateway;
mod lock_commands;
mod lock_contention;
mod lock_processes;
mod master_processes;
mod python_client;
mod readme_quickstart;
mod tablet_failover;
