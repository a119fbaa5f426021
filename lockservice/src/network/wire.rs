//! The envelope codec: openraft requests, responses and errors as postcard bytes inside
//! `RaftRequest` / `RaftReply`.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tabula_proto::tabula::raft::v1::{RaftReply, raft_reply};

/// A Raft message that could not be encoded, decoded or delivered.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// A value did not serialize (a bug: openraft's types always should).
    #[error("encode {what}: {source}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The serializer's error.
        #[source]
        source: postcard::Error,
    },
    /// Bytes from the peer did not decode.
    #[error("decode {what}: {source}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// The deserializer's error.
        #[source]
        source: postcard::Error,
    },
    /// The reply carried neither a response nor an error.
    #[error("reply without an outcome")]
    EmptyReply,
    /// The peer's address is not a valid URI.
    #[error("bad peer address {addr:?}: {reason}")]
    BadAddress {
        /// The address as configured.
        addr: String,
        /// Why it does not parse.
        reason: String,
    },
    /// The encoded request exceeds the message-size limit.
    #[error("request of {len} bytes exceeds the {limit}-byte message limit")]
    TooLarge {
        /// Encoded size.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The RPC failed with a gRPC status.
    #[error("rpc failed: {0}")]
    Status(#[from] tonic::Status),
}

pub(super) fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, WireError> {
    postcard::to_allocvec(value).map_err(|source| WireError::Encode { what, source })
}

pub(super) fn decode<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, WireError> {
    postcard::from_bytes(bytes).map_err(|source| WireError::Decode { what, source })
}

/// Encodes what the local Raft answered into a reply.
pub(super) fn reply<R: Serialize, E: Serialize>(
    result: &Result<R, E>,
) -> Result<RaftReply, WireError> {
    let outcome = match result {
        Ok(resp) => raft_reply::Outcome::Response(encode("raft response", resp)?),
        Err(err) => raft_reply::Outcome::RaftError(encode("raft error", err)?),
    };
    Ok(RaftReply {
        outcome: Some(outcome),
    })
}

/// Decodes a reply into the peer's answer: `Ok(Ok(response))` or `Ok(Err(raft_error))`.
pub(super) fn open_reply<R: DeserializeOwned, E: DeserializeOwned>(
    reply: &RaftReply,
) -> Result<Result<R, E>, WireError> {
    match &reply.outcome {
        Some(raft_reply::Outcome::Response(bytes)) => Ok(Ok(decode("raft response", bytes)?)),
        Some(raft_reply::Outcome::RaftError(bytes)) => Ok(Err(decode("raft error", bytes)?)),
        None => Err(WireError::EmptyReply),
    }
}
