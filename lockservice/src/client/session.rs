//! A session: its local lease (`local_lease`), the task that keeps it alive, and the calls made
//! on its behalf (ephemeral files, locks).
//!
//! The keepalive task sends a KeepAlive `ttl/3` after the last successful one was sent. When
//! one fails it retries across nodes with short pauses (at most 200 ms) until a KeepAlive
//! succeeds or the grace after the local lease runs out. Meanwhile it publishes the state on
//! a watch channel as the clock moves it (safe -> jeopardy at the lease end, -> expired at the
//! end of the grace). It stops once the session is expired: told so by the cell (a KeepAlive
//! answered `SessionExpired` or `NotFound`), or given up at the end of the grace, in which
//! case it also tries to close the session once.
//!
//! `Session::state` reads the clock itself, so a process that was stopped (SIGSTOP, a long GC
//! pause) sees the truth before it acts, even before the task has run again.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tabula_common::{Code, Error};
use tabula_proto::tabula::lock::v1 as pb;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::connection::{Connection, Plan, Route, jittered, request};
use super::local_lease::LocalLease;
use super::lock_client::{LockClient, duration_ms};
use super::types::{SessionState, bad_answer};
use crate::api::{mode_to_proto, sequencer_from_proto};
use crate::state::{LockMode, Sequencer};

/// Longest pause between KeepAlive attempts once one failed.
const KEEPALIVE_BACKOFF_MAX: Duration = Duration::from_millis(200);

/// An open session: a lease on the cell kept alive in the background, holding locks and
/// ephemeral files. Dropping it stops the KeepAlives (the cell then expires the session after
/// its TTL); `close` ends it at once.
pub struct Session {
    shared: Arc<Shared>,
    client: LockClient,
    keepalive: JoinHandle<()>,
}

/// What the session and its keepalive task share.
struct Shared {
    id: u64,
    lease: Mutex<LocalLease>,
    state: watch::Sender<SessionState>,
}

impl Session {
    /// Starts keeping session `id` alive; its lease of `ttl` counts from `sent_at`.
    pub(super) fn start(client: LockClient, id: u64, sent_at: Instant, ttl: Duration) -> Session {
        let grace = client.connection().options.grace;
        let shared = Arc::new(Shared {
            id,
            lease: Mutex::new(LocalLease::new(sent_at, ttl, grace)),
            state: watch::Sender::new(SessionState::Safe),
        });
        tracing::info!(
            session = id,
            ttl_ms = duration_ms(ttl),
            "lock session opened"
        );
        let keepalive = tokio::spawn(keep_alive(
            Arc::clone(&shared),
            Arc::clone(client.connection()),
            sent_at,
        ));
        Session {
            shared,
            client,
            keepalive,
        }
    }

    /// The session id.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The session's state now, from the clock (not only from what the keepalive task last
    /// saw): act on the session's locks only while `Safe`.
    pub fn state(&self) -> SessionState {
        self.shared.publish()
    }

    /// The state as it changes: `Safe`, `Jeopardy`, `Safe` again, ..., and at last `Expired`.
    pub fn subscribe(&self) -> watch::Receiver<SessionState> {
        self.shared.state.subscribe()
    }

    /// Creates a file that is deleted when this session ends; answers its generation.
    pub async fn create_ephemeral(&self, path: &str, contents: &[u8]) -> Result<u64, Error> {
        self.check_live()?;
        let r = self.client.create_file(path, contents, self.id()).await;
        self.note(r)
    }

