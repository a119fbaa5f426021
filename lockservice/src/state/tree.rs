//! The tree of files.

use super::lock::LockHolder;

/// A file as a read sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileView {
    /// Contents.
    pub contents: Vec<u8>,
    /// The log index that last created or changed it.
    pub generation: u64,
    /// The session it dies with, if ephemeral.
    pub ephemeral_session: Option<u64>,
    /// Its lock holders, by session id.
    pub lock_holders: Vec<LockHolder>,
}
