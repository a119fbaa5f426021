//! openraft's type configuration for the lock service.

use std::io::Cursor;

use crate::state::{Request, Response};

/// A lock-service node id.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The lock service's Raft types.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);
