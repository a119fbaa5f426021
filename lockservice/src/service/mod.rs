//! The public `LockService` over gRPC (`proto/tabula/lock.proto`), served by every node on the
//! address of its Raft service.
//!
//! - Writes become log entries (`consensus::propose`); their write id makes retries exactly-once.
//! - Reads (`Get`, `List`, `CheckSequencer`) are linearizable: `ensure_linearizable`, then the
//!   applied state.
//! - KeepAlives are answered from the leader's memory (`lease::LeaseKeeper`), never logged.
//! - A node that is not the leader answers `NotLeader` with the leader's address; the client
//!   retries there. Watches are served by any node from its applied history (`watch`).
//!
//! Every spawned watch task is tracked (`LockApi::tasks`) and stops with the node.
//!
//! Reading order: `consensus`, `raft_errors`, then one file per call family: `acquire`,
//! `watch`, `status`, `membership`.

mod acquire;
mod consensus;
mod membership;
mod raft_errors;
mod status;
mod watch;

use std::time::Duration;

use openraft::Raft;
use tabula_common::{Code, Error};
use tabula_proto::tabula::lock::v1 as pb;
use tabula_proto::tabula::lock::v1::lock_service_server::{LockService, LockServiceServer};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

use self::acquire::AcquireArgs;
use self::consensus::{generation, linearizable, propose_ok, unexpected};
use crate::api::sequencer_to_proto;
use crate::api::{client_ref, holder_to_proto, mode_from_proto, sequencer_from_proto};
use crate::lease::{KeepAliveError, LeaseKeeper};
use crate::network::NetworkFactory;
use crate::state::{Op, Request, Response, validate_path};
use crate::store::StateHandle;
use crate::types::TypeConfig;

/// Timeouts of the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceOptions {
    /// How long a write may take to commit before the caller hears `DeadlineExceeded`.
    pub write_timeout: Duration,
    /// How long a linearizable read may wait for the leader to confirm its quorum.
    pub read_timeout: Duration,
    /// Longest wait an `Acquire` may ask for.
    pub max_acquire_wait: Duration,
    /// How long a membership change may take (a new learner catching up included).
    pub membership_timeout: Duration,
    /// How long a `Status` with `ask_members` waits for each member's answer.
    pub member_status_timeout: Duration,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            write_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(5),
            max_acquire_wait: Duration::from_secs(600),
            membership_timeout: Duration::from_secs(60),
            member_status_timeout: Duration::from_millis(500),
        }
    }
}

/// The `LockService` implementation of one node.
#[derive(Clone)]
pub struct LockApi {
    raft: Raft<TypeConfig>,
    state: StateHandle,
    leases: LeaseKeeper,
    /// Channels to the other members (shared with Raft), for `Status` with `ask_members`.
    peers: NetworkFactory,
    options: ServiceOptions,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl std::fmt::Debug for LockApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockApi")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl LockApi {
    /// The service of a node; `peers` reaches the other members; `stop` ends its watch streams.
    pub fn new(
        raft: Raft<TypeConfig>,
        state: StateHandle,
        leases: LeaseKeeper,
        peers: NetworkFactory,
        options: ServiceOptions,
        stop: CancellationToken,
    ) -> LockApi {
        LockApi {
            raft,
            state,
            leases,
            peers,
            options,
            stop,
            tasks: TaskTracker::new(),
        }
    }

    /// The watch tasks; the node closes and waits for it after cancelling `stop`.
    pub fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    /// The tonic service, with message size limits.
    pub fn into_server(self, max_message_bytes: usize) -> LockServiceServer<LockApi> {
        LockServiceServer::new(self)
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes)
    }

    async fn write(&self, req: Request) -> Result<Response, Status> {
        Ok(propose_ok(&self.raft, req, self.options.write_timeout).await?)
    }

    async fn write_generation(
        &self,
        req: Request,
    ) -> Result<GrpcResponse<pb::WriteResponse>, Status> {
        let generation = generation(self.write(req).await?)?;
        Ok(GrpcResponse::new(pb::WriteResponse { generation }))
    }

    async fn read_linearizable(&self) -> Result<(), Status> {
        Ok(linearizable(&self.raft, self.options.read_timeout).await?)
    }

    /// This node's status with every member's own applied index.
    async fn status_with_members(&self) -> pb::StatusResponse {
        status::with_members(&self.raft, &self.peers, self.options.member_status_timeout).await
    }
}

