//! The serialized state machine.

/// A snapshot could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The bytes are not a snapshot.
    #[error("snapshot does not decode: {0}")]
    Decode(String),
    /// The snapshot decodes but breaks an invariant.
    #[error("snapshot is inconsistent: {0}")]
    Inconsistent(String),
}
