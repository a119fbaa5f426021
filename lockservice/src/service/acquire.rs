//! Acquiring a lock, at once or waiting: each attempt is a log entry (`Op::Acquire`); between
//! attempts the leader waits until the applied state shows the lock could be granted, or the
//! wait runs out.
//!
//! Attempts carry no write id: acquiring a lock the session already holds in that mode answers
//! its existing sequencer, so a client retrying after an ambiguous failure gets the same lock,
//! and an attempt answered `LockHeld` must not be replayed to a later, luckier retry.

use std::time::Duration;

use openraft::Raft;
use tabula_common::Error;
use tokio::time::Instant;

use super::consensus::{propose_ok, unexpected};
use crate::state::{LockMode, LockState, Op, Request, Response, Sequencer};
use crate::store::StateHandle;
use crate::types::TypeConfig;

/// What a lock request asks.
pub(super) struct AcquireArgs {
    pub(super) path: String,
    pub(super) session: u64,
    pub(super) mode: LockMode,
    /// Zero: try once.
    pub(super) wait: Duration,
}

/// The sequencer if the session holds the lock, `None` if others still hold it when the wait
/// ends.
pub(super) async fn acquire(
    raft: &Raft<TypeConfig>,
    state: &StateHandle,
    args: AcquireArgs,
    write_timeout: Duration,
) -> Result<Option<Sequencer>, Error> {
    let deadline = Instant::now() + args.wait;
    let mut applied = state.subscribe();
    loop {
        // Mark the current applied state as seen before proposing: a release applied after
        // this point wakes the wait below.
        applied.borrow_and_update();
        let req = Request {
            client: None,
            op: Op::Acquire {
                path: args.path.clone(),
                session: args.session,
                mode: args.mode,
            },
        };
        match propose_ok(raft, req, write_timeout).await? {
            Response::Acquired(sequencer) => return Ok(Some(sequencer)),
            Response::LockHeld => {}
            other => return Err(unexpected(&other)),
        }
        // Wait until the lock looks grantable (or the file or session went: the next attempt
        // reports that), or the deadline.
        loop {
            if state.read(|s| grantable(s, &args)) {
                break;
            }
            match tokio::time::timeout_at(deadline, applied.changed()).await {
                Ok(Ok(())) => {}
                // The state machine is gone: the node is shutting down.
                Ok(Err(_)) => return Err(super::raft_errors::not_leader_now(raft)),
                Err(_) => return Ok(None),
            }
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
    }
}

/// Whether an attempt could succeed now, or would fail for another reason than a holder.
fn grantable(s: &LockState, args: &AcquireArgs) -> bool {
    if !s.session_is_live(args.session) {
        return true;
    }
    let Some(file) = s.get(&args.path) else {
        return true;
    };
    // A session holding the lock in the other mode gets `LockHeld` until it releases (no
    // upgrades): not grantable, or the loop would propose in a spin.
    file.lock_holders.iter().all(|h| {
        if h.session == args.session {
            h.mode == args.mode
        } else {
            args.mode == LockMode::Shared && h.mode == LockMode::Shared
        }
    })
}
