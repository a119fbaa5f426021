//! Linearizability of single-row operations: a checker for histories of register operations
//! and a workload that records such histories against a Tabula cluster (Jepsen's
//! linearizable-register test, checked the way Knossos and Porcupine do).
//!
//! The promise under test: every read, write and check-and-mutate of one row behaves as if it
//! took effect at one instant between its call and its answer, in one order that every client
//! agrees on — also while servers are killed, paused and tablets move. A row's newest cell in
//! one column is a compare-and-set register; a history is what clients saw (calls, answers,
//! times on one clock); the checker searches for an order that explains it.
//!
//! Reading order:
//! - `history`: operations, calls and answers; an operation of unknown outcome has no
//!   completion (it may have taken effect at any point after its call, or never).
//! - `model`: the register's sequential specification (pure).
//! - `search`: the Wing–Gong / Lowe (WGL) search of one key's operations, bounded (pure).
//! - `shrink`: a violation cut down to the few operations that explain it (pure).
//! - `check`: per key (P-compositionality), the verdict and report (pure).
//! - `recorder`: the shared monotonic clock workloads record with (the I/O edge).
//! - `row_register` and `workload`: the register over a Tabula row through the client library,
//!   and one client's random calls.

mod check;
mod history;
mod model;
mod recorder;
mod row_register;
mod search;
mod shrink;
mod workload;

#[cfg(test)]
mod tests;

pub use check::{CheckOptions, KeyReport, KeyVerdict, Report, Verdict, Violation, check};
pub use history::{Call, Completion, HistoryError, Operation, Return, validate};
pub use recorder::{Counts, Invocation, Recorder};
pub use row_register::{Outcome, RowRegister, conditional_write_may_be_applied};
pub use workload::{ClientPlan, ClientStats, run_client};
