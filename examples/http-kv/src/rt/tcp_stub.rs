//! TEMPORARY: the signatures of sim-core's `TcpListener` and `TcpStream`, so that the crate
//! builds before they land. Every call fails; nothing runs on it.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

fn unsupported<T>() -> io::Result<T> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "TCP stub"))
}

/// Stand-in.
pub struct TcpListener;

impl TcpListener {
    /// Stand-in.
    pub async fn bind<A: sim_core::net::ToSocketAddrs>(_: A) -> io::Result<TcpListener> {
        unsupported()
    }
    /// Stand-in.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        unsupported()
    }
}

/// Stand-in.
pub struct TcpStream;

impl TcpStream {
    /// Stand-in.
    pub async fn connect<A: sim_core::net::ToSocketAddrs>(_: A) -> io::Result<TcpStream> {
        unsupported()
    }
    /// Stand-in.
    pub fn set_nodelay(&self, _: bool) -> io::Result<()> {
        unsupported()
    }
}

impl tokio::io::AsyncRead for TcpStream {
    fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, _: &mut tokio::io::ReadBuf<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(unsupported())
    }
}

impl tokio::io::AsyncWrite for TcpStream {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(unsupported())
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(unsupported())
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(unsupported())
    }
}
