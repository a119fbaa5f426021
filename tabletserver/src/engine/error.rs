//! The engine's error type and its mapping to the public error code.

use tabula_common::{Code, Error};

use super::commitlog::CommitLogError;
use super::manifest::ManifestError;
use super::mutation::{DecodeError, InvalidMutation};
use super::sstable::SstableError;

/// Everything that can go wrong in a tablet's storage.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The mutation broke a limit; nothing was written.
    #[error(transparent)]
    Invalid(#[from] InvalidMutation),
    /// The mutation names a family the tablet's schema does not have.
    #[error("column family {0:?} does not exist")]
    UnknownFamily(String),
    /// The row is outside the tablet's row range.
    #[error("row {row:?} is outside this tablet's range")]
    OutOfRange {
        /// The row asked for (escaped for the message).
        row: String,
    },
    /// An SSTable could not be read.
    #[error(transparent)]
    Sstable(#[from] SstableError),
    /// The commit log failed; it takes no more writes.
    #[error(transparent)]
    CommitLog(#[from] CommitLogError),
    /// The manifest could not be read or written.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A commit-log payload did not decode.
    #[error(transparent)]
    Payload(#[from] DecodeError),
    /// Storage-root I/O failed.
    #[error("storage i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Writes waited too long for frozen memtables to be flushed (the flusher is failing or
    /// far behind); retry later.
    #[error("tablet {0} is not flushing fast enough; writes are held back")]
    Stalled(String),
    /// The tablet is closed or has failed.
    #[error("tablet is closed")]
    Closed,
    /// The engine's `ManifestWritePermit` refused a manifest store (this server may no longer
    /// own the tablet); nothing was stored, the tablet's data stays in memory and the commit
    /// log, and the work is retried once permitted.
    #[error("tablet {0}: manifest writes are not permitted now (this server may not own it)")]
    NotPermitted(String),
    /// A merge of two tablets was refused: a precondition does not hold (nothing was stored).
    #[error("merge refused: {0}")]
    MergeRefused(String),
    /// A task the engine ran the work in panicked or was cancelled (the runtime shutting
    /// down); the outcome of a write is then unknown.
    #[error("{0}")]
    Task(String),
    /// The tablet was split: its manifest names its children, and it is never opened again.
    #[error("tablet {tablet} was split into {children:?}")]
    WasSplit {
        /// The tablet asked for.
        tablet: tabula_common::TabletId,
        /// Its children, left then right.
        children: Vec<tabula_common::TabletId>,
    },
}

impl From<EngineError> for Error {
    fn from(e: EngineError) -> Self {
        let code = match &e {
            EngineError::Invalid(_) => Code::InvalidArgument,
            EngineError::UnknownFamily(_) => Code::NotFound,
            EngineError::OutOfRange { .. } => Code::WrongTablet {
                hint: e.to_string(),
            },
            EngineError::Closed | EngineError::CommitLog(_) | EngineError::NotPermitted(_) => {
                Code::Unavailable
            }
            EngineError::Stalled(_) => Code::ResourceExhausted,
            EngineError::WasSplit { .. } | EngineError::MergeRefused(_) => Code::FailedPrecondition,
            EngineError::Sstable(_)
            | EngineError::Manifest(_)
            | EngineError::Payload(_)
            | EngineError::Io(_)
            | EngineError::Task(_) => Code::Internal,
        };
        Error::new(code, e.to_string())
    }
}