    /// Takes `path`'s lock in `mode`. `wait` `None` tries once; `Some(d)` waits up to `d` for
    /// conflicting holders to go. `None` answered: the lock is held by others. Taking a lock the
    /// session already holds in that mode answers its existing sequencer.
    pub async fn acquire(
        &self,
        path: &str,
        mode: LockMode,
        wait: Option<Duration>,
    ) -> Result<Option<Sequencer>, Error> {
        self.check_live()?;
        let wait = wait.unwrap_or_default();
        let options = &self.client.connection().options;
        let start = Instant::now();
        let wait_end = start + wait;
        let plan = Plan {
            what: format!("acquire {path}"),
            deadline: start + options.op_deadline + wait,
            attempt_timeout: options.rpc_timeout + wait,
            backoff_max: super::connection::BACKOFF_MAX,
            route: Route::Leader,
        };
        let session_id = self.id();
        let r = self
            .client
            .connection()
            .call(plan, |mut rpc, t| {
                let req = pb::AcquireRequest {
                    path: path.to_owned(),
                    session_id,
                    mode: mode_to_proto(mode),
                    wait_ms: duration_ms(wait_end.saturating_duration_since(Instant::now())),
                };
                async move { rpc.acquire(request(req, t)).await }
            })
            .await;
        let answer = self.note(r)?;
        answer
            .value
            .sequencer
            .map(sequencer_from_proto)
            .transpose()
            .map_err(|e| bad_answer("Acquire", &e))
    }

    /// Releases this session's lock on `path`.
    pub async fn release(&self, path: &str) -> Result<(), Error> {
        self.check_live()?;
        let session_id = self.id();
        let plan = Plan::new(
            format!("release {path}"),
            &self.client.connection().options,
            Route::Leader,
        );
        let r = self
            .client
            .connection()
            .write(plan, |mut rpc, t, id| {
                let req = pb::ReleaseRequest {
                    write_id: Some(id),
                    path: path.to_owned(),
                    session_id,
                };
                async move { rpc.release(request(req, t)).await }
            })
            .await;
        self.note(r).map(|_| ())
    }

