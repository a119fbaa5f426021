//! What the client's calls answer: plain Rust types (no proto), printable as JSON by the CLI.

use std::fmt;

use serde::Serialize;
use tabula_common::Error;
use tabula_proto::tabula::lock::v1 as pb;

use crate::api::holder_from_proto;
use crate::state::LockHolder;

/// A file as `get` saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileInfo {
    /// The file's contents.
    pub contents: Vec<u8>,
    /// The log index that last changed the file: the value compare-and-set compares.
    pub generation: u64,
    /// The session the file dies with, if it is ephemeral.
    pub ephemeral_session: Option<u64>,
    /// The sessions holding the file's lock.
    pub lock_holders: Vec<LockHolder>,
    /// The applied log index the read saw: watch from `revision + 1` to follow the file.
    pub revision: u64,
}

/// A directory listing as `list` saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listing {
    /// Child names (not paths), sorted.
    pub children: Vec<String>,
    /// The applied log index the read saw.
    pub revision: u64,
}

/// The cell as one node (the leader, when one could be reached) sees it, with each member's
/// own applied index as far as it answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CellStatus {
    /// The node that answered.
    pub node_id: u64,
    /// The leader's id and address, if the answering node knows one.
    pub leader: Option<(u64, String)>,
    /// The answering node's Raft term.
    pub term: u64,
    /// The answering node's last applied log index.
    pub applied_index: u64,
    /// Voters and learners.
    pub members: Vec<MemberStatus>,
}

/// One member of the cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberStatus {
    /// Its Raft id.
    pub id: u64,
    /// Its `host:port`.
    pub addr: String,
    /// A voter (else a learner).
    pub voter: bool,
    /// The highest log index known to be replicated on it; only the leader knows.
    pub matched_index: Option<u64>,
    /// Its own last applied log index, as it answered the node that answered.
    pub applied: MemberApplied,
}

/// A member's own applied index, as far as the answering node could tell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum MemberApplied {
    /// Its last applied log index (the answering node's own, or what a member answered).
    Index(u64),
    /// It was asked and gave no answer in time, or an unusable one: why.
    Unreachable(String),
    /// It was not asked.
    Unknown,
}

impl MemberApplied {
    /// The index, if the member answered.
    pub fn index(&self) -> Option<u64> {
        match self {
            MemberApplied::Index(i) => Some(*i),
            MemberApplied::Unreachable(_) | MemberApplied::Unknown => None,
        }
    }

    fn from_proto(m: &pb::Member) -> MemberApplied {
        if m.has_applied {
            MemberApplied::Index(m.applied_index)
        } else if !m.unreachable.is_empty() {
            MemberApplied::Unreachable(m.unreachable.clone())
        } else {
            MemberApplied::Unknown
        }
    }
}

/// A session's standing, computed from the local lease (see `Session::state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SessionState {
    /// The local lease runs: the session's locks and ephemeral files are safe to act on.
    Safe,
    /// The local lease ran out and KeepAlives are being retried within the grace period: the
    /// session may still be alive, but its holder must not act on its locks.
    Jeopardy,
    /// The session is gone (or the client gave it up): its locks and ephemeral files are lost.
    /// Final.
    Expired,
}

impl fmt::Display for SessionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SessionState::Safe => "safe",
            SessionState::Jeopardy => "jeopardy",
            SessionState::Expired => "expired",
        })
    }
}

/// A malformed answer from a node: a bug or version skew, never retried.
pub(super) fn bad_answer(what: &str, e: &Error) -> Error {
    Error::internal(format!("malformed {what} answer: {}", e.message))
}

impl FileInfo {
    pub(super) fn from_proto(r: pb::GetResponse) -> Result<FileInfo, Error> {
        let lock_holders = r
            .lock_holders
            .iter()
            .map(holder_from_proto)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad_answer("Get", &e))?;
        Ok(FileInfo {
            contents: r.contents,
            generation: r.generation,
            ephemeral_session: (r.ephemeral_session_id != 0).then_some(r.ephemeral_session_id),
            lock_holders,
            revision: r.revision,
        })
    }
}

impl Listing {
    pub(super) fn from_proto(r: pb::ListResponse) -> Listing {
        Listing {
            children: r.children,
            revision: r.revision,
        }
    }
}

impl CellStatus {
    pub(super) fn from_proto(r: pb::StatusResponse) -> CellStatus {
        CellStatus {
            node_id: r.node_id,
            leader: (r.leader_id != 0).then_some((r.leader_id, r.leader_addr)),
            term: r.term,
            applied_index: r.applied_index,
            members: r
                .members
                .into_iter()
                .map(|m| MemberStatus {
                    applied: MemberApplied::from_proto(&m),
                    id: m.id,
                    addr: m.addr,
                    voter: m.voter,
                    matched_index: m.has_matched.then_some(m.matched_index),
                })
                .collect(),
        }
    }
}