fn checked_path(path: &str) -> Result<(), Status> {
    validate_path(path).map_err(|e| Error::invalid_argument(e).into())
}

fn not_found(path: &str) -> Status {
    Error::new(Code::NotFound, format!("no file {path}")).into()
}

#[tonic::async_trait]
impl LockService for LockApi {
    async fn open_session(
        &self,
        request: GrpcRequest<pb::OpenSessionRequest>,
    ) -> Result<GrpcResponse<pb::OpenSessionResponse>, Status> {
        let r = request.into_inner();
        let req = Request {
            client: client_ref(r.write_id.as_ref()),
            op: Op::OpenSession { ttl_ms: r.ttl_ms },
        };
        match self.write(req).await? {
            Response::SessionOpened { session } => Ok(GrpcResponse::new(pb::OpenSessionResponse {
                session_id: session,
                ttl_ms: r.ttl_ms,
            })),
            other => Err(unexpected(&other).into()),
        }
    }

    async fn keep_alive(
        &self,
        request: GrpcRequest<pb::KeepAliveRequest>,
    ) -> Result<GrpcResponse<pb::KeepAliveResponse>, Status> {
        let session = request.into_inner().session_id;
        match self.leases.keep_alive(session) {
            Ok(ttl) => Ok(GrpcResponse::new(pb::KeepAliveResponse {
                ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            })),
            Err(KeepAliveError::NotLeader) => Err(raft_errors::not_leader_now(&self.raft).into()),
            Err(e @ (KeepAliveError::NotReady | KeepAliveError::QuorumLost)) => {
                Err(Error::new(Code::Unavailable, format!("cannot extend leases now: {e}")).into())
            }
            Err(KeepAliveError::SessionGone) => Err(Error::new(
                Code::SessionExpired,
                format!("session {session} is closed or expired"),
            )
            .into()),
        }
    }

    async fn close_session(
        &self,
        request: GrpcRequest<pb::CloseSessionRequest>,
    ) -> Result<GrpcResponse<pb::WriteResponse>, Status> {
        let r = request.into_inner();
        self.write_generation(Request {
            client: client_ref(r.write_id.as_ref()),
            op: Op::CloseSession {
                session: r.session_id,
            },
        })
        .await
    }

    async fn create(
        &self,
        request: GrpcRequest<pb::CreateRequest>,
    ) -> Result<GrpcResponse<pb::WriteResponse>, Status> {
        let r = request.into_inner();
        self.write_generation(Request {
            client: client_ref(r.write_id.as_ref()),
            op: Op::Create {
                path: r.path,
                contents: r.contents,
                ephemeral_session: (r.ephemeral_session_id != 0).then_some(r.ephemeral_session_id),
            },
        })
        .await
    }

    async fn get(
        &self,
        request: GrpcRequest<pb::GetRequest>,
    ) -> Result<GrpcResponse<pb::GetResponse>, Status> {
        let path = request.into_inner().path;
        checked_path(&path)?;
        self.read_linearizable().await?;
        let (file, revision) = self.state.read(|s| (s.get(&path), s.last_applied_index()));
        let file = file.ok_or_else(|| not_found(&path))?;
        Ok(GrpcResponse::new(pb::GetResponse {
            contents: file.contents,
            generation: file.generation,
            ephemeral_session_id: file.ephemeral_session.unwrap_or(0),
            lock_holders: file.lock_holders.iter().map(holder_to_proto).collect(),
            revision,
        }))
    }

    async fn set(
        &self,
        request: GrpcRequest<pb::SetRequest>,
    ) -> Result<GrpcResponse<pb::WriteResponse>, Status> {
        let r = request.into_inner();
        self.write_generation(Request {
            client: client_ref(r.write_id.as_ref()),
            op: Op::SetContents {
                path: r.path,
                contents: r.contents,
                if_generation: r.if_generation,
            },
        })
        .await
    }

