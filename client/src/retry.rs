//! Retries of the data and admin paths: `ClientOptions` (timeouts, backoff, limits), the
//! `Backoff` loop (10 ms doubling to 1 s by default, until a deadline), and the two questions
//! a retry asks of a failure: is it retryable (the public code decides, never the message),
//! and could the request have been applied (`never_sent`).

use std::time::Duration;

use tabula_common::{Code, Error};
use tokio::time::Instant;

/// Timeouts, retry budget and limits of a `Client`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// How long one call (or, for a scan, the wait for its next row) keeps retrying.
    pub deadline: Duration,
    /// Longest wait for one attempt of one RPC (or one message of a stream).
    pub rpc_timeout: Duration,
    /// First pause after a failed attempt.
    pub backoff_min: Duration,
    /// Longest pause between attempts.
    pub backoff_max: Duration,
    /// METADATA rows read per location-cache miss: the tablet asked for and its neighbours
    /// (the tablets after it; for a reversed scan, the tablets before it).
    pub prefetch_tablets: usize,
    /// Most tablet records the location cache holds.
    pub max_cached_tablets: usize,
    /// Most requests `mutate_rows` has in flight at once.
    pub max_parallel_requests: usize,
    /// Most entries in one `MutateRows` request.
    pub max_batch_entries: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            deadline: Duration::from_secs(30),
            rpc_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_secs(1),
            prefetch_tablets: 16,
            max_cached_tablets: 100_000,
            max_parallel_requests: 8,
            max_batch_entries: 1000,
        }
    }
}

/// Exponential backoff with a deadline.
#[derive(Debug)]
pub(crate) struct Backoff {
    deadline: Instant,
    delay: Duration,
    min: Duration,
    max: Duration,
    budget: Duration,
    attempts: u32,
}

impl Backoff {
    pub(crate) fn new(options: &ClientOptions) -> Backoff {
        Backoff {
            deadline: Instant::now() + options.deadline,
            delay: options.backoff_min,
            min: options.backoff_min,
            max: options.backoff_max,
            budget: options.deadline,
            attempts: 0,
        }
    }

    /// Starts over after progress (a scan delivered a row): a fresh deadline, the first delay.
    pub(crate) fn reset(&mut self) {
        self.deadline = Instant::now() + self.budget;
        self.delay = self.min;
        self.attempts = 0;
    }

    /// Pauses before the next attempt after `e`, or gives `e` back if it is final or the
    /// deadline has passed.
    pub(crate) async fn wait(&mut self, what: &str, e: Error) -> Result<(), Error> {
        self.attempts += 1;
        let now = Instant::now();
        if !e.code.is_retryable() {
            return Err(e);
        }
        if now >= self.deadline {
            return Err(Error::new(
                e.code,
                format!(
                    "{what}: gave up after {} attempts: {}",
                    self.attempts, e.message
                ),
            ));
        }
        tracing::debug!(what, attempt = self.attempts, error = %e, "retrying");
        tokio::time::sleep(self.delay.min(self.deadline - now)).await;
        self.delay = (self.delay * 2).min(self.max);
        Ok(())
    }
}

/// Whether a failed call certainly did not reach a handler: the TCP connection was refused.
/// (A `WrongTablet` is also decided before anything is applied; the caller checks the code.)
pub(crate) fn never_sent(status: &tonic::Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// `e` with its message saying the write's outcome is unknown.
pub(crate) fn outcome_unknown(e: Error) -> Error {
    Error::new(
        e.code,
        format!(
            "outcome unknown (the request may or may not have been applied): {}",
            e.message
        ),
    )
}

/// Whether a failure with `e` makes the caller drop the location it used.
pub(crate) fn relocates(e: &Error) -> bool {
    matches!(
        e.code,
        Code::WrongTablet { .. } | Code::Unavailable | Code::DeadlineExceeded
    )
}

/// The error of one `MutateRows` entry, from its gRPC code and public code tag.
pub(crate) fn entry_error(code: i32, message: &str, tabula_code: &str) -> Error {
    let mut status = tonic::Status::new(tonic::Code::from(code), message);
    if !tabula_code.is_empty()
        && let Ok(v) = tabula_code.parse()
    {
        status.metadata_mut().insert("tabula-code", v);
    }
    Error::from(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_from_10ms_to_1s_and_stops_at_the_deadline() {
        let options = ClientOptions {
            deadline: Duration::from_secs(4),
            ..ClientOptions::default()
        };
        let mut b = Backoff::new(&options);
        let mut pauses = Vec::new();
        loop {
            let before = Instant::now();
            match b.wait("x", Error::new(Code::Unavailable, "busy")).await {
                Ok(()) => pauses.push((Instant::now() - before).as_millis()),
                Err(e) => {
                    assert!(e.message.starts_with("x: gave up"), "{e}");
                    break;
                }
            }
        }
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 730]);
        let final_error = Error::invalid_argument("no");
        b.reset();
        assert_eq!(b.wait("x", final_error.clone()).await, Err(final_error));
    }

    #[test]
    fn entry_errors_keep_their_public_code() {
        let e = entry_error(14, "moved", "wrong-tablet");
        assert!(matches!(e.code, Code::WrongTablet { .. }));
        assert!(relocates(&e));
        let e = entry_error(3, "bad", "invalid-argument");
        assert_eq!(e.code, Code::InvalidArgument);
        assert!(!relocates(&e));
    }

    #[test]
    fn a_handler_status_was_sent() {
        assert!(!never_sent(&tonic::Status::unavailable("gate closed")));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let mut status = tonic::Status::unavailable("connect");
        status.set_source(std::sync::Arc::new(refused));
        assert!(never_sent(&status));
    }
}
