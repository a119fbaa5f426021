//! The cell as a client sees it: the known nodes (the configured list plus any leader a node
//! named), one lazily connected channel per node, the cached leader, the retry loop every call
//! goes through, and the `(client_id, seq)` numbering of writes.
//!
//! The retry loop: try the cached leader, else the nodes in list order. A `NotLeader` answer
//! naming the leader sends the next attempt there at once (the address joins the known nodes if
//! it is new); `NotLeader` without a hint, `Unavailable`, a transport failure or an attempt that
//! outlived its timeout moves on to the next node after a short jittered backoff. Any other
//! error is the answer. The loop gives up at the plan's deadline with the last error, as
//! `Unavailable` or `DeadlineExceeded`, naming the nodes it tried.
//!
//! Writes: the cell keeps, per `client_id`, only its last applied `seq` (a smaller one is
//! refused as stale), so a client must never have two writes in flight. `write` therefore holds
//! the client's sequence lock for a write's whole retry loop; every attempt of one write carries
//! the same `seq`, which makes retries exactly-once.

use std::future::Future;
use std::time::Duration;

use parking_lot::Mutex;
use tabula_common::{Code, Error};
use tabula_proto::tabula::lock::v1 as pb;
use tabula_proto::tabula::lock::v1::lock_service_client::LockServiceClient;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use super::options::ClientOptions;

/// Largest gRPC message sent or accepted (files are small; listings may not be).
const MAX_MESSAGE_BYTES: usize = 16 << 20;
/// Most nodes a client remembers (the configured ones plus leaders named by hints).
const MAX_NODES: usize = 64;
/// First pause after a failed attempt; doubles up to the plan's `backoff_max`.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest pause between attempts of an ordinary call.
pub(super) const BACKOFF_MAX: Duration = Duration::from_millis(500);
/// Redirects followed without a pause before backing off (stale hints can ping-pong).
const IMMEDIATE_REDIRECTS: u32 = 2;
/// The metadata entry a Tabula server puts on every error it returns.
const CODE_KEY: &str = "tabula-code";

/// The generated gRPC client over one node's channel.
pub(super) type Rpc = LockServiceClient<Channel>;

/// Where the retry loop starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    /// The cached leader first, then the list in order; a success names the leader.
    Leader,
    /// Any node: the cached leader first unless `avoid` is given, in which case the nodes after
    /// it in list order (it comes last). Success says nothing about leadership.
    Any {
        /// A node that just failed us.
        avoid: Option<usize>,
    },
    /// This node first, then the list after it; a success names the leader.
    Node(usize),
}

/// How one call retries.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    /// What the call is, for error messages ("create /a").
    pub(super) what: String,
    /// When to stop trying.
    pub(super) deadline: Instant,
    /// Longest wait for one attempt's answer (cut to the time left before `deadline`).
    pub(super) attempt_timeout: Duration,
    /// Longest pause between attempts.
    pub(super) backoff_max: Duration,
    /// Where to start.
    pub(super) route: Route,
}

impl Plan {
    /// An ordinary call: `op_deadline` in total, `rpc_timeout` per attempt.
    pub(super) fn new(what: String, options: &ClientOptions, route: Route) -> Plan {
        Plan {
            what,
            deadline: Instant::now() + options.op_deadline,
            attempt_timeout: options.rpc_timeout,
            backoff_max: BACKOFF_MAX,
            route,
        }
    }
}

/// A successful attempt.
#[derive(Debug)]
pub(super) struct Answer<T> {
    /// The response.
    pub(super) value: T,
    /// The node (index) that gave it.
    pub(super) node: usize,
    /// The instant just before the successful attempt's request was sent.
    pub(super) sent_at: Instant,
    /// The instant just before the first attempt was sent (a write may have been applied by
    /// then).
    pub(super) first_sent_at: Instant,
}

/// The nodes and channels of one `LockClient` and its clones.
#[derive(Debug)]
pub(super) struct Connection {
    pub(super) options: ClientOptions,
    known: Mutex<Known>,
    /// Random, non-zero: this client's deduplication id.
    client_id: u64,
    /// The next write's `seq`; held for a write's whole retry loop.
    next_seq: tokio::sync::Mutex<u64>,
}

#[derive(Debug)]
struct Known {
    nodes: Vec<Node>,
    /// Index of the node believed to lead.
    leader: Option<usize>,
}

#[derive(Debug)]
struct Node {
    /// `host:port`, as nodes name each other in hints.
    addr: String,
    endpoint: Endpoint,
    /// Made on first use (making one needs a Tokio runtime).
    rpc: Option<Rpc>,
}

