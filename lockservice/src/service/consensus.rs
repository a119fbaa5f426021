//! Proposing a request and reading linearizably, each bounded by a timeout: a leader cut off from
//! its quorum never steps down in openraft 0.9, so without one its callers would hang.

use std::time::Duration;

use openraft::Raft;
use tabula_common::{Code, Error};

use super::raft_errors::{read_error, write_error};
use crate::api::fail_reason_to_error;
use crate::state::{Request, Response};
use crate::types::TypeConfig;

/// Proposes `req` and waits until it is committed and applied here; the state machine's answer
/// (a `Failed` one included). `DeadlineExceeded` if that takes longer than `timeout`: the
/// outcome is unknown then, and a retry with the same write id is safe.
pub(super) async fn propose(
    raft: &Raft<TypeConfig>,
    req: Request,
    timeout: Duration,
) -> Result<Response, Error> {
    match tokio::time::timeout(timeout, raft.client_write(req)).await {
        Ok(Ok(written)) => Ok(written.data),
        Ok(Err(e)) => Err(write_error(e)),
        Err(_) => Err(Error::new(
            Code::DeadlineExceeded,
            format!(
                "the write was not committed within {timeout:?}; its outcome is unknown \
                 (retrying it with the same write id is safe)"
            ),
        )),
    }
}

/// Like `propose`, but a `Failed` answer is its error.
pub(super) async fn propose_ok(
    raft: &Raft<TypeConfig>,
    req: Request,
    timeout: Duration,
) -> Result<Response, Error> {
    match propose(raft, req, timeout).await? {
        Response::Failed(reason) => Err(fail_reason_to_error(reason)),
        ok => Ok(ok),
    }
}

/// The generation of a write answered `Done`.
pub(super) fn generation(response: Response) -> Result<u64, Error> {
    match response {
        Response::Done { generation } => Ok(generation),
        other => Err(unexpected(&other)),
    }
}

/// A response of the wrong kind for its request: a bug.
pub(super) fn unexpected(response: &Response) -> Error {
    Error::internal(format!("unexpected state machine response {response:?}"))
}

/// Returns once this node's applied state includes every write committed before the call (a
/// heartbeat round confirms the leadership): reading it then is linearizable.
pub(super) async fn linearizable(raft: &Raft<TypeConfig>, timeout: Duration) -> Result<(), Error> {
    match tokio::time::timeout(timeout, raft.ensure_linearizable()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(read_error(e)),
        Err(_) => Err(Error::new(
            Code::Unavailable,
            format!("the leader could not confirm a quorum within {timeout:?}"),
        )),
    }
}
