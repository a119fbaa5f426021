//! `tabula local --agitate`: a fault injector inside the local cluster. Once the cluster is
//! ready it SIGKILLs the active master, a random tablet server or the lock-service leader
//! (each restarted after a few seconds), SIGSTOPs a tablet server past its session TTL and
//! resumes it, and splits, moves, merges, flushes or compacts user tablets, each kind on its
//! own jittered period, never taking a second process of a role while one is down. Every
//! fault is a JSON line in `DIR/agitator.jsonl` and a line on stderr; the seed is printed so
//! a run's choices can be replayed.
//!
//! Reading order: `spec` (the `--agitate` value), `schedule` (when each kind fires), `choose`
//! (which process or tablet, pure), `log` (the fault log), `faults` (the facts, signals and
//! admin calls at the edge), `agitator` (the loop and the supervisor's handle). The
//! supervisor's side of the seam is `super::control`.

mod agitator;
mod choose;
mod faults;
mod log;
mod schedule;
mod spec;

pub(crate) use agitator::{AgitateConfig, Agitation};
pub(crate) use choose::Leases;
pub(crate) use spec::AgitateSpec;
