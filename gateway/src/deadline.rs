//! Client deadlines answered with `DEADLINE_EXCEEDED`, as Cloud Bigtable answers them.
//!
//! A Cloud Bigtable client sends its deadline for each attempt in the `grpc-timeout` header.
//! tonic's server enforces that header itself, but it answers an expired call with
//! `CANCELLED` ("Timeout expired"), and the official clients retry `DEADLINE_EXCEEDED` and
//! never `CANCELLED`: when tonic's answer reached the client before the client's own timer
//! fired, a write that was waiting on a killed tablet server failed instead of being retried
//! (seen in the Python client's failover test, about one run in six on a loaded machine).
//!
//! `DeadlineLayer` sits inside tonic's timeout and ends the call a little before it, answering
//! `DEADLINE_EXCEEDED`; dropping the call's future stops its work (the client library's retry
//! loop included). Only the time to the response headers is bounded, as with tonic's: a
//! `ReadRows` stream that has begun is the client's to cancel.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::codegen::http;
use tower_layer::Layer;
use tower_service::Service;

/// The most by which the gateway ends a call before the client's deadline, so that its answer
/// comes before tonic's (whose timer starts a moment earlier, with the same budget, and fires
/// on the same millisecond ticks).
const MARGIN: Duration = Duration::from_millis(5);

/// Wraps a gRPC server's routes in [`DeadlineService`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DeadlineLayer;

impl<S> Layer<S> for DeadlineLayer {
    type Service = DeadlineService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DeadlineService { inner }
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct DeadlineService<S> {
    inner: S,
}

impl<S, B, RB> Service<http::Request<B>> for DeadlineService<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    RB: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let budget = request
            .headers()
            .get("grpc-timeout")
            .and_then(|value| parse_grpc_timeout(value.as_bytes()));
        let answer = self.inner.call(request);
        let Some(budget) = budget else {
            return Box::pin(answer);
        };
        Box::pin(async move {
            match tokio::time::timeout(ours(budget), answer).await {
                Ok(result) => result,
                Err(_) => Ok(tonic::Status::deadline_exceeded(format!(
                    "the call's deadline ({budget:?}, from grpc-timeout) passed before it finished"
                ))
                .into_http()),
            }
        })
    }
}

/// How long the gateway gives a call whose client allows `budget`: up to [`MARGIN`] less, and
/// never less than nine tenths of it.
fn ours(budget: Duration) -> Duration {
    budget - MARGIN.min(budget / 10)
}

/// The duration a `grpc-timeout` header value names: 1 to 8 ASCII digits and a unit (`H`
/// hours, `M` minutes, `S` seconds, `m` milliseconds, `u` microseconds, `n` nanoseconds), as
/// gRPC over HTTP/2 defines it. `None` for anything else; the call then runs unbounded here,
/// as tonic itself refuses such a header.
fn parse_grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::convert::Infallible;
    use std::time::Instant;

    use super::*;

    #[test]
    fn grpc_timeout_values_parse_as_the_protocol_defines_them() {
        let cases: [(&str, Option<Duration>); 14] = [
            ("3S", Some(Duration::from_secs(3))),
            ("2999m", Some(Duration::from_millis(2999))),
            ("1H", Some(Duration::from_secs(3600))),
            ("2M", Some(Duration::from_secs(120))),
            ("750000u", Some(Duration::from_micros(750_000))),
            ("99999999n", Some(Duration::from_nanos(99_999_999))),
            ("0m", Some(Duration::ZERO)),
            ("123456789m", None),
            ("m", None),
            ("", None),
            ("12", None),
            ("1s", None),
            ("-1S", None),
            ("1 S", None),
        ];
        for (value, want) in cases {
            assert_eq!(parse_grpc_timeout(value.as_bytes()), want, "{value:?}");
        }
    }

    #[test]
    fn the_gateway_answers_before_the_deadline_and_keeps_most_of_it() {
        assert_eq!(ours(Duration::from_secs(3)), Duration::from_millis(2995));
        assert_eq!(ours(Duration::from_millis(20)), Duration::from_millis(18));
        assert_eq!(ours(Duration::ZERO), Duration::ZERO);
    }

    /// A service that answers `OK` after `delay`.
    #[derive(Clone)]
    struct Slow {
        delay: Duration,
    }

    impl Service<http::Request<()>> for Slow {
        type Response = http::Response<String>;
        type Error = Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            let delay = self.delay;
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok(http::Response::new("done".to_owned()))
            })
        }
    }

    fn request(timeout: Option<&str>) -> http::Request<()> {
        let mut request = http::Request::builder().uri("/google.bigtable.v2.Bigtable/MutateRow");
        if let Some(t) = timeout {
            request = request.header("grpc-timeout", t);
        }
        request.body(()).unwrap()
    }

    fn grpc_status(response: &http::Response<String>) -> Option<&str> {
        response
            .headers()
            .get("grpc-status")
            .map(|v| v.to_str().unwrap())
    }

    #[tokio::test]
    async fn a_call_past_its_deadline_is_answered_deadline_exceeded_in_time() {
        let mut service = DeadlineLayer.layer(Slow {
            delay: Duration::from_secs(30),
        });
        let started = Instant::now();
        let response = service.call(request(Some("200m"))).await.unwrap();
        let took = started.elapsed();
        assert_eq!(grpc_status(&response), Some("4"), "DEADLINE_EXCEEDED");
        assert!(response.body().is_empty());
        assert!(
            took >= Duration::from_millis(195) && took < Duration::from_millis(200) + SLACK,
            "answered after {took:?}"
        );
    }

    /// Scheduling delay allowed on a loaded machine (the answer must not come early; late is
    /// only slow).
    const SLACK: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn calls_within_their_deadline_or_without_one_are_untouched() {
        let mut service = DeadlineLayer.layer(Slow {
            delay: Duration::from_millis(20),
        });
        for timeout in [Some("20S"), None, Some("bogus")] {
            let response = service.call(request(timeout)).await.unwrap();
            assert_eq!(grpc_status(&response), None, "{timeout:?}");
            assert_eq!(response.body(), "done");
        }
    }
}
