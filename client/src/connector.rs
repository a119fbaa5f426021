//! `Connector`: how a channel dials a server — a TCP connection with Nagle off, its writes
//! wrapped in [`Coalescing`] so that a small call's HEADERS and DATA frames leave in one
//! `write` instead of two (see `tabula_common::coalesce`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use tabula_common::Coalescing;
use tokio::net::TcpStream;
use tonic::codegen::http::Uri;

/// Dials the `http://host:port` URIs of `Channels`' endpoints.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Connector;

/// The stream a channel runs its HTTP/2 connection over.
pub(crate) type Connection = TokioIo<Coalescing<TcpStream>>;

impl tower_service::Service<Uri> for Connector {
    type Response = Connection;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Connection>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(async move {
            let (host, port) = host_port(&uri)?;
            let stream = TcpStream::connect((host, port)).await?;
            stream.set_nodelay(true)?;
            Ok(TokioIo::new(Coalescing::new(stream)))
        })
    }
}

/// The host (without an IPv6 literal's brackets) and port of `uri`; the port is required,
/// as every address Tabula dials names one.
fn host_port(uri: &Uri) -> io::Result<(&str, u16)> {
    let host = uri.host().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{uri} names no host"))
    })?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = uri.port_u16().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{uri} names no port"))
    })?;
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_come_from_the_uri() {
        let uri: Uri = "http://127.0.0.1:7001".parse().unwrap();
        assert_eq!(host_port(&uri).unwrap(), ("127.0.0.1", 7001));
        let uri: Uri = "http://[::1]:9".parse().unwrap();
        assert_eq!(host_port(&uri).unwrap(), ("::1", 9));
        let uri: Uri = "http://localhost:80/".parse().unwrap();
        assert_eq!(host_port(&uri).unwrap(), ("localhost", 80));
        let uri: Uri = "http://localhost".parse().unwrap();
        assert_eq!(
            host_port(&uri).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
