//! The serialized state machine: JSON of a versioned record holding only primary data (files
//! with their lock holders, sessions, dedup table, retained events, limits, last applied index).
//! Derived indexes (children, each session's locks and ephemeral files, the dedup eviction order)
//! are rebuilt on restore, and `LockState::from_snapshot` then checks every invariant, so a
//! snapshot that decodes but is inconsistent is refused rather than trusted.
//!
//! File contents are hex strings (JSON arrays of numbers would take up to 4 bytes per byte).
//!
//! ```text
//! { "format": "tabula-lockstate/1", "last_applied": u64, "limits": {..},
//!   "files": [ { "path", "contents": "hex", "generation", "ephemeral_session": u64|null,
//!                "lock_holders": [ { "session", "mode", "generation" } ] } ],   // path order
//!   "sessions": [ { "id", "ttl_ms" } ],                                          // id order
//!   "dedup": [ { "client_id", "seq", "index", "response" } ],                    // client order
//!   "compacted_through": u64, "events": [ { "revision", "path", "kind" } ] }     // log order
//! ```

use serde::{Deserialize, Serialize};

use super::dedup::{Dedup, LastWrite};
use super::events::{Event, History};
use super::lock::{LockHolder, Locks};
use super::machine::{Limits, LockState};
use super::path;
use super::session::Sessions;
use super::tree::{Node, Tree};

/// A snapshot could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The bytes are not a snapshot of this format.
    #[error("snapshot does not decode: {0}")]
    Decode(String),
    /// The snapshot decodes but breaks an invariant.
    #[error("snapshot is inconsistent: {0}")]
    Inconsistent(String),
}

const FORMAT: &str = "tabula-lockstate/1";

#[derive(Serialize, Deserialize)]
struct Snapshot {
    format: String,
    last_applied: u64,
    limits: Limits,
    files: Vec<FileRecord>,
    sessions: Vec<SessionRecord>,
    dedup: Vec<LastWrite>,
    compacted_through: u64,
    events: Vec<Event>,
}

#[derive(Serialize, Deserialize)]
struct FileRecord {
    path: String,
    #[serde(with = "hex")]
    contents: Vec<u8>,
    generation: u64,
    ephemeral_session: Option<u64>,
    lock_holders: Vec<LockHolder>,
}

#[derive(Serialize, Deserialize)]
struct SessionRecord {
    id: u64,
    ttl_ms: u64,
}

pub(super) fn encode(state: &LockState) -> Vec<u8> {
    let files = state
        .tree
        .iter()
        .map(|(path, node)| FileRecord {
            path: path.clone(),
            contents: node.contents.clone(),
            generation: node.generation,
            ephemeral_session: node.ephemeral_session,
            lock_holders: state.locks.holders(path),
        })
        .collect();
    let snapshot = Snapshot {
        format: FORMAT.to_owned(),
        last_applied: state.last_applied,
        limits: state.limits,
        files,
        sessions: state
            .sessions
            .iter()
            .map(|(id, s)| SessionRecord {
                id,
                ttl_ms: s.ttl_ms,
            })
            .collect(),
        dedup: state.dedup.iter().cloned().collect(),
        compacted_through: state.history.compacted_through(),
        events: state.history.iter().cloned().collect(),
    };
    // Only structs, sequences, strings and integers: serializing cannot fail.
    #[allow(clippy::expect_used)]
    serde_json::to_vec(&snapshot).expect("lock state serializes to JSON")
}

/// Decodes and rebuilds the derived indexes; the caller checks the invariants.
pub(super) fn decode(bytes: &[u8]) -> Result<LockState, SnapshotError> {
    let s: Snapshot =
        serde_json::from_slice(bytes).map_err(|e| SnapshotError::Decode(e.to_string()))?;
    if s.format != FORMAT {
        return Err(SnapshotError::Decode(format!(
            "format {:?}, expected {FORMAT:?}",
            s.format
        )));
    }
    rebuild(s).map_err(SnapshotError::Inconsistent)
}

fn rebuild(s: Snapshot) -> Result<LockState, String> {
    let mut sessions = Sessions::default();
    for r in &s.sessions {
        sessions.insert_restored(r.id, r.ttl_ms)?;
    }
    let mut tree = Tree::default();
    let mut locks = Locks::default();
    if !s.files.iter().any(|f| f.path == path::ROOT) {
        return Err("no / in the snapshot".to_owned());
    }
    for f in s.files {
        path::validate(&f.path)?;
        for holder in f.lock_holders {
            locks.insert_restored(&f.path, holder)?;
            let session = sessions.live_mut(holder.session).map_err(|_| {
                format!("{:?} locked by unknown session {}", f.path, holder.session)
            })?;
            session.locks.insert(f.path.clone());
        }
        if let Some(owner) = f.ephemeral_session {
            let session = sessions
                .live_mut(owner)
                .map_err(|_| format!("{:?} owned by unknown session {owner}", f.path))?;
            session.ephemerals.insert(f.path.clone());
        }
        let node = Node {
            contents: f.contents,
            generation: f.generation,
            ephemeral_session: f.ephemeral_session,
            children: Default::default(),
        };
        tree.insert_restored(f.path, node)?;
    }
    tree.relink()?;
    let mut dedup = Dedup::default();
    for write in s.dedup {
        dedup.insert_restored(write)?;
    }
    Ok(LockState {
        limits: s.limits,
        tree,
        sessions,
        locks,
        history: History::restored(s.events, s.compacted_through),
        dedup,
        last_applied: s.last_applied,
    })
}

