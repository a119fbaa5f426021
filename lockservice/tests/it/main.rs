//! The integration tests of `tabula-lockservice`, in one binary: each file here is a module, so
//! a test is named `<file>::<test>` (one file's tests:
//! `cargo nextest run -p tabula-lockservice <file>::`). A binary per file linked each one
//! separately and instantiated the tokio and tonic generics it used once per file, which was
//! most of the time CI spent building.

mod support;

mod client;
mod cluster;
mod lease;
mod service;
mod store_suite;
