//! `LockClient`: the cell's files, sequencers, status and membership, and the door to sessions
//! and watches. Every call goes through the retry loop of `connection`.

use std::sync::Arc;
use std::time::Duration;

use tabula_common::Error;
use tabula_proto::tabula::lock::v1 as pb;
use tokio::time::Instant;

use super::connection::{Connection, Plan, Route, request};
use super::options::ClientOptions;
use super::session::Session;
use super::types::{CellStatus, FileInfo, Listing};
use super::watch::WatchStream;
use crate::api::sequencer_to_proto;
use crate::state::Sequencer;

/// A client of one lock-service cell. Cheap to clone; clones share channels, the leader cache
/// and the write numbering. Calls retry across nodes for up to `op_deadline`; writes are
/// deduplicated by the cell, so a retried write is applied once.
#[derive(Debug, Clone)]
pub struct LockClient {
    conn: Arc<Connection>,
}

impl LockClient {
    /// A client of the cell whose nodes are at `addrs` (`host:port`). Connects lazily: nothing
    /// is dialled before the first call. `InvalidArgument` for an empty list or an address that
    /// does not make a URI.
    pub fn new(addrs: &[String], options: ClientOptions) -> Result<LockClient, Error> {
        Ok(LockClient {
            conn: Arc::new(Connection::new(addrs, options)?),
        })
    }

    pub(super) fn connection(&self) -> &Arc<Connection> {
        &self.conn
    }

    fn options(&self) -> &ClientOptions {
        &self.conn.options
    }

    fn plan(&self, what: String) -> Plan {
        Plan::new(what, self.options(), Route::Leader)
    }

    /// Creates a persistent file (its parent must exist); answers its generation.
    pub async fn create(&self, path: &str, contents: &[u8]) -> Result<u64, Error> {
        self.create_file(path, contents, 0).await
    }

    /// Creates a file, ephemeral if `session` is not zero.
    pub(super) async fn create_file(
        &self,
        path: &str,
        contents: &[u8],
        session: u64,
    ) -> Result<u64, Error> {
        let answer = self
            .conn
            .write(self.plan(format!("create {path}")), |mut rpc, t, id| {
                let req = pb::CreateRequest {
                    write_id: Some(id),
                    path: path.to_owned(),
                    contents: contents.to_vec(),
                    ephemeral_session_id: session,
                };
                async move { rpc.create(request(req, t)).await }
            })
            .await?;
        Ok(answer.value.generation)
    }

    /// A file's contents, generation, lock holders and the revision the read saw
    /// (linearizable).
    pub async fn get(&self, path: &str) -> Result<FileInfo, Error> {
        let answer = self
            .conn
            .call(self.plan(format!("get {path}")), |mut rpc, t| {
                let req = pb::GetRequest {
                    path: path.to_owned(),
                };
                async move { rpc.get(request(req, t)).await }
            })
            .await?;
        FileInfo::from_proto(answer.value)
    }

    /// Replaces a file's contents, only if its generation is `if_generation` when given
    /// (`Aborted` otherwise); answers the new generation.
    pub async fn set(
        &self,
        path: &str,
        contents: &[u8],
        if_generation: Option<u64>,
    ) -> Result<u64, Error> {
        let answer = self
            .conn
            .write(self.plan(format!("set {path}")), |mut rpc, t, id| {
                let req = pb::SetRequest {
                    write_id: Some(id),
                    path: path.to_owned(),
                    contents: contents.to_vec(),
                    if_generation,
                };
                async move { rpc.set(request(req, t)).await }
            })
            .await?;
        Ok(answer.value.generation)
    }

    /// Deletes a file without children, only if its generation is `if_generation` when given;
    /// answers the log index of the deletion.
    pub async fn delete(&self, path: &str, if_generation: Option<u64>) -> Result<u64, Error> {
        let answer = self
            .conn
            .write(self.plan(format!("delete {path}")), |mut rpc, t, id| {
                let req = pb::DeleteRequest {
                    write_id: Some(id),
                    path: path.to_owned(),
                    if_generation,
                };
                async move { rpc.delete(request(req, t)).await }
            })
            .await?;
        Ok(answer.value.generation)
    }

    /// A file's children's names, sorted (linearizable).
    pub async fn list(&self, path: &str) -> Result<Listing, Error> {
        let answer = self
            .conn
            .call(self.plan(format!("list {path}")), |mut rpc, t| {
                let req = pb::ListRequest {
                    path: path.to_owned(),
                };
                async move { rpc.list(request(req, t)).await }
            })
            .await?;
        Ok(Listing::from_proto(answer.value))
    }

    /// Whether `sequencer` is still current: its holder still holds the lock it proves
    /// (linearizable).
    pub async fn check_sequencer(&self, sequencer: &Sequencer) -> Result<bool, Error> {
        let what = format!(
            "check sequencer {}@{}",
            sequencer.path, sequencer.generation
        );
        let answer = self
            .conn
            .call(self.plan(what), |mut rpc, t| {
                let req = pb::CheckSequencerRequest {
                    sequencer: Some(sequencer_to_proto(sequencer)),
                };
                async move { rpc.check_sequencer(request(req, t)).await }
            })
            .await?;
        Ok(answer.value.current)
    }