impl Connection {
    /// A connection to the nodes at `addrs` (`host:port`, or a URI); connects nothing yet.
    pub(super) fn new(addrs: &[String], options: ClientOptions) -> Result<Connection, Error> {
        if addrs.is_empty() {
            return Err(Error::invalid_argument(
                "no lock service nodes given: need at least one host:port",
            ));
        }
        let mut nodes: Vec<Node> = Vec::new();
        for raw in addrs {
            let node = Node::new(raw, &options)?;
            if !nodes.iter().any(|n| n.addr == node.addr) {
                nodes.push(node);
            }
        }
        if nodes.len() > MAX_NODES {
            return Err(Error::invalid_argument(format!(
                "{} lock service nodes given; at most {MAX_NODES}",
                nodes.len()
            )));
        }
        let client_id = loop {
            let id = rand::random::<u64>();
            if id != 0 {
                break id;
            }
        };
        Ok(Connection {
            options,
            known: Mutex::new(Known {
                nodes,
                leader: None,
            }),
            client_id,
            next_seq: tokio::sync::Mutex::new(1),
        })
    }

    /// The address of node `index`.
    pub(super) fn addr(&self, index: usize) -> String {
        let known = self.known.lock();
        known
            .nodes
            .get(index)
            .map(|n| n.addr.clone())
            .unwrap_or_default()
    }

    /// The index of `addr` among the known nodes, adding it if new (and there is room).
    pub(super) fn index_of(&self, addr: &str) -> Option<usize> {
        let node = Node::new(addr, &self.options).ok()?;
        let mut known = self.known.lock();
        if let Some(i) = known.nodes.iter().position(|n| n.addr == node.addr) {
            return Some(i);
        }
        if known.nodes.len() >= MAX_NODES {
            tracing::warn!(addr = %node.addr, "lock client: too many known nodes, hint ignored");
            return None;
        }
        tracing::debug!(addr = %node.addr, "lock client: learned a new node from a hint");
        known.nodes.push(node);
        Some(known.nodes.len() - 1)
    }

