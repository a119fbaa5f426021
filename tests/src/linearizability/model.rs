//! The sequential specification the checker holds a history against: one compare-and-set
//! register, its values interned as small integers so that the search copies and hashes
//! `Option<u32>` states instead of byte strings.
//!
//! An operation becomes an [`Effect`]; [`step`] answers the register's state after the effect
//! is applied to `state`, or `None` if the effect is impossible there (a read that answered
//! another value, a compare-and-set whose answer contradicts the state). An effect with an
//! unknown outcome is possible only where it would take effect (a compare-and-set only where
//! the register holds `expect`); not taking effect is the search leaving it out.

use std::collections::HashMap;

use bytes::Bytes;

use super::history::{Call, Operation, Return};

/// The register's state: the id of the value it holds, `None` while absent.
pub(crate) type State = Option<u32>;

/// An operation as a transition of the register, values interned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    /// A completed read that answered this.
    Read(State),
    /// A write (acknowledged or of unknown outcome).
    Write(u32),
    /// A compare-and-set; `matched` is its answer, `None` if unknown.
    CompareAndSet {
        expect: State,
        new: u32,
        matched: Option<bool>,
    },
    /// A read whose answer is unknown: it constrains nothing and changes nothing.
    Nothing,
}

impl Effect {
    /// Whether it can change the state (a write, or a compare-and-set that matched or might
    /// have), and the value it would write.
    pub(crate) fn writes(&self) -> Option<u32> {
        match *self {
            Effect::Write(v) => Some(v),
            Effect::CompareAndSet {
                new,
                matched: Some(true) | None,
                ..
            } => Some(new),
            _ => None,
        }
    }

    /// The value (or absence) it shows to have been in the register: a read's answer, a
    /// compare-and-set's `expect` (unless it failed, which shows only a difference).
    pub(crate) fn observes(&self) -> Option<State> {
        match *self {
            Effect::Read(s) => Some(s),
            Effect::CompareAndSet {
                expect,
                matched: Some(true) | None,
                ..
            } => Some(expect),
            _ => None,
        }
    }

    /// Whether it is a compare-and-set that answered `false`.
    pub(crate) fn is_failed_cas(&self) -> bool {
        matches!(
            self,
            Effect::CompareAndSet {
                matched: Some(false),
                ..
            }
        )
    }
}

/// The register's state after `effect` at `state`, or `None` if `effect` cannot happen there.
pub(crate) fn step(state: State, effect: &Effect) -> Option<State> {
    match *effect {
        Effect::Read(seen) => (seen == state).then_some(state),
        Effect::Write(v) => Some(Some(v)),
        Effect::CompareAndSet {
            expect,
            new,
            matched,
        } => match matched {
            Some(true) | None => (state == expect).then_some(Some(new)),
            Some(false) => (state != expect).then_some(state),
        },
        Effect::Nothing => Some(state),
    }
}

/// Interns values: equal byte strings get the same id.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    ids: HashMap<Bytes, u32>,
}

impl Interner {
    /// The id of `value`, assigning the next one if it is new.
    pub(crate) fn id(&mut self, value: &Bytes) -> u32 {
        let next = u32::try_from(self.ids.len()).unwrap_or(u32::MAX);
        *self.ids.entry(value.clone()).or_insert(next)
    }

    fn state(&mut self, value: Option<&Bytes>) -> State {
        value.map(|v| self.id(v))
    }

    /// `op` as an effect on its register.
    pub(crate) fn effect(&mut self, op: &Operation) -> Effect {
        let ret = op.completion.as_ref().map(|c| &c.ret);
        match (&op.call, ret) {
            (Call::Read, Some(Return::Read(v))) => Effect::Read(self.state(v.as_ref())),
            (Call::Read, _) => Effect::Nothing,
            (Call::Write(v), _) => Effect::Write(self.id(v)),
            (Call::CompareAndSet { expect, new }, ret) => Effect::CompareAndSet {
                expect: self.state(expect.as_ref()),
                new: self.id(new),
                matched: match ret {
                    Some(Return::CompareAndSet(m)) => Some(*m),
                    _ => None,
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_must_see_the_state_and_writes_replace_it() {
        assert_eq!(step(Some(1), &Effect::Read(Some(1))), Some(Some(1)));
        assert_eq!(step(Some(1), &Effect::Read(None)), None);
        assert_eq!(step(None, &Effect::Read(None)), Some(None));
        assert_eq!(step(None, &Effect::Write(4)), Some(Some(4)));
        assert_eq!(step(Some(2), &Effect::Nothing), Some(Some(2)));
    }

    #[test]
    fn a_compare_and_set_answer_must_agree_with_the_state() {
        let cas = |expect, matched| Effect::CompareAndSet {
            expect,
            new: 9,
            matched,
        };
        assert_eq!(step(Some(1), &cas(Some(1), Some(true))), Some(Some(9)));
        assert_eq!(step(Some(2), &cas(Some(1), Some(true))), None);
        assert_eq!(step(Some(2), &cas(Some(1), Some(false))), Some(Some(2)));
        assert_eq!(step(Some(1), &cas(Some(1), Some(false))), None);
        assert_eq!(step(None, &cas(None, Some(true))), Some(Some(9)));
        // Unknown: possible only where it takes effect (leaving it out is the other case).
        assert_eq!(step(Some(1), &cas(Some(1), None)), Some(Some(9)));
        assert_eq!(step(Some(2), &cas(Some(1), None)), None);
    }

    #[test]
    fn interning_gives_equal_values_equal_ids() {
        let mut i = Interner::default();
        let a = i.id(&Bytes::from("a"));
        let b = i.id(&Bytes::from("b"));
        assert_ne!(a, b);
        assert_eq!(i.id(&Bytes::from("a")), a);
    }
}
