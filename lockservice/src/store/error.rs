//! `StoreError`: everything that can go wrong in the durable Raft storage, and its mapping onto
//! openraft's `StorageError` (which shuts the Raft node down: storage errors are not retried).

use std::io;
use std::path::{Path, PathBuf};

use openraft::{ErrorSubject, ErrorVerb, StorageError, StorageIOError};

use crate::state::SnapshotError;
use crate::types::NodeId;

/// An error of the lock service's durable Raft storage.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file-system call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("open", "fdatasync", "rename", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Bytes on disk fail their checksum or do not decode, somewhere a torn write cannot be.
    #[error("corrupt {path} at byte {offset}: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Where the damage starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The files decode but contradict each other (a hole in the log, an entry at the wrong
    /// index).
    #[error("inconsistent storage in {path}: {reason}")]
    Inconsistent {
        /// The data directory or file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Another store (in this process or another) has the data directory open.
    #[error("data directory {path} is locked by another store")]
    Locked {
        /// The data directory.
        path: PathBuf,
    },
    /// A value could not be serialized.
    #[error("encode {what}: {source}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The serializer's error.
        #[source]
        source: postcard::Error,
    },
    /// Appended entries do not follow the last entry of the log.
    #[error("append would leave a hole: expected index {expected}, got {got}")]
    NotContiguous {
        /// The index the next entry must have.
        expected: u64,
        /// The index it has.
        got: u64,
    },
    /// A snapshot's state does not restore.
    #[error("snapshot does not restore: {0}")]
    Snapshot(#[from] SnapshotError),
    /// An earlier write or fsync failed; the log refuses further writes because what reached
    /// the disk is unknown.
    #[error("log store failed earlier and refuses writes: {0}")]
    Failed(String),
    /// The log writer thread is gone (the store is shutting down).
    #[error("log writer thread stopped")]
    WriterGone,
    /// A blocking task or thread panicked or was cancelled.
    #[error("storage task failed: {0}")]
    Task(String),
}

impl StoreError {
    pub(super) fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        StoreError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    pub(super) fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> Self {
        StoreError::Corrupt {
            path: path.to_path_buf(),
            offset,
            reason: reason.into(),
        }
    }

    pub(super) fn inconsistent(path: &Path, reason: impl Into<String>) -> Self {
        StoreError::Inconsistent {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    /// Wraps the error for openraft, naming what was being done.
    pub(super) fn into_storage(
        self,
        subject: ErrorSubject<NodeId>,
        verb: ErrorVerb,
    ) -> StorageError<NodeId> {
        StorageIOError::new(subject, verb, &self).into()
    }
}

/// Maps a `Result<T, StoreError>` onto openraft's error with a subject and a verb.
// openraft's trait methods return `StorageError` unboxed; this only feeds them.
#[allow(clippy::result_large_err)]
pub(super) trait IntoStorage<T> {
    fn storage(
        self,
        subject: ErrorSubject<NodeId>,
        verb: ErrorVerb,
    ) -> Result<T, StorageError<NodeId>>;
}

impl<T> IntoStorage<T> for Result<T, StoreError> {
    fn storage(
        self,
        subject: ErrorSubject<NodeId>,
        verb: ErrorVerb,
    ) -> Result<T, StorageError<NodeId>> {
        self.map_err(|e| e.into_storage(subject, verb))
    }
}
