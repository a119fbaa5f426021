//! Raft traffic between the nodes of a cell over tonic (`tabula/raft.proto`).
//!
//! - `client`: `NetworkFactory` (openraft's `RaftNetworkFactory`) hands out one `PeerClient`
//!   per target, over a lazily connected channel; errors are classified for openraft:
//!   `Unreachable` (openraft backs off) when retrying at once cannot help, `Network` (retried at
//!   once) otherwise, `PayloadTooLarge` (openraft sends fewer entries) for an oversized batch,
//!   and the peer's own `RaftError` as `RemoteError`.
//! - `server`: `RaftGrpcService`, the receiving end; it refuses any request not meant for this
//!   node of this cell (`FailedPrecondition`) before decoding it, then forwards to the local
//!   `Raft`.
//! - `wire`: the envelope codec shared by both (postcard over openraft's serde types).
//!
//! Invariant: a node never acts on a Raft request whose `cluster_id` or `target_node` differs
//! from its own. openraft warns that replicating to the wrong node can lose data or panic the
//! leader.

mod client;
mod server;
mod wire;

pub use client::{NetworkFactory, NetworkOptions, PeerClient};
pub use server::RaftGrpcService;
pub use wire::WireError;
