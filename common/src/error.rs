//! The one small public error code, with one mapping to `tonic::Status` and back.
//!
//! Clients decide retries from `Code`, never by parsing messages. Codes that need more than
//! `tonic::Code` can say (`WrongTablet`, `NotLeader`) travel in the `tabula-code` metadata entry,
//! with their hint in `tabula-hint`.

use std::fmt;

/// What went wrong, as far as a caller needs to know to decide what to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    /// The table, row, file or session does not exist.
    NotFound,
    /// The table or file already exists.
    AlreadyExists,
    /// The request is malformed or beyond a limit; retrying will not help.
    InvalidArgument,
    /// The system is not in the state the request needs (a failed epoch check, a closed log).
    FailedPrecondition,
    /// A compare-and-set condition did not hold (a file's generation moved on); reread and
    /// decide again.
    Aborted,
    /// The lock-service session is closed or expired: its locks and ephemeral files are gone.
    SessionExpired,
    /// A watch asked for history the lock service no longer keeps; `oldest` is the oldest
    /// revision still watchable. Reread, then watch from the read's revision.
    Compacted { oldest: u64 },
    /// This server does not serve the row at the current epoch; refresh the location cache.
    /// `hint` is what the server knows (e.g. the range it does serve), for the log.
    WrongTablet { hint: String },
    /// This node is not the lock-service leader; `hint` is the leader's address if known.
    NotLeader { hint: Option<String> },
    /// Try again later (overloaded, lease in jeopardy, shutting down).
    Unavailable,
    /// The deadline passed before the outcome was known.
    DeadlineExceeded,
    /// A budget (memory, queue, quota) is exhausted.
    ResourceExhausted,
    /// A bug or corrupt data; not retryable.
    Internal,
}

impl Code {
    /// Whether a client may retry an idempotent call that failed with this code.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Code::WrongTablet { .. }
                | Code::NotLeader { .. }
                | Code::Unavailable
                | Code::DeadlineExceeded
                | Code::ResourceExhausted
        )
    }

    fn tag(&self) -> &'static str {
        match self {
            Code::NotFound => "not-found",
            Code::AlreadyExists => "already-exists",
            Code::InvalidArgument => "invalid-argument",
            Code::FailedPrecondition => "failed-precondition",
            Code::Aborted => "aborted",
            Code::SessionExpired => "session-expired",
            Code::Compacted { .. } => "compacted",
            Code::WrongTablet { .. } => "wrong-tablet",
            Code::NotLeader { .. } => "not-leader",
            Code::Unavailable => "unavailable",
            Code::DeadlineExceeded => "deadline-exceeded",
            Code::ResourceExhausted => "resource-exhausted",
            Code::Internal => "internal",
        }
    }

    fn grpc(&self) -> tonic::Code {
        match self {
            Code::NotFound => tonic::Code::NotFound,
            Code::AlreadyExists => tonic::Code::AlreadyExists,
            Code::InvalidArgument => tonic::Code::InvalidArgument,
            Code::FailedPrecondition | Code::WrongTablet { .. } | Code::SessionExpired => {
                tonic::Code::FailedPrecondition
            }
            Code::Aborted => tonic::Code::Aborted,
            Code::Compacted { .. } => tonic::Code::OutOfRange,
            Code::NotLeader { .. } | Code::Unavailable => tonic::Code::Unavailable,
            Code::DeadlineExceeded => tonic::Code::DeadlineExceeded,
            Code::ResourceExhausted => tonic::Code::ResourceExhausted,
            Code::Internal => tonic::Code::Internal,
        }
    }
}

/// The end of a tablet server's refusal to merge two tablets while an SSTable only one of
/// them names still holds rows of the other's range (a split sibling compacted since the
/// split); the master recognises it and major-compacts both before merging again.
pub const MERGE_NEEDS_MAJOR_COMPACTION: &str = "major-compact both tablets, then merge";

/// A public error: a code and a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Error {
    /// What a caller acts on.
    pub code: Code,
    /// What a human reads.
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.tag(), self.message)
    }
}

impl Error {
    /// An error with `code` and `message`.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
        }
    }

    /// `InvalidArgument` with `message`.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Error::new(Code::InvalidArgument, message)
    }

    /// `Internal` with `message`.
    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(Code::Internal, message)
    }
}

const CODE_KEY: &str = "tabula-code";
const HINT_KEY: &str = "tabula-hint";

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        let mut status = tonic::Status::new(e.code.grpc(), e.message);
        let md = status.metadata_mut();
        if let Ok(v) = e.code.tag().parse() {
            md.insert(CODE_KEY, v);
        }
        let oldest;
        let hint = match &e.code {
            Code::WrongTablet { hint } => Some(hint.as_str()),
            Code::NotLeader { hint } => hint.as_deref(),
            Code::Compacted { oldest: o } => {
                oldest = o.to_string();
                Some(oldest.as_str())
            }
            _ => None,
        };
        if let Some(v) = hint.and_then(|h| h.parse().ok()) {
            md.insert(HINT_KEY, v);
        }
        status
    }
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Self {
        let md = s.metadata();
        let tag = md.get(CODE_KEY).and_then(|v| v.to_str().ok());
        let hint = md
            .get(HINT_KEY)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let code = match tag {
            Some("wrong-tablet") => Code::WrongTablet {
                hint: hint.unwrap_or_default(),
            },
            Some("not-leader") => Code::NotLeader { hint },
            Some("session-expired") => Code::SessionExpired,
            Some("compacted") => Code::Compacted {
                oldest: hint.and_then(|h| h.parse().ok()).unwrap_or(0),
            },
            _ => match s.code() {
                tonic::Code::NotFound => Code::NotFound,
                tonic::Code::AlreadyExists => Code::AlreadyExists,
                tonic::Code::InvalidArgument | tonic::Code::OutOfRange => Code::InvalidArgument,
                tonic::Code::FailedPrecondition => Code::FailedPrecondition,
                tonic::Code::Aborted => Code::Aborted,
                tonic::Code::Unavailable | tonic::Code::Cancelled => Code::Unavailable,
                tonic::Code::DeadlineExceeded => Code::DeadlineExceeded,
                tonic::Code::ResourceExhausted => Code::ResourceExhausted,
                _ => Code::Internal,
            },
        };
        Error {
            code,
            message: s.message().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_status() {
        let codes = [
            Code::NotFound,
            Code::AlreadyExists,
            Code::InvalidArgument,
            Code::FailedPrecondition,
            Code::Aborted,
            Code::SessionExpired,
            Code::Compacted { oldest: 42 },
            Code::WrongTablet {
                hint: "serves [a, b)".into(),
            },
            Code::NotLeader {
                hint: Some("127.0.0.1:7101".into()),
            },
            Code::NotLeader { hint: None },
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::ResourceExhausted,
            Code::Internal,
        ];
        for code in codes {
            let e = Error::new(code.clone(), "boom");
            let back = Error::from(tonic::Status::from(e.clone()));
            assert_eq!(back, e);
        }
    }

    #[test]
    fn plain_statuses_map_by_grpc_code() {
        let e = Error::from(tonic::Status::unavailable("down"));
        assert_eq!(e.code, Code::Unavailable);
        assert!(e.code.is_retryable());
        assert!(
            !Error::from(tonic::Status::internal("x"))
                .code
                .is_retryable()
        );
    }
}
