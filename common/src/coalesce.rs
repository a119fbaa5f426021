//! `Coalescing`: a byte stream whose flushes wait one turn of the scheduler, so that frames
//! queued by other tasks in that turn leave in the same `write` (Netty's
//! `FlushConsolidationHandler` does the same).
//!
//! Why: hyper's HTTP/2 client sends a unary call's HEADERS frame as soon as the connection task
//! runs, then the DATA frame in a second flush, once the body's own task has been granted send
//! capacity. So every small call costs two `writev`s (and two wake-ups of the peer), ~10 us of
//! loopback TCP each. Between a flush and the next poll of the connection task, the body task
//! queues its DATA frame, so deferring the flush by one turn sends both in one `write`.
//!
//! How: writes go into a buffer of at most `BUFFER_LIMIT` (64 KiB) (a write that would overflow
//! it first drains the buffer; one larger than the limit goes straight through). The first
//! `poll_flush` after bytes were buffered wakes its own task and returns `Pending` (the task
//! goes to the back of the run queue); the next one writes the buffer out and flushes. No timer:
//! a flush is late by one turn of the scheduler, never by a wall-clock wait. Reads pass
//! through untouched.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// Most bytes held back for one flush; beyond that, writes go out at once.
const BUFFER_LIMIT: usize = 64 * 1024;

/// `io` with its flushes deferred by one turn of the scheduler (module docs).
#[derive(Debug)]
pub struct Coalescing<T> {
    io: T,
    /// Bytes accepted but not yet written to `io`; `written` of them went out already.
    buf: Vec<u8>,
    written: usize,
    /// A flush returned `Pending` to let other tasks add to `buf`; the next one writes.
    deferred: bool,
}

impl<T> Coalescing<T> {
    /// Wraps `io`.
    pub fn new(io: T) -> Self {
        Coalescing {
            io,
            buf: Vec::new(),
            written: 0,
            deferred: false,
        }
    }
}

impl<T: AsyncWrite + Unpin> Coalescing<T> {
    /// Writes every buffered byte to `io`.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.buf[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.buf.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Accepts `len` bytes from `bufs` into the buffer, or passes them straight on if they
    /// would not fit even in an empty one.
    fn poll_accept(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
        len: usize,
    ) -> Poll<io::Result<usize>> {
        if self.buf.len() + len > BUFFER_LIMIT {
            ready!(self.poll_drain(cx))?;
            if len > BUFFER_LIMIT {
                return Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
            }
        }
        for b in bufs {
            self.buf.extend_from_slice(b);
        }
        Poll::Ready(Ok(len))
    }
}

