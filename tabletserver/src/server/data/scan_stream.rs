//! `ScanStream`: the response stream of a `ReadRows` scan, which makes its messages as it is
//! polled. Each poll with nothing ready runs one *step* of the scan (`Scan::advance` within a
//! budget of rows and bytes) on the async worker that polls it: the rows go out while they
//! are still in the cache, no thread is handed the scan, and HTTP/2 flow control holds a slow
//! client's scan back (the stream is not polled while the stream's window is full). Between
//! two steps the stream yields once, so the worker runs its other tasks after every step
//! rather than only when the client's flow-control window (megabytes) fills.
//!
//! A step that takes longer than `SLOW_STEP` was reading the disk (or filtering through many
//! rows): the rest of the scan then moves to the blocking pool, where waiting on the disk
//! holds no worker, and hands its messages over through a bounded channel. A scan whose
//! client goes away is dropped with the stream (or, moved, finds the channel closed).

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tabula_proto::tabula::tablet::v1 as api;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::read_rows::{Budget, Progress, Scan, Stop};

/// One message of the response.
type Message = Result<api::ReadRowsResponse, Status>;

/// Messages buffered between a scan moved to the blocking pool and the client.
const CHANNEL_MESSAGES: usize = 4;

/// What one step may do: look at 256 rows (rows the engine or the filter empties count too,
/// so thousands of deleted rows cannot hold a worker) and gather 512 KiB of rows (also the
/// most a step holds in memory). A hundred-row scan is one step, and at a few microseconds a
/// row the worker is back to its other requests within about a millisecond.
pub(super) const STEP: Budget = Budget {
    rows: 256,
    bytes: 512 * 1024,
};

/// A step that took longer than this was waiting on the disk (a step's rows from memory take
/// well under a millisecond): the rest of its scan moves to the blocking pool.
const SLOW_STEP: Duration = Duration::from_millis(2);

/// The response stream of one scan (see the module doc).
pub(super) struct ScanStream {
    state: State,
    /// Messages made and not yet taken.
    ready: VecDeque<Message>,
    /// A step longer than this moves the scan (`SLOW_STEP`; tests change it).
    slow_step: Duration,
    /// A step ran since the stream last yielded to the worker.
    stepped: bool,
}

enum State {
    /// Stepped on the worker that polls the stream.
    Stepping(Box<Scan>),
    /// Running on the blocking pool.
    Moved(ReceiverStream<Message>),
    Done,
}

impl ScanStream {
    /// A stream running `scan` in steps (see the module doc).
    pub(super) fn new(scan: Scan) -> ScanStream {
        ScanStream {
            state: State::Stepping(Box::new(scan)),
            ready: VecDeque::new(),
            slow_step: SLOW_STEP,
            stepped: false,
        }
    }

    /// Runs one step, keeping its messages.
    fn step(&mut self) {
        let State::Stepping(scan) = &mut self.state else {
            return;
        };
        let ready = &mut self.ready;
        let started = Instant::now();
        let progress = scan.advance(Some(STEP), &mut |message| {
            ready.push_back(Ok(message));
            Ok(())
        });
        match progress {
            Ok(Progress::Paused) => {
                let took = started.elapsed();
                if took > self.slow_step {
                    tracing::debug!(
                        ?took,
                        "a slow scan step: the scan moves to the blocking pool"
                    );
                    self.move_to_blocking_pool();
                }
                return;
            }
            Ok(Progress::Done) => {}
            // Stepping hands every message to `ready`, which never goes away.
            Err(Stop::Gone) => {}
            Err(Stop::Failed(e)) => self.ready.push_back(Err(e.into())),
        }
        self.state = State::Done;
    }

    /// Hands the rest of the scan to the blocking pool. The task ends when the scan does or
    /// when the client goes away (the channel closes): the stream owns it through the channel.
    fn move_to_blocking_pool(&mut self) {
        if let State::Stepping(scan) = std::mem::replace(&mut self.state, State::Done) {
            let (tx, rx) = mpsc::channel(CHANNEL_MESSAGES);
            tokio::task::spawn_blocking(move || scan.run(tx));
            self.state = State::Moved(ReceiverStream::new(rx));
        }
    }

    /// Whether the scan was moved to the blocking pool.
    #[cfg(test)]
    fn moved(&self) -> bool {
        matches!(self.state, State::Moved(_))
    }
}

