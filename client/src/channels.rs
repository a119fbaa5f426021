//! `Channels`: a few lazily connected gRPC channels per server address, shared by every client
//! of that server (tablet data, tablet admin, master).
//!
//! A channel multiplexes any number of calls over one HTTP/2 connection and reconnects by
//! itself. One connection carries every frame of its calls through one connection task on
//! each side, which a busy client (dozens of calls in flight) saturates on one core; so each
//! address gets `connections_per_address` channels, and calls take them in turn. The cache is
//! bounded: past `max_addresses` the least recently used address is dropped (its in-flight
//! calls keep their clone of the channel).
//! Nothing is dialled until the first call; a refused connection is an `Unavailable` status on
//! that call.
//!
//! `Channels` must be used inside a Tokio runtime: making a lazy channel spawns its worker.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tabula_common::Error;
use tabula_proto::tabula::master::v1::master_service_client::MasterServiceClient;
use tabula_proto::tabula::tablet::v1::tablet_admin_client::TabletAdminClient;
use tabula_proto::tabula::tablet::v1::tablet_service_client::TabletServiceClient;
use tonic::transport::{Channel, Endpoint};

use crate::connector::Connector;

/// How channels connect and what they accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelOptions {
    /// Longest wait for a TCP connection.
    pub connect_timeout: Duration,
    /// How often an HTTP/2 PING checks an idle or busy connection.
    pub keepalive_interval: Duration,
    /// How long a PING may go unanswered before the connection is dropped.
    pub keepalive_timeout: Duration,
    /// Largest gRPC message sent or accepted.
    pub max_message_bytes: usize,
    /// Most addresses cached; the least recently used goes first.
    pub max_addresses: usize,
    /// HTTP/2 connections (channels) to each address; calls take them in turn (at least 1).
    pub connections_per_address: usize,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        ChannelOptions {
            connect_timeout: Duration::from_secs(2),
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(5),
            max_message_bytes: 64 << 20,
            max_addresses: 1024,
            connections_per_address: 2,
        }
    }
}

/// A bounded cache of channels by `host:port`. Cheap to clone; clones share the cache.
#[derive(Debug, Clone)]
pub struct Channels {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    options: ChannelOptions,
    cache: Mutex<Cache>,
}

#[derive(Debug, Default)]
struct Cache {
    /// Address -> its channels.
    entries: HashMap<String, Pool>,
    /// Counts uses; a larger number is a more recent use.
    clock: u64,
}

/// The channels to one address.
#[derive(Debug)]
struct Pool {
    channels: Vec<Channel>,
    /// The last use (`Cache::clock`); also picks the channel, in turn.
    used: u64,
}

impl Pool {
    /// The next channel in turn, marking the pool used at `now`.
    fn take(&mut self, now: u64) -> Channel {
        self.used = now;
        let i = usize::try_from(now).unwrap_or(0) % self.channels.len().max(1);
        self.channels[i].clone()
    }
}

impl Default for Channels {
    fn default() -> Self {
        Channels::new(ChannelOptions::default())
    }
}

impl Channels {
    /// An empty cache.
    pub fn new(options: ChannelOptions) -> Channels {
        Channels {
            inner: Arc::new(Inner {
                options,
                cache: Mutex::new(Cache::default()),
            }),
        }
    }

    /// The options every channel is made with.
    pub fn options(&self) -> &ChannelOptions {
        &self.inner.options
    }

    /// A channel to `addr` (`host:port`, or an `http://` URI), the address's channels made on
    /// first use, taken in turn. `InvalidArgument` if `addr` is not an address.
    pub fn channel(&self, addr: &str) -> Result<Channel, Error> {
        let key = normalize(addr)?;
        {
            let mut cache = self.inner.cache.lock();
            cache.clock += 1;
            let now = cache.clock;
            if let Some(pool) = cache.entries.get_mut(key) {
                return Ok(pool.take(now));
            }
        }
        // Made outside the lock: building the endpoint parses the URI.
        let endpoint = self.endpoint(key)?;
        let channels = (0..self.inner.options.connections_per_address.max(1))
            .map(|_| endpoint.connect_with_connector_lazy(Connector))
            .collect();
        let mut cache = self.inner.cache.lock();
        cache.clock += 1;
        let now = cache.clock;
        let channel = cache
            .entries
            .entry(key.to_owned())
            .or_insert(Pool {
                channels,
                used: now,
            })
            .take(now);
        while cache.entries.len() > self.inner.options.max_addresses.max(1) {
            let oldest = cache
                .entries
                .iter()
                .min_by_key(|(_, pool)| pool.used)
                .map(|(a, _)| a.clone());
            match oldest {
                Some(a) => cache.entries.remove(&a),
                None => break,
            };
        }
        Ok(channel)
    }

    /// Drops the cached channel to `addr` (the next call makes a new one), e.g. after the
    /// server at that address was declared dead.
    pub fn forget(&self, addr: &str) {
        if let Ok(key) = normalize(addr) {
            self.inner.cache.lock().entries.remove(key);
        }
    }

    /// How many addresses are cached.
    pub fn len(&self) -> usize {
        self.inner.cache.lock().entries.len()
    }

