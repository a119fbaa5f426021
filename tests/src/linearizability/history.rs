//! A history of operations on registers (one register per key), as a client saw them: who
//! called what, when the call was made, and — if it is known — when and how it completed.
//!
//! Times are offsets from one shared monotonic clock (`Duration` since the workload started).
//! An operation without a [`Completion`] has an unknown outcome (the client crashed, or the
//! call failed in a way that may have been applied): it may have taken effect at any moment
//! after its invocation, or never. An operation known not to have been applied (a definite
//! failure) is not in the history at all, nor is a read that failed.
//!
//! Operations are those of a compare-and-set register: [`Call::Read`] answers the value or
//! `None` (the cell does not exist), [`Call::Write`] sets a value, and
//! [`Call::CompareAndSet`] sets `new` only if the register holds `expect` (`None`: only if
//! the cell does not exist), answering whether it did.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

/// What a client asked of one register.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Call {
    /// Read the register.
    Read,
    /// Set the register to this value.
    Write(Bytes),
    /// Set the register to `new` if it holds `expect` (`None`: if it is absent).
    CompareAndSet {
        /// The value the register must hold (`None`: the cell must not exist).
        expect: Option<Bytes>,
        /// The value written if it does.
        new: Bytes,
    },
}

/// What a completed call answered.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Return {
    /// A read's answer (`None`: the cell does not exist).
    Read(Option<Bytes>),
    /// A write was acknowledged.
    Write,
    /// Whether a compare-and-set matched (and so wrote).
    CompareAndSet(bool),
}

/// When and how an operation completed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Completion {
    /// When the answer arrived.
    pub at: Duration,
    /// The answer.
    pub ret: Return,
}

/// One operation of a history.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Operation {
    /// The client (process) that made the call; one call at a time per client.
    pub client: u32,
    /// The register's key.
    pub key: Bytes,
    /// What was asked.
    pub call: Call,
    /// When the call was made.
    pub invoke: Duration,
    /// How it completed; `None`: the outcome is unknown.
    pub completion: Option<Completion>,
}

impl Operation {
    /// An operation that completed with `ret` at `at`.
    pub fn completed(
        client: u32,
        key: impl Into<Bytes>,
        call: Call,
        invoke: Duration,
        at: Duration,
        ret: Return,
    ) -> Operation {
        Operation {
            client,
            key: key.into(),
            call,
            invoke,
            completion: Some(Completion { at, ret }),
        }
    }

    /// An operation whose outcome is unknown.
    pub fn unknown(client: u32, key: impl Into<Bytes>, call: Call, invoke: Duration) -> Operation {
        Operation {
            client,
            key: key.into(),
            call,
            invoke,
            completion: None,
        }
    }

    /// Whether its outcome is unknown.
    pub fn is_unknown(&self) -> bool {
        self.completion.is_none()
    }
}

/// A history the checker cannot judge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    /// An operation completes before it was invoked.
    #[error("operation {index} ({op}) completes before it was invoked")]
    CompletesBeforeInvoke {
        /// Its position in the history.
        index: usize,
        /// The operation, displayed.
        op: String,
    },
    /// An answer of the wrong kind (a read answered like a write, ...).
    #[error("operation {index} ({op}) has an answer of another kind of call")]
    MismatchedReturn {
        /// Its position in the history.
        index: usize,
        /// The operation, displayed.
        op: String,
    },
}

/// Checks that every completion follows its invocation and answers its kind of call.
pub fn validate(history: &[Operation]) -> Result<(), HistoryError> {
    for (index, op) in history.iter().enumerate() {
        let Some(c) = &op.completion else { continue };
        if c.at < op.invoke {
            return Err(HistoryError::CompletesBeforeInvoke {
                index,
                op: op.to_string(),
            });
        }
        let matches = matches!(
            (&op.call, &c.ret),
            (Call::Read, Return::Read(_))
                | (Call::Write(_), Return::Write)
                | (Call::CompareAndSet { .. }, Return::CompareAndSet(_))
        );
        if !matches {
            return Err(HistoryError::MismatchedReturn {
                index,
                op: op.to_string(),
            });
        }
    }
    Ok(())
}

/// A value as text: UTF-8 in quotes when it is printable, else escaped bytes.
pub(crate) struct ShowValue<'a>(pub(crate) Option<&'a Bytes>);

impl fmt::Display for ShowValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("absent"),
            Some(v) => write!(f, "\"{}\"", v.escape_ascii()),
        }
    }
}

/// A time as seconds with millisecond precision.
pub(crate) struct ShowTime(pub(crate) Duration);

impl fmt::Display for ShowTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}s", self.0.as_secs(), self.0.subsec_millis())
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Call::Read => f.write_str("read"),
            Call::Write(v) => write!(f, "write {}", ShowValue(Some(v))),
            Call::CompareAndSet { expect, new } => write!(
                f,
                "cas {} -> {}",
                ShowValue(expect.as_ref()),
                ShowValue(Some(new))
            ),
        }
    }
}

impl fmt::Display for Return {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Return::Read(v) => write!(f, "{}", ShowValue(v.as_ref())),
            Return::Write => f.write_str("ok"),
            Return::CompareAndSet(matched) => write!(f, "{matched}"),
        }
    }
}

/// `client 3 key "k" [1.200s, 1.350s] cas "a" -> "b" = true`; an unknown outcome shows
/// `[1.200s, ?] ... = unknown`.
impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "client {} key \"{}\" [{}, ",
            self.client,
            self.key.escape_ascii(),
            ShowTime(self.invoke)
        )?;
        match &self.completion {
            Some(c) => write!(f, "{}] {} = {}", ShowTime(c.at), self.call, c.ret),
            None => write!(f, "?] {} = unknown", self.call),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn operations_display_their_client_key_times_call_and_answer() {
        let cas = Operation::completed(
            3,
            "k",
            Call::CompareAndSet {
                expect: None,
                new: Bytes::from("b"),
            },
            ms(1200),
            ms(1350),
            Return::CompareAndSet(true),
        );
        assert_eq!(
            cas.to_string(),
            "client 3 key \"k\" [1.200s, 1.350s] cas absent -> \"b\" = true"
        );
        let write = Operation::unknown(1, "k", Call::Write(Bytes::from("x\n")), ms(5));
        assert_eq!(
            write.to_string(),
            "client 1 key \"k\" [0.005s, ?] write \"x\\n\" = unknown"
        );
        assert!(write.is_unknown());
    }

    #[test]
    fn a_completion_before_the_invocation_or_of_another_kind_is_refused() {
        let early = Operation::completed(1, "k", Call::Read, ms(10), ms(9), Return::Read(None));
        assert!(matches!(
            validate(&[early]),
            Err(HistoryError::CompletesBeforeInvoke { index: 0, .. })
        ));
        let ok = Operation::completed(1, "k", Call::Read, ms(1), ms(1), Return::Read(None));
        let odd = Operation::completed(1, "k", Call::Read, ms(1), ms(2), Return::Write);
        assert!(matches!(
            validate(&[ok.clone(), odd]),
            Err(HistoryError::MismatchedReturn { index: 1, .. })
        ));
        assert_eq!(validate(&[ok]), Ok(()));
    }
}
