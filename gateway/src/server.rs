//! Serving the gateway: both Cloud Bigtable services on one address, until a shutdown signal.

use std::future::Future;
use std::time::Duration;

use tabula_client::Client;
use tabula_proto::google::bigtable::admin::v2::bigtable_table_admin_server::BigtableTableAdminServer;
use tabula_proto::google::bigtable::v2::bigtable_server::BigtableServer;
use tokio::net::TcpListener;

use crate::admin::TableAdminService;
use crate::data::DataService;
use crate::deadline::DeadlineLayer;

/// The largest request accepted: a `MutateRows` batch of large values (a Cloud Bigtable
/// value may be 100 MiB; a request, 256 MiB).
pub const MAX_REQUEST_BYTES: usize = 256 << 20;

/// How a gateway runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    /// How long a resolved table name is used before the lock service is asked again (a
    /// table dropped and created again meanwhile is noticed at once anyway: see `tables`).
    pub table_ttl: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            table_ttl: crate::tables::TTL,
        }
    }
}

/// Serves the data and table admin APIs on `listener` over `client` until `shutdown`
/// completes; requests in flight then finish.
pub async fn serve(
    listener: TcpListener,
    client: Client,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    serve_with(listener, client, ServeOptions::default(), shutdown).await
}

/// As [`serve`], with `options`.
pub async fn serve_with(
    listener: TcpListener,
    client: Client,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let data = BigtableServer::new(DataService::with_table_ttl(
        client.clone(),
        options.table_ttl,
    ))
    .max_decoding_message_size(MAX_REQUEST_BYTES)
    .max_encoding_message_size(MAX_REQUEST_BYTES);
    let admin = BigtableTableAdminServer::new(TableAdminService::new(&client))
        .max_decoding_message_size(MAX_REQUEST_BYTES);
    // Without TCP_NODELAY, Nagle's algorithm meets the client's delayed ACKs and a small
    // answer waits ~40 ms (measured: a one-row read through the gateway at p50 48 ms -> 15 ms).
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .layer(DeadlineLayer)
        .add_service(data)
        .add_service(admin)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
