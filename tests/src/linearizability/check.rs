//! The checker: is a history of register operations linearizable? Pure, no I/O, no clock.
//!
//! Linearizability is compositional (Herlihy–Wing's locality, "P-compositionality" in
//! Porcupine): a history is linearizable iff each key's sub-history is. So the history is split
//! by key, and each key is searched on its own ([`super::search`]). A key answers
//! [`KeyVerdict::Linearizable`], [`KeyVerdict::Violation`] with the few operations that cannot
//! be ordered ([`super::shrink`]) and how far the search got, or [`KeyVerdict::Unknown`] when a
//! bound stopped the search: a step bound is an answer, not a hang.
//!
//! ```ignore
//! let report = check(&history, &CheckOptions::default())?;
//! assert_eq!(report.verdict(), Verdict::Ok, "{report}");
//! ```

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;

use super::history::{Call, HistoryError, Operation, ShowTime, ShowValue, validate};
use super::model::{Effect, Interner, State};
use super::search::{Bound, Deepest, Found, Limits, SearchOp, search};
use super::shrink::shrink;

/// Bounds on the work of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckOptions {
    /// Most search steps per key before answering `Unknown`.
    pub max_steps_per_key: u64,
    /// Most bytes of memoized search states per key before answering `Unknown`.
    pub max_cache_bytes_per_key: usize,
    /// Most search steps spent shrinking one key's violation to a small explanation.
    pub max_shrink_steps: u64,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            max_steps_per_key: 20_000_000,
            max_cache_bytes_per_key: 512 << 20,
            max_shrink_steps: 20_000_000,
        }
    }
}

/// The verdict over the whole history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every key is linearizable.
    Ok,
    /// Some key is not.
    Violation,
    /// No violation found, but some key's search hit a bound.
    Unknown,
}

/// A key whose operations cannot be ordered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The key.
    pub key: Bytes,
    /// A small set of its operations that is already not linearizable, in invocation order.
    pub operations: Vec<Operation>,
    /// The longest valid order the search found for them (indexes into `operations`).
    pub longest_order: Vec<usize>,
    /// The register's value after that order.
    pub value_after: Option<Bytes>,
    /// The operation (index into `operations`) that completed before it could be ordered.
    pub blocked: Option<usize>,
}

/// One key's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyVerdict {
    /// Its operations have a valid order.
    Linearizable,
    /// They do not.
    Violation(Violation),
    /// A bound stopped the search (the message names it).
    Unknown(String),
}

/// What the check found for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyReport {
    /// The key.
    pub key: Bytes,
    /// Its operations.
    pub operations: usize,
    /// How many of them have an unknown outcome.
    pub unknown_outcomes: usize,
    /// Search steps spent (not counting shrinking).
    pub steps: u64,
    /// The verdict.
    pub verdict: KeyVerdict,
}

/// What the check found, key by key (in key order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// One report per key.
    pub keys: Vec<KeyReport>,
}

impl Report {
    /// `Violation` if any key has one, else `Unknown` if any key hit a bound, else `Ok`.
    pub fn verdict(&self) -> Verdict {
        let verdicts = || self.keys.iter().map(|k| &k.verdict);
        if verdicts().any(|v| matches!(v, KeyVerdict::Violation(_))) {
            Verdict::Violation
        } else if verdicts().any(|v| matches!(v, KeyVerdict::Unknown(_))) {
            Verdict::Unknown
        } else {
            Verdict::Ok
        }
    }

    /// The violations found.
    pub fn violations(&self) -> impl Iterator<Item = &Violation> {
        self.keys.iter().filter_map(|k| match &k.verdict {
            KeyVerdict::Violation(v) => Some(v),
            _ => None,
        })
    }
}

/// Checks `history`: each key's operations against a compare-and-set register that starts
/// absent. Fails only if the history itself is malformed.
pub fn check(history: &[Operation], options: &CheckOptions) -> Result<Report, HistoryError> {
    validate(history)?;
    let mut by_key: BTreeMap<&Bytes, Vec<&Operation>> = BTreeMap::new();
    for op in history {
        by_key.entry(&op.key).or_default().push(op);
    }
    let keys = by_key
        .into_iter()
        .map(|(key, ops)| check_key(key, &ops, options))
        .collect();
    Ok(Report { keys })
}