    /// Closes the session: the cell deletes its ephemeral files and releases its locks. A
    /// session the cell already ended counts as closed.
    pub async fn close(self) -> Result<(), Error> {
        let r = close_session(self.client.connection(), self.id()).await;
        self.keepalive.abort();
        self.shared.expire("closed");
        match r {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.code, Code::SessionExpired | Code::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `SessionExpired` if the session is expired by the clock or by the cell's word.
    fn check_live(&self) -> Result<(), Error> {
        if self.state() == SessionState::Expired {
            return Err(Error::new(
                Code::SessionExpired,
                format!("session {} is expired", self.id()),
            ));
        }
        Ok(())
    }

    /// Passes `r` on, noting a `SessionExpired` answer as the session's end.
    fn note<T>(&self, r: Result<T, Error>) -> Result<T, Error> {
        if let Err(e) = &r
            && e.code == Code::SessionExpired
        {
            self.shared.expire("the cell says it is expired");
        }
        r
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.keepalive.abort();
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lease = *self.shared.lease.lock();
        f.debug_struct("Session")
            .field("id", &self.shared.id)
            .field("ttl", &lease.ttl())
            .field("state", &lease.state(Instant::now()))
            .finish()
    }
}

impl Shared {
    /// Computes the state now and publishes it if it changed; answers it.
    fn publish(&self) -> SessionState {
        let now = Instant::now();
        let state = self.lease.lock().state(now);
        self.state.send_if_modified(|current| {
            if *current == state {
                return false;
            }
            match state {
                SessionState::Safe => {
                    tracing::info!(session = self.id, from = %current, "lock session safe again");
                }
                SessionState::Jeopardy => {
                    tracing::warn!(
                        session = self.id,
                        "lock session in jeopardy: local lease ended"
                    );
                }
                SessionState::Expired => {
                    tracing::warn!(session = self.id, from = %current, "lock session expired");
                }
            }
            *current = state;
            true
        });
        state
    }

    fn expire(&self, why: &str) {
        tracing::debug!(session = self.id, why, "lock session ends");
        self.lease.lock().expire();
        self.publish();
    }

    /// When the state next changes by the clock alone.
    fn next_change(&self) -> Option<Instant> {
        self.lease.lock().next_change(Instant::now())
    }

    /// Publishes state changes as the clock makes them until `fut` is done.
    async fn publishing<F: Future>(&self, fut: F) -> F::Output {
        tokio::pin!(fut);
        loop {
            let wake = self.next_change();
            tokio::select! {
                out = &mut fut => return out,
                () = sleep_until(wake) => {
                    self.publish();
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// How a keepalive round ended without a success.
enum Ended {
    /// The cell said the session is gone.
    ByCell,
    /// No KeepAlive succeeded before the grace ran out.
    GaveUp,
}

/// The keepalive task of session `shared.id`, whose last successful request was sent at
/// `last_sent`.
async fn keep_alive(shared: Arc<Shared>, conn: Arc<Connection>, mut last_sent: Instant) {
    loop {
        let ttl = shared.lease.lock().ttl();
        let next = last_sent + ttl / 3;
        shared.publishing(tokio::time::sleep_until(next)).await;
        if shared.publish() == SessionState::Expired {
            close_after_giving_up(&shared, &conn).await;
            return;
        }
        match keep_alive_round(&shared, &conn).await {
            Ok(sent) => last_sent = sent,
            Err(Ended::ByCell) => return,
            Err(Ended::GaveUp) => {
                close_after_giving_up(&shared, &conn).await;
                return;
            }
        }
    }
}

/// Sends KeepAlives until one succeeds (answers when it was sent) or the session ends.
async fn keep_alive_round(shared: &Shared, conn: &Connection) -> Result<Instant, Ended> {
    let id = shared.id;
    let mut backoff = KEEPALIVE_BACKOFF_MAX / 8;
    loop {
        let give_up_at = shared.lease.lock().give_up_at();
        let plan = Plan {
            what: format!("keep session {id} alive"),
            deadline: give_up_at,
            attempt_timeout: conn.options.rpc_timeout,
            backoff_max: KEEPALIVE_BACKOFF_MAX,
            route: Route::Leader,
        };
        let call = conn.call(plan, |mut rpc, t| async move {
            rpc.keep_alive(request(pb::KeepAliveRequest { session_id: id }, t))
                .await
        });
        let err = match shared.publishing(call).await {
            Ok(answer) => {
                let ttl = Duration::from_millis(answer.value.ttl_ms);
                let now = Instant::now();
                let extended = shared.lease.lock().extend(answer.sent_at, ttl, now);
                shared.publish();
                if !extended {
                    return Err(Ended::GaveUp);
                }
                return Ok(answer.sent_at);
            }
            Err(e) => e,
        };
        if matches!(err.code, Code::SessionExpired | Code::NotFound) {
            tracing::warn!(session = id, error = %err, "lock session ended by the cell");
            shared.expire("a KeepAlive was refused");
            return Err(Ended::ByCell);
        }
        if Instant::now() >= give_up_at || shared.publish() == SessionState::Expired {
            tracing::warn!(session = id, error = %err, "lock session given up: no KeepAlive succeeded within the grace period");
            shared.expire("no KeepAlive succeeded in time");
            return Err(Ended::GaveUp);
        }
        tracing::debug!(session = id, error = %err, "keepalive failed; retrying");
        shared
            .publishing(tokio::time::sleep(jittered(backoff)))
            .await;
        backoff = (backoff * 2).min(KEEPALIVE_BACKOFF_MAX);
    }
}

/// One best-effort CloseSession after the client gave the session up, so that the cell frees
/// its locks without waiting for its own expiry.
async fn close_after_giving_up(shared: &Shared, conn: &Connection) {
    shared.expire("given up");
    let id = shared.id;
    let deadline = Instant::now() + conn.options.rpc_timeout;
    let r = tokio::time::timeout_at(deadline, close_with(conn, id, deadline)).await;
    tracing::debug!(session = id, outcome = ?r, "best-effort close of a given-up session");
}

async fn close_session(conn: &Connection, id: u64) -> Result<(), Error> {
    close_with(conn, id, Instant::now() + conn.options.op_deadline).await
}

async fn close_with(conn: &Connection, id: u64, deadline: Instant) -> Result<(), Error> {
    let plan = Plan {
        deadline,
        ..Plan::new(format!("close session {id}"), &conn.options, Route::Leader)
    };
    conn.write(plan, |mut rpc, t, write_id| {
        let req = pb::CloseSessionRequest {
            write_id: Some(write_id),
            session_id: id,
        };
        async move { rpc.close_session(request(req, t)).await }
    })
    .await
    .map(|_| ())
}