    async fn delete(
        &self,
        request: GrpcRequest<pb::DeleteRequest>,
    ) -> Result<GrpcResponse<pb::WriteResponse>, Status> {
        let r = request.into_inner();
        self.write_generation(Request {
            client: client_ref(r.write_id.as_ref()),
            op: Op::Delete {
                path: r.path,
                if_generation: r.if_generation,
            },
        })
        .await
    }

    async fn list(
        &self,
        request: GrpcRequest<pb::ListRequest>,
    ) -> Result<GrpcResponse<pb::ListResponse>, Status> {
        let path = request.into_inner().path;
        checked_path(&path)?;
        self.read_linearizable().await?;
        let (children, revision) = self.state.read(|s| (s.list(&path), s.last_applied_index()));
        let children = children.ok_or_else(|| not_found(&path))?;
        Ok(GrpcResponse::new(pb::ListResponse { children, revision }))
    }

    async fn acquire(
        &self,
        request: GrpcRequest<pb::AcquireRequest>,
    ) -> Result<GrpcResponse<pb::AcquireResponse>, Status> {
        let r = request.into_inner();
        let wait = Duration::from_millis(r.wait_ms);
        if wait > self.options.max_acquire_wait {
            return Err(Error::invalid_argument(format!(
                "wait of {wait:?} is longer than the {:?} limit",
                self.options.max_acquire_wait
            ))
            .into());
        }
        let args = AcquireArgs {
            path: r.path,
            session: r.session_id,
            mode: mode_from_proto(r.mode)?,
            wait,
        };
        let held =
            acquire::acquire(&self.raft, &self.state, args, self.options.write_timeout).await?;
        Ok(GrpcResponse::new(pb::AcquireResponse {
            sequencer: held.as_ref().map(sequencer_to_proto),
        }))
    }

    async fn release(
        &self,
        request: GrpcRequest<pb::ReleaseRequest>,
    ) -> Result<GrpcResponse<pb::WriteResponse>, Status> {
        let r = request.into_inner();
        self.write_generation(Request {
            client: client_ref(r.write_id.as_ref()),
            op: Op::Release {
                path: r.path,
                session: r.session_id,
            },
        })
        .await
    }

    async fn check_sequencer(
        &self,
        request: GrpcRequest<pb::CheckSequencerRequest>,
    ) -> Result<GrpcResponse<pb::CheckSequencerResponse>, Status> {
        let sequencer = request
            .into_inner()
            .sequencer
            .ok_or_else(|| Error::invalid_argument("no sequencer"))?;
        let sequencer = sequencer_from_proto(sequencer)?;
        checked_path(&sequencer.path)?;
        self.read_linearizable().await?;
        let current = self.state.read(|s| s.check_sequencer(&sequencer));
        Ok(GrpcResponse::new(pb::CheckSequencerResponse { current }))
    }

    type WatchStream = watch::WatchStream;

    async fn watch(
        &self,
        request: GrpcRequest<pb::WatchRequest>,
    ) -> Result<GrpcResponse<Self::WatchStream>, Status> {
        let r = request.into_inner();
        Ok(GrpcResponse::new(watch::start(
            self.state.clone(),
            r.prefix,
            r.from_revision,
            self.stop.clone(),
            &self.tasks,
        )?))
    }

    async fn status(
        &self,
        request: GrpcRequest<pb::StatusRequest>,
    ) -> Result<GrpcResponse<pb::StatusResponse>, Status> {
        let status = if request.into_inner().ask_members {
            self.status_with_members().await
        } else {
            status::local(&self.raft)
        };
        Ok(GrpcResponse::new(status))
    }

    async fn add_node(
        &self,
        request: GrpcRequest<pb::AddNodeRequest>,
    ) -> Result<GrpcResponse<pb::StatusResponse>, Status> {
        let r = request.into_inner();
        membership::add_node(&self.raft, r.id, &r.addr, self.options.membership_timeout).await?;
        Ok(GrpcResponse::new(self.status_with_members().await))
    }

    async fn remove_node(
        &self,
        request: GrpcRequest<pb::RemoveNodeRequest>,
    ) -> Result<GrpcResponse<pb::StatusResponse>, Status> {
        let r = request.into_inner();
        membership::remove_node(&self.raft, r.id, self.options.membership_timeout).await?;
        Ok(GrpcResponse::new(self.status_with_members().await))
    }
}