/// `Vec<u8>` as a lowercase hex string.
mod hex {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    const DIGITS: &[u8; 16] = b"0123456789abcdef";

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            out.push(char::from(DIGITS[usize::from(b >> 4)]));
            out.push(char::from(DIGITS[usize::from(b & 0xf)]));
        }
        s.serialize_str(&out)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let digits = text.as_bytes();
        if digits.len() % 2 != 0 {
            return Err(D::Error::custom("odd-length hex"));
        }
        digits
            .chunks_exact(2)
            .map(|pair| Ok(nibble(pair[0])? << 4 | nibble(pair[1])?))
            .collect::<Result<_, &str>>()
            .map_err(D::Error::custom)
    }

    fn nibble(c: u8) -> Result<u8, &'static str> {
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            _ => Err("not a lowercase hex digit"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{Harness, acquire, create};
    use super::super::{Limits, LockMode, LockState, Op};
    use super::SnapshotError;

    fn busy_state() -> LockState {
        let limits = Limits {
            max_events: 5,
            max_dedup_clients: 2,
            ..Limits::default()
        };
        let mut h = Harness::with_limits(limits);
        h.mk("/a");
        h.run(create("/a/bin", &[0, 1, 0xfe, 0xff, b'"'], None));
        let s = h.open();
        let t = h.open();
        h.run_as(1, 1, create("/a/e", b"eph", Some(s)));
        h.run_as(2, 1, acquire("/a", s, LockMode::Shared));
        h.run_as(3, 1, acquire("/a", t, LockMode::Shared));
        h.run(acquire("/a/e", t, LockMode::Exclusive));
        h.state.apply_empty(h.index + 5);
        h.state
    }

    #[test]
    fn round_trip_keeps_everything() {
        let state = busy_state();
        let restored = LockState::from_snapshot(&state.to_snapshot()).expect("restore");
        assert_eq!(restored, state);
        assert_eq!(restored.to_snapshot(), state.to_snapshot());
        let empty = LockState::default();
        assert_eq!(
            LockState::from_snapshot(&empty.to_snapshot()).expect("restore"),
            empty
        );
    }

    #[test]
    fn garbage_is_refused() {
        for bytes in [&b""[..], b"{}", b"null", b"\xff\xfe", b"[1,2,3]"] {
            assert!(
                matches!(
                    LockState::from_snapshot(bytes),
                    Err(SnapshotError::Decode(_))
                ),
                "{bytes:?}"
            );
        }
        let good = String::from_utf8(busy_state().to_snapshot()).expect("utf8");
        let other_format = good.replace("tabula-lockstate/1", "tabula-lockstate/9");
        assert!(matches!(
            LockState::from_snapshot(other_format.as_bytes()),
            Err(SnapshotError::Decode(_))
        ));
        let bad_hex = good.replace("\"0001feff22\"", "\"0g\"");
        assert_ne!(bad_hex, good);
        assert!(matches!(
            LockState::from_snapshot(bad_hex.as_bytes()),
            Err(SnapshotError::Decode(_))
        ));
    }

    #[test]
    fn inconsistent_snapshots_are_refused() {
        let good = String::from_utf8(busy_state().to_snapshot()).expect("utf8");
        let cases = [
            // A lock held by a session the snapshot does not have.
            good.replacen("\"session\":4", "\"session\":40", 1),
            // A file whose parent is missing.
            good.replace("\"path\":\"/a/bin\"", "\"path\":\"/zz/bin\""),
            // An invalid path.
            good.replace("\"path\":\"/a/bin\"", "\"path\":\"a/bin\""),
            // A generation from the future.
            good.replace("\"last_applied\":13", "\"last_applied\":3"),
        ];
        for (i, bad) in cases.iter().enumerate() {
            assert_ne!(bad, &good, "case {i} did not change anything");
            assert!(
                matches!(
                    LockState::from_snapshot(bad.as_bytes()),
                    Err(SnapshotError::Inconsistent(_))
                ),
                "case {i}"
            );
        }
    }

    #[test]
    fn a_restored_state_goes_on_like_the_original() {
        let mut original = busy_state();
        let mut restored = LockState::from_snapshot(&original.to_snapshot()).expect("restore");
        let next = original.last_applied_index() + 1;
        for (i, op) in [
            Op::CloseSession { session: 3 },
            Op::OpenSession { ttl_ms: 9 },
        ]
        .iter()
        .enumerate()
        {
            let req = super::super::Request {
                client: None,
                op: op.clone(),
            };
            let index = next + i as u64;
            assert_eq!(original.apply(index, &req), restored.apply(index, &req));
        }
        assert_eq!(original, restored);
    }
}
