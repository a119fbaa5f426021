//! The `(client_id, seq)` table that makes retried writes idempotent.
//!
//! Per client, the last applied `seq` and its response. A request whose `seq` is not above the
//! client's last one is not applied again: the same `seq` gets the kept response, an older one
//! `StaleRequest` (a client must not have two writes in flight under one id). The table keeps at
//! most `Limits::max_dedup_clients` clients, dropping the one whose last write is oldest in the
//! log — deterministic, since it depends only on log indexes. A client dropped that way and then
//! retrying a write would have it applied twice; the bound is sized so that only clients silent
//! for a very long time are dropped.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::command::{ClientRef, FailReason, Response};

/// A client's last applied write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct LastWrite {
    pub(super) client_id: u64,
    pub(super) seq: u64,
    /// The log index it was applied at.
    pub(super) index: u64,
    pub(super) response: Response,
}

/// Last writes by client, with an index on log position for eviction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Dedup {
    by_client: BTreeMap<u64, LastWrite>,
    /// Log index of each client's last write -> client id.
    by_index: BTreeMap<u64, u64>,
}

impl Dedup {
    /// The answer to a request already applied, or `None` if `client.seq` is new.
    pub(super) fn replay(&self, client: ClientRef) -> Option<Response> {
        let last = self.by_client.get(&client.client_id)?;
        if client.seq == last.seq {
            Some(last.response.clone())
        } else if client.seq < last.seq {
            Some(Response::Failed(FailReason::StaleRequest {
                last_seq: last.seq,
            }))
        } else {
            None
        }
    }

    /// Remembers a new write's response.
    pub(super) fn record(
        &mut self,
        client: ClientRef,
        index: u64,
        response: Response,
        max_clients: usize,
    ) {
        let write = LastWrite {
            client_id: client.client_id,
            seq: client.seq,
            index,
            response,
        };
        self.insert(write);
        while self.by_client.len() > max_clients {
            let Some((_, oldest)) = self.by_index.pop_first() else {
                break;
            };
            self.by_client.remove(&oldest);
        }
    }

    fn insert(&mut self, write: LastWrite) {
        if let Some(old) = self.by_client.get(&write.client_id) {
            self.by_index.remove(&old.index);
        }
        self.by_index.insert(write.index, write.client_id);
        self.by_client.insert(write.client_id, write);
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &LastWrite> {
        self.by_client.values()
    }

    /// Inserts a restored write (snapshot restore).
    pub(super) fn insert_restored(&mut self, write: LastWrite) -> Result<(), String> {
        if self.by_client.contains_key(&write.client_id) {
            return Err(format!("client {} appears twice", write.client_id));
        }
        if self.by_index.contains_key(&write.index) {
            return Err(format!("two clients' last writes at index {}", write.index));
        }
        self.insert(write);
        Ok(())
    }

    /// Checks the two maps agree and the bound holds.
    pub(super) fn check(&self, max_clients: usize, last_applied: u64) -> Result<(), String> {
        if self.by_client.len() > max_clients {
            return Err(format!(
                "{} dedup clients, more than {max_clients}",
                self.by_client.len()
            ));
        }
        if self.by_client.len() != self.by_index.len() {
            return Err("dedup maps disagree".to_owned());
        }
        for (index, client_id) in &self.by_index {
            let write = self
                .by_client
                .get(client_id)
                .ok_or("dedup index names a missing client")?;
            if write.index != *index || write.client_id != *client_id || *index > last_applied {
                return Err(format!(
                    "dedup entry for client {client_id} is inconsistent"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{Harness, acquire, create};
    use super::super::{FailReason, Limits, LockMode, Op, Response};

    #[test]
    fn a_retried_write_gets_the_same_answer_and_changes_nothing() {
        let mut h = Harness::new();
        assert_eq!(
            h.run_as(7, 1, create("/a", b"x", None)),
            Response::Done { generation: 1 }
        );
        let before = h.state.clone();
        assert_eq!(
            h.run_as(7, 1, create("/a", b"x", None)),
            Response::Done { generation: 1 }
        );
        assert_eq!(h.state.last_applied_index(), 2);
        assert_eq!(h.state.to_snapshot().len(), before.to_snapshot().len());
        assert_eq!(h.state.events_since(2, ""), Ok(vec![]));
        // A retry of an open session does not open a second one.
        assert_eq!(
            h.run_as(7, 2, Op::OpenSession { ttl_ms: 1 }),
            Response::SessionOpened { session: 3 }
        );
        assert_eq!(
            h.run_as(7, 2, Op::OpenSession { ttl_ms: 1 }),
            Response::SessionOpened { session: 3 }
        );
        assert_eq!(h.state.sessions().count(), 1);
        // Failures are remembered too.
        assert_eq!(
            h.run_as(7, 3, create("/a", b"", None)),
            Response::Failed(FailReason::AlreadyExists)
        );
        h.run(Op::Delete {
            path: "/a".to_owned(),
            if_generation: None,
        });
        assert_eq!(
            h.run_as(7, 3, create("/a", b"", None)),
            Response::Failed(FailReason::AlreadyExists)
        );
        assert_eq!(h.state.get("/a"), None);
        // And acquisitions: the same sequencer, even after release.
        let first = h.run_as(
            7,
            4,
            Op::Create {
                path: "/l".into(),
                contents: vec![],
                ephemeral_session: None,
            },
        );
        assert_eq!(first, Response::Done { generation: 8 });
        let got = h.run_as(7, 5, acquire("/l", 3, LockMode::Exclusive));
        assert_eq!(h.run_as(7, 5, acquire("/l", 3, LockMode::Exclusive)), got);
    }

    #[test]
    fn an_older_seq_is_stale_and_not_applied() {
        let mut h = Harness::new();
        h.run_as(1, 5, create("/a", b"", None));
        assert_eq!(
            h.run_as(1, 4, create("/b", b"", None)),
            Response::Failed(FailReason::StaleRequest { last_seq: 5 })
        );
        assert_eq!(h.state.get("/b"), None);
        // Other clients are independent.
        assert_eq!(
            h.run_as(2, 1, create("/b", b"", None)),
            Response::Done { generation: 3 }
        );
    }

    #[test]
    fn the_table_keeps_the_clients_with_the_newest_writes() {
        let limits = Limits {
            max_dedup_clients: 2,
            ..Limits::default()
        };
        let mut h = Harness::with_limits(limits);
        h.run_as(1, 1, create("/c1", b"", None)); // 1
        h.run_as(2, 1, create("/c2", b"", None)); // 2
        h.run_as(1, 2, create("/c1b", b"", None)); // 3: client 1 is now newer than client 2
        h.run_as(3, 1, create("/c3", b"", None)); // 4: evicts client 2
        assert_eq!(
            h.run_as(1, 2, create("/c1b", b"", None)),
            Response::Done { generation: 3 }
        );
        assert_eq!(
            h.run_as(3, 1, create("/c3", b"", None)),
            Response::Done { generation: 4 }
        );
        // Client 2 was forgotten: its retry is applied again.
        assert_eq!(
            h.run_as(2, 1, create("/c2", b"", None)),
            Response::Failed(FailReason::AlreadyExists)
        );
    }
}