fn check_key(key: &Bytes, ops: &[&Operation], options: &CheckOptions) -> KeyReport {
    let mut interner = Interner::default();
    // A read of unknown outcome constrains nothing: it is left out.
    let (kept, search_ops): (Vec<&Operation>, Vec<SearchOp>) = ops
        .iter()
        .map(|op| {
            let effect = interner.effect(op);
            let search_op = SearchOp {
                invoke: op.invoke,
                complete: op.completion.as_ref().map(|c| c.at),
                effect,
            };
            (*op, search_op)
        })
        .filter(|(_, s)| s.effect != Effect::Nothing)
        .unzip();
    let limits = Limits {
        max_steps: options.max_steps_per_key,
        max_cache_bytes: options.max_cache_bytes_per_key,
    };
    let found = search(&search_ops, limits);
    let (steps, verdict) = match found {
        Found::Linearizable { steps, .. } => (steps, KeyVerdict::Linearizable),
        Found::GaveUp { steps, bound } => {
            let what = match bound {
                Bound::Steps => format!("the step bound ({})", options.max_steps_per_key),
                Bound::Memory => format!(
                    "the memory bound ({} bytes of memoized states)",
                    options.max_cache_bytes_per_key
                ),
            };
            (
                steps,
                KeyVerdict::Unknown(format!(
                    "key \"{}\": the search stopped at {what} after {steps} steps",
                    key.escape_ascii()
                )),
            )
        }
        Found::NotLinearizable { steps, .. } => {
            let small = shrink(&search_ops, limits, options.max_shrink_steps);
            let sub: Vec<SearchOp> = small.iter().map(|&i| search_ops[i]).collect();
            let deepest = match search(&sub, limits) {
                Found::NotLinearizable { deepest, .. } => deepest,
                // Cannot happen (shrinking keeps only violations); explain nothing more.
                _ => Deepest {
                    linearized: Vec::new(),
                    state: None,
                    blocked: None,
                },
            };
            let operations: Vec<Operation> = small.iter().map(|&i| kept[i].clone()).collect();
            let violation = Violation {
                key: key.clone(),
                value_after: value_of(&operations, &sub, deepest.state),
                operations,
                longest_order: deepest.linearized,
                blocked: deepest.blocked,
            };
            (steps, KeyVerdict::Violation(violation))
        }
    };
    KeyReport {
        key: key.clone(),
        operations: ops.len(),
        unknown_outcomes: ops.iter().filter(|o| o.is_unknown()).count(),
        steps,
        verdict,
    }
}

/// The bytes of interned state `state`, found among the operations that wrote it.
fn value_of(operations: &[Operation], sub: &[SearchOp], state: State) -> Option<Bytes> {
    let id = state?;
    sub.iter()
        .zip(operations)
        .filter(|(s, _)| s.effect.writes() == Some(id))
        .find_map(|(_, op)| match &op.call {
            Call::Write(v) | Call::CompareAndSet { new: v, .. } => Some(v.clone()),
            Call::Read => None,
        })
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "key \"{}\" is not linearizable; these {} operations have no valid order:",
            self.key.escape_ascii(),
            self.operations.len()
        )?;
        for (i, op) in self.operations.iter().enumerate() {
            writeln!(f, "  #{i} {op}")?;
        }
        let order: Vec<String> = self.longest_order.iter().map(|i| format!("#{i}")).collect();
        write!(
            f,
            "  the longest valid order is [{}], after which the register holds {}",
            order.join(", "),
            ShowValue(self.value_after.as_ref())
        )?;
        if let Some(b) = self.blocked
            && let Some(op) = self.operations.get(b)
            && let Some(c) = &op.completion
        {
            write!(
                f,
                "; #{b} completed at {} and fits nowhere after it",
                ShowTime(c.at)
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for k in &self.keys {
            let verdict = match &k.verdict {
                KeyVerdict::Linearizable => "linearizable",
                KeyVerdict::Violation(_) => "NOT LINEARIZABLE",
                KeyVerdict::Unknown(_) => "unknown (bound reached)",
            };
            writeln!(
                f,
                "key \"{}\": {} operations ({} of unknown outcome), {} search steps: {verdict}",
                k.key.escape_ascii(),
                k.operations,
                k.unknown_outcomes,
                k.steps
            )?;
            match &k.verdict {
                KeyVerdict::Violation(v) => writeln!(f, "{v}")?,
                KeyVerdict::Unknown(why) => writeln!(f, "  {why}")?,
                KeyVerdict::Linearizable => {}
            }
        }
        Ok(())
    }
}