    /// Follows the events of files whose path starts with `prefix` (a plain string prefix),
    /// from `from_revision` on; 0 means from now on (the revision of a linearizable read of
    /// `/` made here, plus one). The stream is opened before this returns: an error opening it
    /// (a malformed prefix, `Compacted` history) is this call's error. See `WatchStream` for
    /// how it survives broken streams.
    pub async fn watch(&self, prefix: &str, from_revision: u64) -> Result<WatchStream, Error> {
        let from = if from_revision == 0 {
            self.list("/").await?.revision + 1
        } else {
            from_revision
        };
        WatchStream::open(Arc::clone(&self.conn), prefix.to_owned(), from).await
    }

    /// The cell as its leader sees it: members with how far each has got, and each member's
    /// own applied index (the answering node asks every member, each within a short timeout;
    /// one that does not answer is `MemberApplied::Unreachable`). If the leader cannot be
    /// reached, the answer of the node that named it; with no leader known, any node's answer.
    pub async fn status(&self) -> Result<CellStatus, Error> {
        // Any node answers: the answer, not its success, says who leads. It is asked for its
        // own view only; the one whose answer counts is asked for its members' too.
        let any = Route::Any { avoid: None };
        let first = self
            .status_at(any, self.plan("status".into()), false)
            .await?;
        let mut targets = Vec::new();
        if let Some((leader_id, leader_addr)) = &first.leader
            && let Some(leader) = self.conn.index_of(leader_addr)
        {
            targets.push((*leader_id, leader_addr.clone(), leader));
        }
        if let Some(me) = first.members.iter().find(|m| m.id == first.node_id)
            && !targets.iter().any(|(id, _, _)| *id == me.id)
            && let Some(node) = self.conn.index_of(&me.addr)
        {
            targets.push((me.id, me.addr.clone(), node));
        }
        for (id, addr, node) in targets {
            let plan = Plan {
                deadline: Instant::now() + self.options().rpc_timeout,
                ..Plan::new(
                    format!("status of node {id} at {addr}"),
                    self.options(),
                    Route::Node(node),
                )
            };
            if let Ok(status) = self.status_at(Route::Node(node), plan, true).await
                && status.node_id == id
            {
                return Ok(status);
            }
        }
        Ok(first)
    }

    async fn status_at(
        &self,
        route: Route,
        plan: Plan,
        ask_members: bool,
    ) -> Result<CellStatus, Error> {
        let plan = Plan { route, ..plan };
        let answer = self
            .conn
            .call(plan, |mut rpc, t| async move {
                rpc.status(request(pb::StatusRequest { ask_members }, t))
                    .await
            })
            .await?;
        Ok(CellStatus::from_proto(answer.value))
    }

    /// Adds node `id` at `addr` (`host:port`): a learner first, a voter once it has caught up.
    /// One attempt may take the whole `op_deadline` (catching up can be slow).
    pub async fn add_node(&self, id: u64, addr: &str) -> Result<CellStatus, Error> {
        let plan = self.membership_plan(format!("add node {id} at {addr}"));
        let answer = self
            .conn
            .call(plan, |mut rpc, t| {
                let req = pb::AddNodeRequest {
                    id,
                    addr: addr.to_owned(),
                };
                async move { rpc.add_node(request(req, t)).await }
            })
            .await?;
        Ok(CellStatus::from_proto(answer.value))
    }

    /// Removes node `id` from the voters and learners.
    pub async fn remove_node(&self, id: u64) -> Result<CellStatus, Error> {
        let plan = self.membership_plan(format!("remove node {id}"));
        let answer = self
            .conn
            .call(plan, |mut rpc, t| async move {
                rpc.remove_node(request(pb::RemoveNodeRequest { id }, t))
                    .await
            })
            .await?;
        Ok(CellStatus::from_proto(answer.value))
    }

    fn membership_plan(&self, what: String) -> Plan {
        let options = self.options();
        Plan {
            attempt_timeout: options.op_deadline.max(options.rpc_timeout),
            ..Plan::new(what, options, Route::Leader)
        }
    }

    /// Opens a session with the TTL of the options and starts keeping it alive.
    pub async fn open_session(&self) -> Result<Session, Error> {
        let ttl_ms = duration_ms(self.options().session_ttl);
        let answer = self
            .conn
            .write(self.plan("open session".into()), |mut rpc, t, id| {
                let req = pb::OpenSessionRequest {
                    write_id: Some(id),
                    ttl_ms,
                };
                async move { rpc.open_session(request(req, t)).await }
            })
            .await?;
        // A retry is answered from the first attempt's application: count from its send.
        let ttl = Duration::from_millis(answer.value.ttl_ms);
        Ok(Session::start(
            self.clone(),
            answer.value.session_id,
            answer.first_sent_at,
            ttl,
        ))
    }
}

/// `d` in whole milliseconds, saturating.
pub(super) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
