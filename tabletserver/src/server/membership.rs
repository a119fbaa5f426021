//! The tablet server's membership in the cluster, held in the lock service (DESIGN.md sections
//! 3 and 6): a session, the ephemeral file `/tabula/servers/<server-id>` whose contents are the
//! server's address, and the exclusive lock on that file.
//!
//! - Serving needs the session `Safe` at the moment of the check: `safety_check` is the
//!   gate's closure, and it reads the session's local lease from the clock. A session whose
//!   local lease ran out (jeopardy) stops all serving at once; the local lease always ends
//!   before the cell's, so the server stops before the master may think it dead.
//! - Membership is lost for good when the session expires, or when the file is deleted or its
//!   lock leaves this session: the master does that to a server it declared dead, and such a
//!   server can never come back as itself. `lost` resolves then, with the reason.
//!
//! The master finds live servers by listing `/tabula/servers/` and tells a dead one by a free
//! lock on its file.

use std::sync::Arc;
use std::time::Duration;

use tabula_common::{Code, Error, ServerId};
use tabula_lockservice::client::{ClientOptions, LockClient, Session, SessionState};
use tabula_lockservice::state::{EventKind, LockMode, Sequencer};
use tracing::{info, warn};

use super::gate::SafetyCheck;

/// The lock-service directory of everything Tabula keeps there.
pub const ROOT_DIR: &str = "/tabula";
/// The directory of tablet-server files.
pub const SERVERS_DIR: &str = "/tabula/servers";

/// Pause between attempts to re-watch the server file after the watch broke.
const REWATCH_PAUSE: Duration = Duration::from_millis(500);

/// Why the server could not join.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// The lock service refused or could not be reached.
    #[error("lock service: {what}: {source}")]
    Lock {
        /// What was being done.
        what: String,
        /// The lock service's answer.
        source: Error,
    },
    /// Another live server uses this server id (its file exists or its lock is held).
    #[error("server id {id} is in use by a live tablet server ({path} {why})")]
    ServerIdTaken {
        /// The id.
        id: String,
        /// Its file.
        path: String,
        /// What was found.
        why: &'static str,
    },
}

/// The server's path in the lock service.
pub fn server_path(id: &ServerId) -> String {
    format!("{SERVERS_DIR}/{}", id.0)
}

/// A joined server: see the module documentation.
pub struct Membership {
    client: LockClient,
    session: Arc<Session>,
    id: ServerId,
    path: String,
    sequencer: Sequencer,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("id", &self.id)
            .field("session", &self.session.id())
            .field("sequencer", &self.sequencer)
            .finish_non_exhaustive()
    }
}

impl Membership {
    /// Opens a session on the cell at `lock` with `session_ttl`, creates the server file with
    /// `address` as contents and takes its exclusive lock. Fails if the id is in use.
    pub async fn join(
        lock: &[String],
        id: &ServerId,
        address: &str,
        session_ttl: Duration,
    ) -> Result<Membership, MembershipError> {
        let client = LockClient::new(
            lock,
            ClientOptions {
                session_ttl,
                ..ClientOptions::default()
            },
        )
        .map_err(lock_error("connect to the lock service"))?;
        for dir in [ROOT_DIR, SERVERS_DIR] {
            match client.create(dir, b"").await {
                Ok(_) => {}
                Err(e) if e.code == Code::AlreadyExists => {}
                Err(e) => return Err(lock_error(format!("create {dir}"))(e)),
            }
        }
        let session = client
            .open_session()
            .await
            .map_err(lock_error("open a session"))?;
        let path = server_path(id);
        match Membership::claim(&session, id, &path, address).await {
            Ok(sequencer) => {
                info!(
                    server_id = %id,
                    session = session.id(),
                    generation = sequencer.generation,
                    %path,
                    "joined the cluster"
                );
                Ok(Membership {
                    client,
                    session: Arc::new(session),
                    id: id.clone(),
                    path,
                    sequencer,
                })
            }
            Err(e) => {
                // Ends the session and with it whatever part of the claim succeeded.
                if let Err(close) = session.close().await {
                    warn!(error = %close, "closing the session of a failed join");
                }
                Err(e)
            }
        }
    }

