//! Durable Raft storage (being written).
