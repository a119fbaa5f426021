//! The Wing–Gong search with Lowe's memoization (WGL, as in Porcupine) over the operations of
//! one register: is there a total order of the operations that respects real time (an
//! operation that completed before another was invoked comes first) and that the register
//! ([`super::model`]) accepts?
//!
//! The history becomes a doubly linked list of call and return events in time order (at equal
//! times calls first, so touching intervals count as concurrent). The search walks the list:
//! at a call it tries to linearize that operation now (the model accepts it, and the pair
//! (set of linearized operations, register state) has not been seen before); linearized, the
//! operation's events are lifted out of the list and the walk starts again at the head. Meeting
//! a return means an operation that completed was not linearized before its completion: undo
//! the last choice and try the next call after it. Every completed operation linearized: the
//! history is linearizable. Nothing left to undo: it is not.
//!
//! Operations with an unknown outcome have no return event: they may be linearized anywhere
//! after their invocation, or left out. One reduction keeps their number from blowing the
//! search up (every subset of them is otherwise a new state): an operation of unknown outcome
//! that wrote is never directly followed by a plain write, because such an order is still valid
//! with that operation left out, which the search also tries. Whether the last operation was
//! such a write is part of the memoized state.
//!
//! The search is bounded: past `max_steps` loop iterations or `max_cache_bytes` of memoized
//! states it gives up rather than hang.

use std::collections::HashSet;
use std::time::Duration;

use super::model::{Effect, State, step};

/// One operation as the search sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SearchOp {
    pub(crate) invoke: Duration,
    /// `None`: unknown outcome (no return event).
    pub(crate) complete: Option<Duration>,
    pub(crate) effect: Effect,
}

/// Bounds on one search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) max_steps: u64,
    pub(crate) max_cache_bytes: usize,
}

/// Which bound stopped a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bound {
    Steps,
    Memory,
}

/// How far the search got before it had to give up on every order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Deepest {
    /// The longest run of operations it linearized, in order.
    pub(crate) linearized: Vec<usize>,
    /// The register's state after them.
    pub(crate) state: State,
    /// The operation whose completion came before it could be linearized.
    pub(crate) blocked: Option<usize>,
}

/// What a search found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    /// A valid order (operations of unknown outcome left out are absent from it).
    Linearizable { steps: u64, order: Vec<usize> },
    /// No valid order exists.
    NotLinearizable { steps: u64, deepest: Deepest },
    /// A bound was reached first.
    GaveUp { steps: u64, bound: Bound },
}

const NONE: usize = usize::MAX;
const HEAD: usize = 0;

/// A node of the event list; node 0 is the head sentinel.
#[derive(Debug, Clone, Copy)]
struct Node {
    op: usize,
    is_call: bool,
    /// For a call, its return's node (`NONE` for an unknown outcome).
    partner: usize,
    prev: usize,
    next: usize,
}

/// The event list, with dancing-links removal and restoration (restored in reverse order of
/// removal, which the search's stack guarantees).
struct Events {
    nodes: Vec<Node>,
}

impl Events {
    fn new(ops: &[SearchOp]) -> Events {
        // (time, returns after calls, op, is_call)
        let mut events: Vec<(Duration, u8, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            events.push((op.invoke, 0, i));
            if let Some(at) = op.complete {
                events.push((at, 1, i));
            }
        }
        events.sort_unstable();
        let mut nodes = Vec::with_capacity(events.len() + 1);
        nodes.push(Node {
            op: NONE,
            is_call: false,
            partner: NONE,
            prev: NONE,
            next: NONE,
        });
        let mut call_node = vec![NONE; ops.len()];
        for (k, &(_, kind, op)) in events.iter().enumerate() {
            let me = k + 1;
            nodes.push(Node {
                op,
                is_call: kind == 0,
                partner: NONE,
                prev: me - 1,
                next: if k + 1 < events.len() { me + 1 } else { NONE },
            });
            if kind == 0 {
                call_node[op] = me;
            } else {
                nodes[call_node[op]].partner = me;
            }
        }
        if !events.is_empty() {
            nodes[HEAD].next = 1;
        }
        Events { nodes }
    }

