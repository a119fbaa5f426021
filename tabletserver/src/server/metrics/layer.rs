//! A tower layer on the gRPC server that counts every request by RPC and status code and
//! records its latency, once for both services instead of in every handler.
//!
//! What is measured is the time until the response *headers* are ready, and the code they
//! carry: for unary RPCs that is the whole call (a handler's error is sent as a trailers-only
//! response, with `grpc-status` in the headers). For the server-streaming `ReadRows` it is the
//! time to the first response headers, and an error raised after streaming began (it travels
//! in the trailers) is counted as `OK`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::Code;
use tonic::codegen::http;
use tower_layer::Layer;
use tower_service::Service;

use super::requests::{RequestMetrics, Rpc};

/// Wraps a gRPC server's routes in `RequestMetricsService`.
#[derive(Debug, Clone)]
pub struct RequestMetricsLayer {
    metrics: Arc<RequestMetrics>,
}

impl RequestMetricsLayer {
    /// A layer recording into `metrics`.
    pub fn new(metrics: Arc<RequestMetrics>) -> RequestMetricsLayer {
        RequestMetricsLayer { metrics }
    }
}

impl<S> Layer<S> for RequestMetricsLayer {
    type Service = RequestMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestMetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct RequestMetricsService<S> {
    inner: S,
    metrics: Arc<RequestMetrics>,
}

impl<S, B, RB> Service<http::Request<B>> for RequestMetricsService<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let rpc = Rpc::from_path(request.uri().path());
        let metrics = self.metrics.clone();
        let started = Instant::now();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let result = answer.await;
            let code = match &result {
                Ok(response) => code_of(response),
                Err(_) => Code::Unknown,
            };
            metrics.record(rpc, code, started.elapsed());
            result
        })
    }
}

/// The gRPC code in a response's headers; `OK` when they carry none (it follows in the
/// trailers) and `Unknown` for a non-200 HTTP status without one.
fn code_of<B>(response: &http::Response<B>) -> Code {
    match response.headers().get("grpc-status") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.parse::<i32>().ok())
            .map_or(Code::Unknown, Code::from_i32),
        None if response.status() == http::StatusCode::OK => Code::Ok,
        None => Code::Unknown,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn response(status: u16, grpc_status: Option<&str>) -> http::Response<()> {
        let mut b = http::Response::builder().status(status);
        if let Some(s) = grpc_status {
            b = b.header("grpc-status", s);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn codes_come_from_the_headers_or_default_to_ok() {
        assert_eq!(code_of(&response(200, None)), Code::Ok);
        assert_eq!(code_of(&response(200, Some("0"))), Code::Ok);
        assert_eq!(code_of(&response(200, Some("14"))), Code::Unavailable);
        assert_eq!(code_of(&response(200, Some("x"))), Code::Unknown);
        assert_eq!(code_of(&response(415, None)), Code::Unknown);
    }
}
