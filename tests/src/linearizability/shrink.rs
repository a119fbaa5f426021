//! Shrinking a non-linearizable history of one register to a small one that is still not
//! linearizable, for a readable explanation (the few operations that cannot be ordered, rather
//! than the thousands around them).
//!
//! Deleting operations must not *create* a violation, or the explanation would blame
//! operations for a problem the deletion made up. So only two kinds of deletion are tried:
//! - an observer (a completed read, a compare-and-set that answered `false`): a history
//!   without it has fewer constraints, so whatever order fitted before still fits;
//! - an operation that may have written value `v`, when no remaining operation observes `v`
//!   (no read answered it, no compare-and-set expects it) and no remaining compare-and-set
//!   answered `false`: in any valid order, the operations between it and the next write then
//!   only write, so the order without it is valid too.
//!
//! Deletions go in chunks (halves, quarters, ... single operations, as in delta debugging),
//! each kept if the smaller history is still found not linearizable within the step budget;
//! single deletions repeat until none is possible, so the result is minimal for them.

use std::collections::HashSet;

use super::model::State;
use super::search::{Found, Limits, SearchOp, search};

/// The part of `removal` (indexes into `ops`, a subset of `keep`) that can be deleted from
/// `keep` without possibly creating a violation. Keeping back an unsafe write leaves more
/// operations in place, which can make another write unsafe: trimmed until nothing changes.
fn safe_removal(ops: &[SearchOp], keep: &[usize], removal: &[usize]) -> Vec<usize> {
    let mut removal = removal.to_vec();
    loop {
        let removed: HashSet<usize> = removal.iter().copied().collect();
        let mut observed: HashSet<State> = HashSet::new();
        let mut failed_cas = false;
        for &i in keep.iter().filter(|i| !removed.contains(i)) {
            let e = &ops[i].effect;
            if let Some(s) = e.observes() {
                observed.insert(s);
            }
            failed_cas |= e.is_failed_cas();
        }
        let safe: Vec<usize> = removal
            .iter()
            .copied()
            .filter(|&i| match ops[i].effect.writes() {
                None => true,
                Some(v) => !failed_cas && !observed.contains(&Some(v)),
            })
            .collect();
        if safe.len() == removal.len() {
            return safe;
        }
        removal = safe;
    }
}

/// Shrinks `ops` (not linearizable) to a locally minimal set of indexes that is still not
/// linearizable; searches spend at most `budget_steps` in total, each within `limits`.
pub(crate) fn shrink(ops: &[SearchOp], limits: Limits, budget_steps: u64) -> Vec<usize> {
    let mut keep: Vec<usize> = (0..ops.len()).collect();
    let mut spent = 0u64;
    let mut chunk = keep.len().div_ceil(2).max(1);
    loop {
        let before = keep.len();
        let mut start = 0;
        while start < keep.len() {
            if spent >= budget_steps {
                return keep;
            }
            let end = (start + chunk).min(keep.len());
            let removal = safe_removal(ops, &keep, &keep[start..end]);
            if removal.is_empty() {
                start = end;
                continue;
            }
            let removed: HashSet<usize> = removal.iter().copied().collect();
            let candidate: Vec<usize> = keep
                .iter()
                .copied()
                .filter(|i| !removed.contains(i))
                .collect();
            let sub: Vec<SearchOp> = candidate.iter().map(|&i| ops[i]).collect();
            let limits = Limits {
                max_steps: limits.max_steps.min(budget_steps - spent),
                ..limits
            };
            match search(&sub, limits) {
                Found::NotLinearizable { steps, .. } => {
                    spent += steps;
                    keep = candidate;
                }
                Found::Linearizable { steps, .. } | Found::GaveUp { steps, .. } => {
                    spent += steps;
                    start = end;
                }
            }
        }
        // Single deletions repeat until none helps: one may unlock another (a write can go
        // once the reads of its value have gone).
        if chunk == 1 && keep.len() == before {
            return keep;
        }
        chunk = chunk.div_ceil(2);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::model::Effect;
    use super::*;

    const LIMITS: Limits = Limits {
        max_steps: 1_000_000,
        max_cache_bytes: 64 << 20,
    };

    fn op(invoke: u64, complete: u64, effect: Effect) -> SearchOp {
        SearchOp {
            invoke: Duration::from_millis(invoke),
            complete: Some(Duration::from_millis(complete)),
            effect,
        }
    }

    #[test]
    fn a_stale_read_among_many_operations_shrinks_to_three() {
        // Value i written then read back, 30 times; then a read of value 3 (stale).
        let mut ops = Vec::new();
        for i in 0..30u32 {
            let t = u64::from(i) * 10;
            ops.push(op(t, t + 2, Effect::Write(i)));
            ops.push(op(t + 3, t + 4, Effect::Read(Some(i))));
        }
        ops.push(op(400, 401, Effect::Read(Some(3))));
        let kept = shrink(&ops, LIMITS, 10_000_000);
        // The write of 3, a later write, and the stale read: nothing less is a violation.
        assert_eq!(kept.len(), 3, "{kept:?}");
        assert_eq!(kept[0], 6);
        assert_eq!(ops[kept[1]].effect.writes().map(|v| v > 3), Some(true));
        assert_eq!(kept[2], 60);
    }

    #[test]
    fn a_write_whose_value_is_read_is_never_deleted() {
        // Deleting the write of 1 would make the read of 1 a violation of its own making.
        let ops = [
            op(0, 1, Effect::Write(1)),
            op(2, 3, Effect::Read(Some(1))),
            op(4, 5, Effect::Read(None)),
        ];
        let kept = shrink(&ops, LIMITS, 1_000_000);
        assert_eq!(kept, [0, 2]);
        assert_eq!(safe_removal(&ops, &[0, 1, 2], &[0]), Vec::<usize>::new());
    }

    #[test]
    fn a_write_kept_back_keeps_the_writes_whose_values_it_observes() {
        // Deleting 0 and 1 together is safe; deleting 0 alone is not while 1 (an unknown
        // compare-and-set from 0's value, whose own value 2 reads) must stay.
        let ops = [
            op(0, 1, Effect::Write(1)),
            SearchOp {
                invoke: Duration::from_millis(2),
                complete: None,
                effect: Effect::CompareAndSet {
                    expect: Some(1),
                    new: 2,
                    matched: None,
                },
            },
            op(4, 5, Effect::Read(Some(2))),
        ];
        assert_eq!(safe_removal(&ops, &[0, 1, 2], &[0, 1]), Vec::<usize>::new());
        assert_eq!(safe_removal(&ops, &[0, 1, 2], &[0, 1, 2]), [0, 1, 2]);
    }

    #[test]
    fn writes_stay_while_a_failed_compare_and_set_remains() {
        let failed = Effect::CompareAndSet {
            expect: None,
            new: 5,
            matched: Some(false),
        };
        let ops = [op(0, 1, Effect::Write(1)), op(2, 3, failed)];
        assert_eq!(safe_removal(&ops, &[0, 1], &[0]), Vec::<usize>::new());
        // Without the failed compare-and-set nothing can tell the write's value from absence.
        assert_eq!(safe_removal(&ops, &[0, 1], &[0, 1]), [0, 1]);
    }
}