    fn first(&self) -> usize {
        self.nodes[HEAD].next
    }

    fn remove(&mut self, n: usize) {
        let Node { prev, next, .. } = self.nodes[n];
        self.nodes[prev].next = next;
        if next != NONE {
            self.nodes[next].prev = prev;
        }
    }

    fn restore(&mut self, n: usize) {
        let Node { prev, next, .. } = self.nodes[n];
        self.nodes[prev].next = n;
        if next != NONE {
            self.nodes[next].prev = n;
        }
    }

    /// Takes a call and its return out of the list.
    fn lift(&mut self, call: usize) {
        self.remove(call);
        let partner = self.nodes[call].partner;
        if partner != NONE {
            self.remove(partner);
        }
    }

    /// Puts back what `lift(call)` took out.
    fn unlift(&mut self, call: usize) {
        let partner = self.nodes[call].partner;
        if partner != NONE {
            self.restore(partner);
        }
        self.restore(call);
    }
}

/// A set of operation indexes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Bits(Box<[u64]>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)].into_boxed_slice())
    }

    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// What the search memoizes: the linearized set, the state, and whether the last operation
/// was an unknown-outcome write (which restricts what may follow).
type Memo = (Bits, State, bool);

/// One linearized operation on the search's stack.
struct Choice {
    call: usize,
    state_before: State,
    after_unknown_write_before: bool,
}

/// Whether `op` is an unknown-outcome operation that wrote if linearized.
fn unknown_write(op: &SearchOp) -> bool {
    op.complete.is_none() && op.effect.writes().is_some()
}