    async fn claim(
        session: &Session,
        id: &ServerId,
        path: &str,
        address: &str,
    ) -> Result<Sequencer, MembershipError> {
        let taken = |why| MembershipError::ServerIdTaken {
            id: id.0.clone(),
            path: path.to_owned(),
            why,
        };
        match session.create_ephemeral(path, address.as_bytes()).await {
            Ok(_) => {}
            Err(e) if e.code == Code::AlreadyExists => return Err(taken("exists")),
            Err(e) => return Err(lock_error(format!("create {path}"))(e)),
        }
        session
            .acquire(path, LockMode::Exclusive, None)
            .await
            .map_err(lock_error(format!("lock {path}")))?
            .ok_or_else(|| taken("is locked"))
    }

    /// The gate's check: the session is `Safe` now (read from the clock at call time); never
    /// again once the membership was left.
    pub fn safety_check(&self) -> SafetyCheck {
        let session = Arc::downgrade(&self.session);
        Arc::new(move || {
            session
                .upgrade()
                .is_some_and(|s| s.state() == SessionState::Safe)
        })
    }

    /// The session's state now.
    pub fn session_state(&self) -> SessionState {
        self.session.state()
    }

    /// The lock-service session id.
    pub fn session_id(&self) -> u64 {
        self.session.id()
    }

    /// The server file's path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The sequencer of the server file's lock.
    pub fn sequencer(&self) -> &Sequencer {
        &self.sequencer
    }

    /// Resolves when membership is lost for good (session expired, file deleted or its lock
    /// lost), with the reason. Cancel-safe.
    pub async fn lost(&self) -> String {
        let mut states = self.session.subscribe();
        let expired = async {
            loop {
                if *states.borrow_and_update() == SessionState::Expired
                    || self.session.state() == SessionState::Expired
                {
                    return "the lock-service session expired".to_owned();
                }
                if states.changed().await.is_err() {
                    return "the lock-service session ended".to_owned();
                }
            }
        };
        tokio::select! {
            why = expired => why,
            why = self.file_lost() => why,
        }
    }

    /// Follows the server file until it is deleted or its lock leaves this session.
    async fn file_lost(&self) -> String {
        let me = self.session.id();
        let mut from = self.sequencer.generation + 1;
        loop {
            match self.client.watch(&self.path, from).await {
                Ok(mut events) => {
                    while let Some(event) = events.next().await {
                        let Ok(event) = event else { break };
                        from = event.revision + 1;
                        if event.path != self.path {
                            continue;
                        }
                        match event.kind {
                            EventKind::Deleted => {
                                return format!("{} was deleted", self.path);
                            }
                            EventKind::Unlocked { session, .. } if session == me => {
                                return format!("the lock on {} was released", self.path);
                            }
                            _ => {}
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, path = %self.path, "watch of the server file failed");
                }
            }
            // The watch broke (history compacted, cell unreachable): read the file, then
            // follow it again from what the read saw.
            match self.client.get(&self.path).await {
                Ok(info) => {
                    let mine = info
                        .lock_holders
                        .iter()
                        .any(|h| h.session == me && h.mode == LockMode::Exclusive);
                    if info.ephemeral_session != Some(me) || !mine {
                        return format!("{} no longer belongs to this server", self.path);
                    }
                    from = info.revision + 1;
                }
                Err(e) if e.code == Code::NotFound => {
                    return format!("{} was deleted", self.path);
                }
                Err(e) => {
                    tracing::debug!(error = %e, path = %self.path, "reading the server file failed");
                    tokio::time::sleep(REWATCH_PAUSE).await;
                }
            }
        }
    }

    /// Leaves the cluster: closes the session, which deletes the file and frees the lock.
    pub async fn leave(self) -> Result<(), Error> {
        let path = self.path.clone();
        match Arc::try_unwrap(self.session) {
            Ok(session) => session.close().await?,
            Err(_) => {
                // Someone still holds the safety check; ending the file ends membership.
                self.client.delete(&path, None).await?;
            }
        }
        info!(%path, "left the cluster");
        Ok(())
    }
}

fn lock_error(what: impl Into<String>) -> impl FnOnce(Error) -> MembershipError {
    let what = what.into();
    move |source| MembershipError::Lock { what, source }
}
