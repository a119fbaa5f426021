//! The commit log's errors.

use std::io;

/// Everything that can go wrong writing or reading the commit log.
#[derive(Debug, thiserror::Error)]
pub enum CommitLogError {
    /// A storage operation failed (outside the append path, which stops the log instead).
    #[error("commit log i/o error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A segment holds damaged data where a torn tail is not acceptable.
    #[error("commit log segment {path} is corrupt at offset {offset}: {reason}")]
    Corrupt {
        /// The segment's path on the storage root.
        path: String,
        /// Offset of the first bad byte.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A write or fdatasync failed earlier; the log accepts no more appends (fsyncs are never
    /// retried: the kernel may have dropped the dirty pages). The server must stop.
    #[error("commit log stopped after a failed write or sync")]
    Stopped,
    /// The payload is larger than `MAX_PAYLOAD_BYTES`.
    #[error("commit log record of {len} payload bytes exceeds the limit of {max}")]
    RecordTooLarge {
        /// Payload bytes offered.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The record's sequence range is impossible (sequence 0, no entries, or overflow).
    #[error("invalid commit log record: {0}")]
    InvalidRecord(&'static str),
    /// The server id cannot name a log directory.
    #[error("invalid server id {id:?} for a commit log: {reason}")]
    InvalidServerId {
        /// The id given.
        id: String,
        /// Why it is refused.
        reason: &'static str,
    },
}

impl CommitLogError {
    pub(crate) fn io(path: impl Into<String>) -> impl FnOnce(io::Error) -> CommitLogError {
        let path = path.into();
        move |source| CommitLogError::Io { path, source }
    }
}

/// A replay failure: the log could not be read, or the caller's function failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError<E> {
    /// Reading the log failed (I/O or corruption).
    #[error(transparent)]
    Log(#[from] CommitLogError),
    /// The function applying records returned an error; replay stopped there.
    #[error("applying a replayed commit log record failed: {0}")]
    Apply(E),
}

impl<E: From<CommitLogError>> ReplayError<E> {
    /// The error as the caller's own type: `replay(..).map_err(ReplayError::flatten)`.
    pub fn flatten(self) -> E {
        match self {
            ReplayError::Log(e) => E::from(e),
            ReplayError::Apply(e) => e,
        }
    }
}