/// Searches for a linearization of `ops` on a register that starts absent.
pub(crate) fn search(ops: &[SearchOp], limits: Limits) -> Found {
    let mut events = Events::new(ops);
    let mut remaining = ops.iter().filter(|o| o.complete.is_some()).count();
    let words = ops.len().div_ceil(64);
    let memo_bytes = words * 8 + 64;
    let mut cache: HashSet<Memo> = HashSet::new();
    let mut cache_bytes = 0usize;
    let mut bits = Bits::new(ops.len());
    let mut state: State = None;
    let mut after_unknown_write = false;
    let mut stack: Vec<Choice> = Vec::new();
    let mut deepest: Option<Deepest> = None;
    let mut steps = 0u64;
    let mut entry = events.first();
    loop {
        if remaining == 0 {
            let order = stack.iter().map(|c| events.nodes[c.call].op).collect();
            return Found::Linearizable { steps, order };
        }
        steps += 1;
        if steps > limits.max_steps {
            return Found::GaveUp {
                steps,
                bound: Bound::Steps,
            };
        }
        if entry != NONE && events.nodes[entry].is_call {
            let i = events.nodes[entry].op;
            let op = &ops[i];
            let allowed = !(after_unknown_write && matches!(op.effect, Effect::Write(_)));
            if allowed && let Some(next) = step(state, &op.effect) {
                bits.set(i);
                let next_flag = unknown_write(op);
                if cache.insert((bits.clone(), next, next_flag)) {
                    cache_bytes += memo_bytes;
                    if cache_bytes > limits.max_cache_bytes {
                        return Found::GaveUp {
                            steps,
                            bound: Bound::Memory,
                        };
                    }
                    stack.push(Choice {
                        call: entry,
                        state_before: state,
                        after_unknown_write_before: after_unknown_write,
                    });
                    state = next;
                    after_unknown_write = next_flag;
                    events.lift(entry);
                    if op.complete.is_some() {
                        remaining -= 1;
                    }
                    entry = events.first();
                    continue;
                }
                bits.clear(i);
            }
            entry = events.nodes[entry].next;
        } else {
            // A completion (or the end) reached with a completed operation not linearized.
            if deepest
                .as_ref()
                .is_none_or(|d| stack.len() > d.linearized.len())
            {
                deepest = Some(Deepest {
                    linearized: stack.iter().map(|c| events.nodes[c.call].op).collect(),
                    state,
                    blocked: (entry != NONE).then(|| events.nodes[entry].op),
                });
            }
            let Some(choice) = stack.pop() else {
                let deepest = deepest.unwrap_or(Deepest {
                    linearized: Vec::new(),
                    state,
                    blocked: None,
                });
                return Found::NotLinearizable { steps, deepest };
            };
            let i = events.nodes[choice.call].op;
            bits.clear(i);
            state = choice.state_before;
            after_unknown_write = choice.after_unknown_write_before;
            events.unlift(choice.call);
            if ops[i].complete.is_some() {
                remaining += 1;
            }
            entry = events.nodes[choice.call].next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_steps: 1_000_000,
        max_cache_bytes: 64 << 20,
    };

    fn op(invoke: u64, complete: Option<u64>, effect: Effect) -> SearchOp {
        SearchOp {
            invoke: Duration::from_millis(invoke),
            complete: complete.map(Duration::from_millis),
            effect,
        }
    }

    #[test]
    fn an_empty_history_is_linearizable() {
        assert!(matches!(
            search(&[], LIMITS),
            Found::Linearizable { order, .. } if order.is_empty()
        ));
    }

    #[test]
    fn the_witness_order_respects_real_time_and_the_register() {
        // w1 [0,10] and r->1 [5,6] overlap, w2 [20,30] after both, r->2 [31,32].
        let ops = [
            op(0, Some(10), Effect::Write(1)),
            op(5, Some(6), Effect::Read(Some(1))),
            op(20, Some(30), Effect::Write(2)),
            op(31, Some(32), Effect::Read(Some(2))),
        ];
        let Found::Linearizable { order, .. } = search(&ops, LIMITS) else {
            panic!("not linearizable")
        };
        assert_eq!(order, [0, 1, 2, 3]);
    }

    #[test]
    fn a_stale_read_is_blocked_at_its_completion() {
        let ops = [
            op(0, Some(1), Effect::Write(1)),
            op(2, Some(3), Effect::Write(2)),
            op(4, Some(5), Effect::Read(Some(1))),
        ];
        let Found::NotLinearizable { deepest, .. } = search(&ops, LIMITS) else {
            panic!("a stale read passed")
        };
        assert_eq!(deepest.linearized, [0, 1]);
        assert_eq!(deepest.blocked, Some(2));
        assert_eq!(deepest.state, Some(2));
    }

    #[test]
    fn the_step_bound_gives_up() {
        let ops: Vec<SearchOp> = (0..50)
            .map(|i| op(0, Some(100), Effect::Write(i)))
            .chain([op(200, Some(201), Effect::Read(Some(999)))])
            .collect();
        let tight = Limits {
            max_steps: 1_000,
            ..LIMITS
        };
        assert_eq!(
            search(&ops, tight),
            Found::GaveUp {
                steps: 1_001,
                bound: Bound::Steps
            }
        );
        let small = Limits {
            max_cache_bytes: 1_000,
            ..LIMITS
        };
        assert!(matches!(
            search(&ops, small),
            Found::GaveUp {
                bound: Bound::Memory,
                ..
            }
        ));
    }

    #[test]
    fn many_unknown_writes_do_not_blow_the_search_up() {
        // 40 writes of unknown outcome, all concurrent with a long run of reads of a value
        // written before: without the reduction every subset of them is a state.
        let mut ops = vec![op(0, Some(1), Effect::Write(0))];
        ops.extend((0..40).map(|i| op(2, None, Effect::Write(i + 1))));
        ops.extend((0..200).map(|i| op(10 + 2 * i, Some(11 + 2 * i), Effect::Read(Some(0)))));
        let Found::Linearizable { steps, .. } = search(&ops, LIMITS) else {
            panic!("not linearizable")
        };
        // About (reads x unknown writes^2): polynomial, where every subset would be 2^40.
        assert!(steps < 1_000_000, "{steps} steps");
    }
}