impl Stream for ScanStream {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        let this = &mut *self;
        if let Some(message) = this.ready.pop_front() {
            return Poll::Ready(Some(message));
        }
        match &mut this.state {
            State::Done => return Poll::Ready(None),
            State::Moved(rx) => return Pin::new(rx).poll_next(cx),
            State::Stepping(_) => {}
        }
        if std::mem::take(&mut this.stepped) {
            // The last step's messages are taken (or it made none, having only passed over
            // deleted or filtered-out rows): let the worker's other tasks run first.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.step();
        this.stepped = true;
        match this.ready.pop_front() {
            Some(message) => Poll::Ready(Some(message)),
            // Nothing made: the scan ended, moved, or yields before its next step.
            None => Pin::new(this).poll_next(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio_stream::StreamExt as _;

    use super::super::Gate;
    use super::super::read_rows::tests::{keys, scan, served};
    use super::*;

    fn open_gate() -> Arc<Gate> {
        Arc::new(Gate::new(Arc::new(|| true)))
    }

    /// A stream over rows `r0000..r{rows}` (the first `deleted` deleted) moving its scan after
    /// a step longer than `slow_step`.
    fn stream(
        rows: usize,
        deleted: usize,
        gate: Arc<Gate>,
        slow_step: Duration,
    ) -> (tempfile::TempDir, ScanStream) {
        let (dir, served) = served(rows, deleted);
        let mut stream = ScanStream::new(scan(served, gate));
        stream.slow_step = slow_step;
        (dir, stream)
    }

    async fn collect(stream: &mut ScanStream) -> Vec<api::ReadRowsResponse> {
        let mut messages = Vec::new();
        while let Some(message) = stream.next().await {
            messages.push(message.unwrap());
        }
        messages
    }

    fn want(from: usize, to: usize) -> Vec<String> {
        (from..to).map(|i| format!("r{i:04}")).collect()
    }

    #[tokio::test]
    async fn a_long_scan_is_stepped_on_the_worker_in_order() {
        let (_dir, mut stream) = stream(700, 0, open_gate(), Duration::MAX);
        let messages = collect(&mut stream).await;
        assert!(!stream.moved());
        assert_eq!(
            keys(&messages),
            want(0, 700),
            "rows repeated, lost or out of order"
        );
    }

    #[tokio::test]
    async fn a_slow_step_moves_the_rest_of_the_scan_to_the_blocking_pool() {
        let (_dir, mut stream) = stream(700, 0, open_gate(), Duration::ZERO);
        let first = stream.next().await.unwrap().unwrap();
        assert!(stream.moved(), "a step over the limit moves the scan");
        let mut messages = vec![first];
        messages.extend(collect(&mut stream).await);
        assert_eq!(
            keys(&messages),
            want(0, 700),
            "rows repeated, lost or out of order"
        );
    }

    #[tokio::test]
    async fn the_stream_yields_to_the_worker_between_steps() {
        let (_dir, mut stream) = stream(700, 0, open_gate(), Duration::MAX);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut polls = Vec::new();
        let mut messages = Vec::new();
        loop {
            match Pin::new(&mut stream).poll_next(&mut cx) {
                Poll::Ready(Some(m)) => {
                    polls.push('m');
                    messages.push(m.unwrap());
                }
                Poll::Ready(None) => break,
                Poll::Pending => polls.push('y'),
            }
        }
        // 256 rows a step, 100 rows a message (a step's last rows wait for the next): the
        // messages of rows 0-199, a yield, 200-499, a yield, 500-699.
        assert_eq!(polls.iter().collect::<String>(), "mmymmmymm");
        assert_eq!(keys(&messages), want(0, 700));
    }

    #[tokio::test]
    async fn steps_that_find_only_deleted_rows_yield_and_the_scan_goes_on() {
        let (_dir, mut stream) = stream(1000, 900, open_gate(), Duration::MAX);
        // The first steps pass over deleted rows only: the stream yields instead of looping.
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(Pin::new(&mut stream).poll_next(&mut cx).is_pending());
        let messages = collect(&mut stream).await;
        assert_eq!(keys(&messages), want(900, 1000));
    }

    #[tokio::test]
    async fn a_closed_gate_ends_the_stream_with_the_error() {
        let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flag = open.clone();
        let gate = Arc::new(Gate::new(Arc::new(move || {
            flag.load(std::sync::atomic::Ordering::SeqCst)
        })));
        let (_dir, mut stream) = stream(700, 0, gate, Duration::MAX);
        assert!(stream.next().await.unwrap().is_ok());
        open.store(false, std::sync::atomic::Ordering::SeqCst);
        let mut last = None;
        while let Some(message) = stream.next().await {
            last = Some(message);
        }
        let status = last.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    }
}