    /// Whether no address is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A `TabletService` (data) client of the tablet server at `addr`.
    pub fn data(&self, addr: &str) -> Result<TabletServiceClient<Channel>, Error> {
        let max = self.inner.options.max_message_bytes;
        Ok(TabletServiceClient::new(self.channel(addr)?)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max))
    }

    /// A `TabletAdmin` client of the tablet server at `addr`.
    pub fn admin(&self, addr: &str) -> Result<TabletAdminClient<Channel>, Error> {
        let max = self.inner.options.max_message_bytes;
        Ok(TabletAdminClient::new(self.channel(addr)?)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max))
    }

    /// A `MasterService` client of the master at `addr`.
    pub fn master(&self, addr: &str) -> Result<MasterServiceClient<Channel>, Error> {
        let max = self.inner.options.max_message_bytes;
        Ok(MasterServiceClient::new(self.channel(addr)?)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max))
    }

    fn endpoint(&self, key: &str) -> Result<Endpoint, Error> {
        let o = &self.inner.options;
        Ok(Endpoint::from_shared(format!("http://{key}"))
            .map_err(|e| Error::invalid_argument(format!("address {key:?} is not host:port: {e}")))?
            .connect_timeout(o.connect_timeout)
            .http2_keep_alive_interval(o.keepalive_interval)
            .keep_alive_timeout(o.keepalive_timeout)
            .keep_alive_while_idle(true))
    }
}

/// `host:port` from `host:port` or `http://host:port/`; `InvalidArgument` for anything else.
fn normalize(addr: &str) -> Result<&str, Error> {
    let raw = addr.trim();
    let rest = match raw.split_once("://") {
        Some(("http", rest)) => rest,
        Some((scheme, _)) => {
            return Err(Error::invalid_argument(format!(
                "address {addr:?}: scheme {scheme:?} is not supported (plain host:port)"
            )));
        }
        None => raw,
    };
    let hostport = rest.trim_end_matches('/');
    let Some((host, port)) = hostport.rsplit_once(':') else {
        return Err(Error::invalid_argument(format!(
            "address {addr:?} is not host:port"
        )));
    };
    if host.is_empty()
        || hostport.contains('/')
        || hostport.contains(char::is_whitespace)
        || port.parse::<u16>().is_err()
    {
        return Err(Error::invalid_argument(format!(
            "address {addr:?} is not host:port"
        )));
    }
    Ok(hostport)
}

#[cfg(test)]
mod tests {
    use tabula_common::Code;

    use super::*;

    #[test]
    fn addresses_normalize() {
        assert_eq!(normalize("127.0.0.1:7101").ok(), Some("127.0.0.1:7101"));
        assert_eq!(normalize("http://h:1/").ok(), Some("h:1"));
        assert_eq!(normalize("[::1]:80").ok(), Some("[::1]:80"));
        for bad in [
            "",
            "host",
            "host:",
            ":80",
            "host:port",
            "https://h:1",
            "h:1/x",
            "a b:1",
        ] {
            let e = normalize(bad).err();
            assert_eq!(e.map(|e| e.code), Some(Code::InvalidArgument), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn the_cache_is_shared_bounded_and_least_recently_used_goes() {
        let channels = Channels::new(ChannelOptions {
            max_addresses: 2,
            ..ChannelOptions::default()
        });
        let clone = channels.clone();
        assert!(channels.channel("127.0.0.1:1").is_ok());
        assert!(clone.data("127.0.0.1:2").is_ok());
        assert_eq!(channels.len(), 2);
        // Touch :1, so :2 is the least recently used when :3 arrives.
        assert!(channels.admin("http://127.0.0.1:1").is_ok());
        assert!(channels.master("127.0.0.1:3").is_ok());
        assert_eq!(channels.len(), 2);
        let cached: Vec<String> = {
            let mut v: Vec<String> = channels
                .inner
                .cache
                .lock()
                .entries
                .keys()
                .cloned()
                .collect();
            v.sort();
            v
        };
        assert_eq!(cached, ["127.0.0.1:1", "127.0.0.1:3"]);
        channels.forget("127.0.0.1:1");
        assert_eq!(clone.len(), 1);
        assert_eq!(
            channels.data("nonsense").err().map(|e| e.code),
            Some(Code::InvalidArgument)
        );
    }

    #[tokio::test]
    async fn calls_to_one_address_take_its_connections_in_turn() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        // Holds every connection open without answering, so no channel reconnects.
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(socket);
            }
        });
        let channels = Channels::new(ChannelOptions {
            connections_per_address: 2,
            ..ChannelOptions::default()
        });
        for _ in 0..6 {
            let mut admin = channels.admin(&addr).unwrap();
            let call =
                admin.list_tablets(tabula_proto::tabula::tablet::v1::ListTabletsRequest::default());
            // Nobody answers: the call only has to dial its channel's connection.
            let _ = tokio::time::timeout(Duration::from_millis(200), call).await;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while accepted.load(Ordering::SeqCst) < 2 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            2,
            "six calls to one address should use exactly its two connections"
        );
        server.abort();
    }

    #[tokio::test]
    async fn a_call_to_nobody_is_unavailable() {
        // Bind and drop a listener: nobody listens on that port now.
        let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let channels = Channels::default();
        let mut admin = channels.admin(&addr.to_string()).unwrap();
        let e = admin
            .list_tablets(tabula_proto::tabula::tablet::v1::ListTabletsRequest::default())
            .await
            .err()
            .map(|s| Error::from(s).code);
        assert_eq!(e, Some(Code::Unavailable));
    }
}
