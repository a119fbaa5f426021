//! The bare echo server: `EchoService` on 127.0.0.1 in this process, doing no work beyond
//! copying bytes. Owned: [`EchoServer::stop`] (or dropping it) ends its task.

use std::net::SocketAddr;
use std::pin::Pin;

use anyhow::Context;
use tabula_proto::tabula::bench::v1::echo_service_server::{EchoService, EchoServiceServer};
use tabula_proto::tabula::bench::v1::{EchoRequest, EchoResponse, StreamChunk, StreamRequest};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// Largest `size` of one streamed message (and of an echoed payload), 4 MiB.
pub(super) const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// The service: echoes, and streams a fixed buffer `count` times.
#[derive(Debug, Default)]
struct Echo;

type ChunkStream = Pin<Box<dyn Stream<Item = Result<StreamChunk, Status>> + Send>>;

#[tonic::async_trait]
impl EchoService for Echo {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        Ok(Response::new(EchoResponse {
            payload: request.into_inner().payload,
        }))
    }

    type StreamStream = ChunkStream;

    async fn stream(
        &self,
        request: Request<StreamRequest>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let StreamRequest { count, size } = request.into_inner();
        let size = usize::try_from(size)
            .ok()
            .filter(|s| *s <= MAX_MESSAGE_BYTES)
            .ok_or_else(|| Status::invalid_argument("size over 4 MiB"))?;
        let chunk = vec![b's'; size];
        let chunks = tokio_stream::iter((0..count).map(move |_| {
            Ok(StreamChunk {
                payload: chunk.clone(),
            })
        }));
        Ok(Response::new(Box::pin(chunks)))
    }
}

/// A running echo server.
pub(super) struct EchoServer {
    pub(super) addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl EchoServer {
    /// Serves on a free port of 127.0.0.1.
    pub(super) async fn start() -> anyhow::Result<EchoServer> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the echo server")?;
        let addr = listener.local_addr().context("the echo server's address")?;
        let stop = CancellationToken::new();
        let service = EchoServiceServer::new(Echo)
            .max_decoding_message_size(MAX_MESSAGE_BYTES + 1024)
            .max_encoding_message_size(MAX_MESSAGE_BYTES + 1024);
        let stopped = stop.clone();
        // Accepted sockets do not inherit the builder's `tcp_nodelay` when the server is given
        // its own incoming stream: without this, Nagle's algorithm and delayed ACKs cap the
        // echo at a few hundred calls per second.
        let incoming = TcpListenerStream::new(listener).map(|accepted| {
            accepted.and_then(|stream| {
                stream.set_nodelay(true)?;
                Ok(stream)
            })
        });
        let task = tokio::spawn(
            tonic::transport::Server::builder()
                .tcp_nodelay(true)
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async move { stopped.cancelled().await }),
        );
        Ok(EchoServer { addr, stop, task })
    }

    /// Stops serving and waits for the server's task.
    pub(super) async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task
            .await
            .context("the echo server's task")?
            .context("the echo server")
    }
}