    /// The gRPC client of node `index` (channel made on first use), and its address.
    fn rpc(&self, index: usize) -> (Rpc, String) {
        let mut known = self.known.lock();
        let len = known.nodes.len();
        let node = &mut known.nodes[index % len];
        let rpc = node
            .rpc
            .get_or_insert_with(|| {
                LockServiceClient::new(node.endpoint.connect_lazy())
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES)
            })
            .clone();
        (rpc, node.addr.clone())
    }

    fn node_count(&self) -> usize {
        self.known.lock().nodes.len()
    }

    fn leader(&self) -> Option<usize> {
        self.known.lock().leader
    }

    fn set_leader(&self, index: usize) {
        self.known.lock().leader = Some(index);
    }

    /// Forgets `index` as the leader (if it was).
    fn forget_leader(&self, index: usize) {
        let mut known = self.known.lock();
        if known.leader == Some(index) {
            known.leader = None;
        }
    }

    /// Runs one write: allocates its `seq`, then retries `f` with the same `WriteId` until it
    /// answers or the plan gives up. Writes of this client run one at a time.
    pub(super) async fn write<T, F, Fut>(&self, plan: Plan, mut f: F) -> Result<Answer<T>, Error>
    where
        F: FnMut(Rpc, Duration, pb::WriteId) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut next_seq = tokio::time::timeout_at(plan.deadline, self.next_seq.lock())
            .await
            .map_err(|_| {
                Error::new(
                    Code::DeadlineExceeded,
                    format!("{}: earlier writes of this client still running", plan.what),
                )
            })?;
        let seq = *next_seq;
        // Spent whatever happens: a write that timed out may still be applied later.
        *next_seq += 1;
        let client_id = self.client_id;
        let answer = self
            .call(plan, |rpc, timeout| {
                f(rpc, timeout, pb::WriteId { client_id, seq })
            })
            .await;
        drop(next_seq);
        answer
    }

    /// Retries `f` across nodes as the module doc describes. `f` gets a node's client and the
    /// attempt's timeout (to put on the request for the server's benefit; the loop enforces it
    /// anyway).
    pub(super) async fn call<T, F, Fut>(&self, plan: Plan, mut f: F) -> Result<Answer<T>, Error>
    where
        F: FnMut(Rpc, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let (mut target, mut next) = match plan.route {
            Route::Leader => (self.leader(), self.leader().map_or(0, |l| l + 1)),
            Route::Any { avoid: None } => (self.leader(), self.leader().map_or(0, |l| l + 1)),
            Route::Any { avoid: Some(a) } => (None, a + 1),
            Route::Node(n) => (Some(n), n + 1),
        };
        let names_leader = !matches!(plan.route, Route::Any { .. });
        let mut tried: Vec<String> = Vec::new();
        let mut last: Option<Error> = None;
        let mut backoff = BACKOFF_MIN;
        let mut redirects = 0;
        let mut first_attempt_at = None;
        loop {
            let now = Instant::now();
            if now >= plan.deadline {
                return Err(give_up(&plan, last, &tried));
            }
            let index = target.take().unwrap_or_else(|| {
                let i = next % self.node_count();
                next = i + 1;
                i
            });
            let (rpc, addr) = self.rpc(index);
            if !tried.contains(&addr) {
                tried.push(addr.clone());
            }
            let timeout = plan
                .attempt_timeout
                .min(plan.deadline.saturating_duration_since(now));
            let sent_at = Instant::now();
            let first_sent_at = *first_attempt_at.get_or_insert(sent_at);
            let err = match tokio::time::timeout(timeout, f(rpc, timeout)).await {
                Ok(Ok(response)) => {
                    if names_leader {
                        self.set_leader(index);
                    }
                    return Ok(Answer {
                        value: response.into_inner(),
                        node: index,
                        sent_at,
                        first_sent_at,
                    });
                }
                Ok(Err(status)) => error_from_status(status),
                Err(_) => Error::new(
                    Code::DeadlineExceeded,
                    format!("{addr} did not answer within {timeout:?}"),
                ),
            };
            tracing::debug!(what = %plan.what, node = %addr, error = %err, "lock client: attempt failed");
            match &err.code {
                Code::NotLeader { hint: Some(hint) } => {
                    self.forget_leader(index);
                    if let Some(leader) = self.index_of(hint)
                        && leader != index
                    {
                        self.set_leader(leader);
                        target = Some(leader);
                        redirects += 1;
                        if redirects <= IMMEDIATE_REDIRECTS {
                            last = Some(err);
                            continue;
                        }
                    }
                }
                Code::NotLeader { hint: None } | Code::Unavailable | Code::DeadlineExceeded => {
                    self.forget_leader(index);
                }
                _ => return Err(err),
            }
            last = Some(err);
            let left = plan.deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(jittered(backoff).min(left)).await;
            backoff = (backoff * 2).min(plan.backoff_max);
            redirects = 0;
        }
    }
}

impl Node {
    fn new(raw: &str, options: &ClientOptions) -> Result<Node, Error> {
        let raw = raw.trim();
        let addr = raw
            .split_once("://")
            .map_or(raw, |(_, rest)| rest)
            .trim_end_matches('/');
        if addr.is_empty() {
            return Err(Error::invalid_argument(format!(
                "lock service node address {raw:?} is empty: want host:port"
            )));
        }
        let uri = if raw.contains("://") {
            raw.to_owned()
        } else {
            format!("http://{addr}")
        };
        let endpoint = Endpoint::from_shared(uri)
            .map_err(|e| {
                Error::invalid_argument(format!(
                    "lock service node address {raw:?} is not host:port: {e}"
                ))
            })?
            .connect_timeout(options.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(options.rpc_timeout)
            .keep_alive_while_idle(true);
        Ok(Node {
            addr: addr.to_owned(),
            endpoint,
            rpc: None,
        })
    }
}

/// A request carrying `timeout` as its gRPC deadline.
pub(super) fn request<M>(message: M, timeout: Duration) -> tonic::Request<M> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}

/// The public error for a failed attempt. A status without the `tabula-code` entry every
/// Tabula server error carries, in a code transports use, is a broken connection or stream:
/// `Unavailable`, so the caller moves on to another node.
pub(super) fn error_from_status(status: tonic::Status) -> Error {
    let tagged = status.metadata().contains_key(CODE_KEY);
    let transport = matches!(
        status.code(),
        tonic::Code::Unknown
            | tonic::Code::Internal
            | tonic::Code::Cancelled
            | tonic::Code::Unavailable
    );
    if !tagged && transport {
        Error::new(
            Code::Unavailable,
            format!("transport: {:?}: {}", status.code(), status.message()),
        )
    } else {
        Error::from(status)
    }
}

/// Whether a failed call is worth retrying on another node.
pub(super) fn retryable(code: &Code) -> bool {
    matches!(
        code,
        Code::NotLeader { .. } | Code::Unavailable | Code::DeadlineExceeded
    )
}

