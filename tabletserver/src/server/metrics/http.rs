//! The plain-HTTP endpoint beside the gRPC services: `GET /metrics` (Prometheus text format,
//! gathered at scrape time) and `GET /healthz` (`200 ok` while the gate lets the server serve,
//! that is, it has not stopped and its lock-service session is safe now; else `503` and the
//! reason on one line). Anything else is `404`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::super::gate::Gate;
use super::scrape::Metrics;
use tabula_common::metrics::CONTENT_TYPE;

/// The routes, over `metrics` and `gate`.
pub fn router(metrics: Metrics, gate: Arc<Gate>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.render()) }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let gate = gate.clone();
                async move { healthz(&gate) }
            }),
        )
}

fn healthz(gate: &Gate) -> impl IntoResponse + use<> {
    let text = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    match gate.check_serving() {
        Ok(()) => (StatusCode::OK, text, "ok\n".to_owned()),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            text,
            format!("{}\n", e.message.replace('\n', " ")),
        ),
    }
}

/// Binds the endpoint's address (before the server joins the cluster, so a taken port fails
/// the start early); returns the listener and the address bound (port 0 resolved).
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    Ok((listener, bound))
}

/// Serves `router` on `listener` until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    stop: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}