impl<T: Connected> Connected for Coalescing<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Coalescing<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalescing<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_accept(cx, &[IoSlice::new(buf)], buf.len())
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len = bufs.iter().map(|b| b.len()).sum();
        self.get_mut().poll_accept(cx, bufs, len)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.buf.len() > this.written && !this.deferred {
            this.deferred = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        ready!(this.poll_drain(cx))?;
        this.deferred = false;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};

    use proptest::prelude::*;

    use super::*;

    /// Records every `write` it gets; accepts at most `per_write` bytes each, and returns
    /// `Pending` (waking at once) on every `pending_every`-th call when that is 2 or more.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
        per_write: usize,
        pending_every: usize,
        calls: usize,
        flushes: usize,
        shut: bool,
        /// Every write fails with `BrokenPipe`.
        broken: bool,
    }

    impl Recorder {
        fn new(per_write: usize, pending_every: usize) -> Self {
            Recorder {
                per_write,
                pending_every,
                ..Recorder::default()
            }
        }

        fn bytes(&self) -> Vec<u8> {
            self.writes.concat()
        }
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            if this.broken {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            this.calls += 1;
            if this.pending_every > 1 && this.calls.is_multiple_of(this.pending_every) {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let n = buf.len().min(this.per_write);
            this.writes.push(buf[..n].to_vec());
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().flushes += 1;
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().shut = true;
            Poll::Ready(Ok(()))
        }
    }

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<CountingWaker>, Waker) {
        let count = Arc::new(CountingWaker(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    fn write(c: &mut Coalescing<Recorder>, cx: &mut Context<'_>, data: &[u8]) -> usize {
        loop {
            if let Poll::Ready(n) = Pin::new(&mut *c).poll_write(cx, data) {
                return n.unwrap();
            }
        }
    }

    fn flush(c: &mut Coalescing<Recorder>, cx: &mut Context<'_>) -> usize {
        let mut pendings = 0;
        while Pin::new(&mut *c).poll_flush(cx).is_pending() {
            pendings += 1;
        }
        pendings
    }

    #[test]
    fn a_flush_waits_one_turn_then_sends_everything_in_one_write() {
        let (woken, w) = waker();
        let mut cx = Context::from_waker(&w);
        let mut c = Coalescing::new(Recorder::new(usize::MAX, 0));
        assert_eq!(write(&mut c, &mut cx, b"headers"), 7);
        let first = Pin::new(&mut c).poll_flush(&mut cx);
        assert!(first.is_pending(), "the first flush is deferred");
        assert_eq!(woken.0.load(Ordering::SeqCst), 1, "and wakes its own task");
        assert!(
            c.io.writes.is_empty(),
            "nothing written before the next turn"
        );
        // Another task queues more in between; the next flush sends both at once.
        assert_eq!(write(&mut c, &mut cx, b"+data"), 5);
        assert!(Pin::new(&mut c).poll_flush(&mut cx).is_ready());
        assert_eq!(c.io.writes, vec![b"headers+data".to_vec()]);
        assert_eq!(c.io.flushes, 1);
        // With nothing buffered, a flush goes straight through.
        assert!(Pin::new(&mut c).poll_flush(&mut cx).is_ready());
        assert_eq!(c.io.flushes, 2);
        assert_eq!(woken.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn vectored_writes_are_joined() {
        let (_, w) = waker();
        let mut cx = Context::from_waker(&w);
        let mut c = Coalescing::new(Recorder::new(usize::MAX, 0));
        let bufs = [IoSlice::new(b"ab"), IoSlice::new(b""), IoSlice::new(b"cde")];
        assert!(c.is_write_vectored());
        let n = Pin::new(&mut c).poll_write_vectored(&mut cx, &bufs);
        assert!(matches!(n, Poll::Ready(Ok(5))));
        assert_eq!(flush(&mut c, &mut cx), 1);
        assert_eq!(c.io.writes, vec![b"abcde".to_vec()]);
    }

    #[test]
    fn the_buffer_is_bounded_and_large_writes_pass_through() {
        let (_, w) = waker();
        let mut cx = Context::from_waker(&w);
        let mut c = Coalescing::new(Recorder::new(usize::MAX, 0));
        let small = vec![1u8; BUFFER_LIMIT - 10];
        write(&mut c, &mut cx, &small);
        assert!(c.io.writes.is_empty());
        // Does not fit beside what is buffered: the buffer goes out first, then this waits.
        write(&mut c, &mut cx, &[2u8; 20]);
        assert_eq!(c.io.writes, vec![small.clone()]);
        assert!(c.buf.len() <= BUFFER_LIMIT);
        // Larger than the whole buffer: what is buffered goes out, then this, unbuffered.
        let big = vec![3u8; BUFFER_LIMIT + 1];
        assert_eq!(write(&mut c, &mut cx, &big), big.len());
        assert_eq!(c.io.writes, vec![small, vec![2u8; 20], big]);
        assert!(c.buf.is_empty());
    }

    #[test]
    fn shutdown_writes_what_is_buffered_first() {
        let (_, w) = waker();
        let mut cx = Context::from_waker(&w);
        let mut c = Coalescing::new(Recorder::new(3, 0));
        write(&mut c, &mut cx, b"goaway frame");
        assert!(Pin::new(&mut c).poll_shutdown(&mut cx).is_ready());
        assert_eq!(c.io.bytes(), b"goaway frame");
        assert!(c.io.shut);
    }

    #[test]
    fn a_failed_write_is_reported_by_the_flush() {
        let (_, w) = waker();
        let mut cx = Context::from_waker(&w);
        let mut c = Coalescing::new(Recorder {
            broken: true,
            ..Recorder::new(usize::MAX, 0)
        });
        assert!(matches!(
            Pin::new(&mut c).poll_write(&mut cx, b"x"),
            Poll::Ready(Ok(1))
        ));
        assert!(Pin::new(&mut c).poll_flush(&mut cx).is_pending());
        match Pin::new(&mut c).poll_flush(&mut cx) {
            Poll::Ready(Err(e)) => assert_eq!(e.kind(), io::ErrorKind::BrokenPipe),
            other => panic!("expected the write's error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn bytes_round_trip_through_a_real_socket() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let mut socket = Coalescing::new(socket);
            let mut got = Vec::new();
            socket.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut c = Coalescing::new(tokio::net::TcpStream::connect(addr).await.unwrap());
        let mut sent = Vec::new();
        for i in 0..200u32 {
            let chunk = vec![(i % 251) as u8; (i as usize * 997) % 70_000];
            c.write_all(&chunk).await.unwrap();
            sent.extend_from_slice(&chunk);
            if i % 7 == 0 {
                c.flush().await.unwrap();
            }
        }
        c.shutdown().await.unwrap();
        assert_eq!(reader.await.unwrap(), sent);
    }

    proptest! {
        /// Whatever the sizes, the inner stream's short writes and `Pending`s, every byte
        /// arrives once and in order, and a completed flush leaves nothing buffered.
        #[test]
        fn every_byte_arrives_in_order(
            ops in prop::collection::vec((0usize..3 * BUFFER_LIMIT / 2, any::<bool>()), 1..40),
            per_write in 1usize..100_000,
            pending_every in 0usize..5,
        ) {
            let (_, w) = waker();
            let mut cx = Context::from_waker(&w);
            let mut c = Coalescing::new(Recorder::new(per_write, pending_every));
            let mut sent = Vec::new();
            for (i, (len, then_flush)) in ops.into_iter().enumerate() {
                let chunk: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
                let mut rest = &chunk[..];
                while !rest.is_empty() {
                    let n = write(&mut c, &mut cx, rest);
                    prop_assert!(n > 0);
                    rest = &rest[n..];
                }
                sent.extend_from_slice(&chunk);
                prop_assert!(c.buf.len() <= BUFFER_LIMIT);
                if then_flush {
                    flush(&mut c, &mut cx);
                    prop_assert_eq!(c.io.bytes(), sent.clone());
                }
            }
            flush(&mut c, &mut cx);
            prop_assert_eq!(c.io.bytes(), sent);
        }
    }
}