/// `d` scaled by a random factor in [0.5, 1].
pub(super) fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::random_range(0.5..=1.0))
}

fn give_up(plan: &Plan, last: Option<Error>, tried: &[String]) -> Error {
    let code = match last.as_ref().map(|e| &e.code) {
        Some(Code::DeadlineExceeded) | None => Code::DeadlineExceeded,
        Some(_) => Code::Unavailable,
    };
    let last = last.map_or_else(|| "none".to_owned(), |e| e.to_string());
    Error::new(
        code,
        format!(
            "{}: no answer before the deadline from {}; last error: {last}",
            plan.what,
            tried.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn addrs(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn addresses_are_host_port_or_uris_and_duplicates_merge() {
        let options = ClientOptions::default();
        let conn = Connection::new(
            &addrs(&[
                "127.0.0.1:7101",
                "http://127.0.0.1:7102/",
                " 127.0.0.1:7101 ",
            ]),
            options.clone(),
        )
        .unwrap();
        assert_eq!(conn.node_count(), 2);
        assert_eq!(conn.addr(1), "127.0.0.1:7102");
        assert_eq!(conn.index_of("127.0.0.1:7102"), Some(1));
        assert_eq!(conn.index_of("127.0.0.1:7103"), Some(2));
        assert_eq!(conn.node_count(), 3);

        for bad in [&[][..], &[""], &["  "], &["http://"], &["a b:1"]] {
            let e = Connection::new(&addrs(bad), options.clone()).unwrap_err();
            assert_eq!(e.code, Code::InvalidArgument, "{bad:?}");
        }
    }

    #[test]
    fn client_ids_are_random_and_never_zero() {
        let a = Connection::new(&addrs(&["h:1"]), ClientOptions::default()).unwrap();
        let b = Connection::new(&addrs(&["h:1"]), ClientOptions::default()).unwrap();
        assert_ne!(a.client_id, 0);
        assert_ne!(a.client_id, b.client_id);
    }

    #[test]
    fn untagged_transport_statuses_are_unavailable_and_server_errors_keep_their_code() {
        for code in [
            tonic::Code::Unknown,
            tonic::Code::Internal,
            tonic::Code::Cancelled,
            tonic::Code::Unavailable,
        ] {
            let e = error_from_status(tonic::Status::new(code, "h2 protocol error"));
            assert_eq!(e.code, Code::Unavailable);
        }
        let server = tonic::Status::from(Error::internal("a bug"));
        assert_eq!(error_from_status(server).code, Code::Internal);
        let hint = Some("127.0.0.1:9".to_owned());
        let redirect =
            tonic::Status::from(Error::new(Code::NotLeader { hint: hint.clone() }, "no"));
        assert_eq!(error_from_status(redirect).code, Code::NotLeader { hint });
        assert!(!retryable(&Code::ResourceExhausted));
        assert!(retryable(&Code::NotLeader { hint: None }));
    }

    #[test]
    fn jitter_stays_within_half_to_full() {
        for _ in 0..100 {
            let d = jittered(Duration::from_millis(100));
            assert!(d >= Duration::from_millis(50) && d <= Duration::from_millis(100));
        }
    }

    #[tokio::test]
    async fn a_cell_that_never_answers_gives_up_at_the_deadline_naming_the_nodes() {
        // Two ports nothing listens on.
        let mut dead = Vec::new();
        for _ in 0..2 {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            dead.push(l.local_addr().unwrap().to_string());
        }
        let options = ClientOptions {
            op_deadline: Duration::from_millis(300),
            ..ClientOptions::default()
        };
        let conn = Connection::new(&dead, options).unwrap();
        let plan = Plan::new("list /".into(), &conn.options, Route::Leader);
        let start = Instant::now();
        let r = conn
            .write(plan, |mut rpc, t, id| async move {
                assert_eq!(id.seq, 1);
                let req = pb::DeleteRequest {
                    write_id: Some(id),
                    path: "/x".into(),
                    if_generation: None,
                };
                rpc.delete(request(req, t)).await
            })
            .await;
        let e = r.unwrap_err();
        assert!(start.elapsed() >= Duration::from_millis(300));
        assert!(start.elapsed() < Duration::from_secs(3));
        assert_eq!(e.code, Code::Unavailable, "{e}");
        for addr in &dead {
            assert!(e.message.contains(addr.as_str()), "{e}");
        }
        // The seq is spent even though the write failed.
        assert_eq!(*conn.next_seq.lock().await, 2);
    }
}
