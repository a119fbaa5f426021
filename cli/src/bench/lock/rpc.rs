//! How the bench talks to the cell: one `LockServiceClient` per connection, `WriteId`s, and
//! the waits every phase starts with (a leader is known; a restarted node has caught up), each
//! polling `Status` with a deadline.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tabula_common::{Code, Error};
use tabula_proto::tabula::lock::v1::lock_service_client::LockServiceClient;
use tabula_proto::tabula::lock::v1::{CreateRequest, StatusRequest, StatusResponse, WriteId};
use tonic::transport::{Channel, Endpoint};

/// A client of one node's `LockService`.
pub(super) type Client = LockServiceClient<Channel>;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
/// Time between two polls of `Status` while waiting.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How long one `Status` poll may take.
const STATUS_TIMEOUT: Duration = Duration::from_millis(500);

/// A client on its own connection to `addr`, made on first use (and again after a failure).
pub(super) fn client(addr: SocketAddr) -> anyhow::Result<Client> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .with_context(|| format!("an endpoint for {addr}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    Ok(LockServiceClient::new(endpoint.connect_lazy()))
}

/// Write ids of one client: a random non-zero `client_id` and a `seq` that grows with each
/// write, so the cell applies every write once and treats each as new.
pub(super) struct WriteIds {
    client_id: u64,
    seq: u64,
}

impl WriteIds {
    /// Ids for a new client.
    pub(super) fn new() -> WriteIds {
        WriteIds {
            client_id: rand::random::<u64>().max(1),
            seq: 0,
        }
    }

    /// The id of the next write.
    pub(super) fn next_id(&mut self) -> WriteId {
        self.seq += 1;
        WriteId {
            client_id: self.client_id,
            seq: self.seq,
        }
    }
}

/// The node that says it leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Leader {
    pub(super) id: u64,
    pub(super) addr: SocketAddr,
    pub(super) term: u64,
}

/// `Status` of one node, within `STATUS_TIMEOUT`.
pub(super) async fn status(addr: SocketAddr) -> anyhow::Result<StatusResponse> {
    let mut c = client(addr)?;
    let reply = tokio::time::timeout(STATUS_TIMEOUT, c.status(StatusRequest::default()))
        .await
        .with_context(|| format!("Status of {addr} timed out"))?
        .map_err(Error::from)
        .with_context(|| format!("Status of {addr}"))?;
    Ok(reply.into_inner())
}

/// The leader among `members`: a node whose own `Status` names itself leader. `None` if no
/// node answers so.
pub(super) async fn find_leader(members: &[(u64, SocketAddr)]) -> Option<Leader> {
    for &(id, addr) in members {
        if let Ok(s) = status(addr).await
            && s.node_id == id
            && s.leader_id == id
        {
            return Some(Leader {
                id,
                addr,
                term: s.term,
            });
        }
    }
    None
}

/// Polls `members` until one of them leads, or fails after `timeout` with what the last polls
/// said.
pub(super) async fn wait_for_leader(
    members: &[(u64, SocketAddr)],
    timeout: Duration,
) -> anyhow::Result<Leader> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(leader) = find_leader(members).await {
            return Ok(leader);
        }
        if Instant::now() >= deadline {
            let mut said = Vec::new();
            for &(id, addr) in members {
                match status(addr).await {
                    Ok(s) => said.push(format!(
                        "node {id}: leader {} term {} applied {}",
                        s.leader_id, s.term, s.applied_index
                    )),
                    Err(e) => said.push(format!("node {id}: {e:#}")),
                }
            }
            bail!(
                "no leader after {:.1} s ({})",
                timeout.as_secs_f64(),
                said.join("; ")
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Polls node `addr` until its applied index reaches `index`, or fails after `timeout`.
pub(super) async fn wait_applied(
    addr: SocketAddr,
    index: u64,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut last = String::from("no answer");
    while started.elapsed() < timeout {
        match status(addr).await {
            Ok(s) if s.applied_index >= index => return Ok(started.elapsed()),
            Ok(s) => last = format!("applied index {}", s.applied_index),
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    bail!(
        "{addr} did not apply index {index} within {:.1} s (last: {last})",
        timeout.as_secs_f64()
    )
}

/// Creates the file `path` with `contents` through `leader`; an existing file is fine.
pub(super) async fn ensure_file(
    leader: &mut Client,
    ids: &mut WriteIds,
    path: &str,
    contents: &[u8],
) -> anyhow::Result<()> {
    let request = CreateRequest {
        write_id: Some(ids.next_id()),
        path: path.to_owned(),
        contents: contents.to_vec(),
        ephemeral_session_id: 0,
    };
    match leader.create(request).await.map_err(Error::from) {
        Ok(_) => Ok(()),
        Err(e) if e.code == Code::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating {path}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_ids_grow_and_never_use_client_zero() {
        let mut ids = WriteIds::new();
        let (a, b) = (ids.next_id(), ids.next_id());
        assert_ne!(a.client_id, 0);
        assert_eq!(a.client_id, b.client_id);
        assert_eq!((a.seq, b.seq), (1, 2));
    }
}
