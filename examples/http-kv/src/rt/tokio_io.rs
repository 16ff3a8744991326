//! `TokioIo`: hyper's I/O traits over tokio's, as `hyper_util::rt::TokioIo` provides them.
//!
//! Written here rather than taken from `hyper-util` because its `tokio` feature also switches
//! on tokio's runtime and timer for every crate of the build, sim-core included; the simulation
//! must never carry them.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

/// A tokio-style stream with hyper's `Read` and `Write`.
#[derive(Debug)]
pub struct TokioIo<T> {
    inner: T,
}

impl<T> TokioIo<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Self {
        TokioIo { inner }
    }

    /// The wrapped stream.
    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// Unwraps the stream.
    pub fn into_inner(self) -> T {
        self.inner
    }
}

/// Bytes read per poll at most (a copy through this buffer keeps the adapter free of
/// `unsafe`; the simulation does not need the last copy saved).
const READ_CHUNK_BYTES: usize = 8192;

impl<T: tokio::io::AsyncRead + Unpin> hyper::rt::Read for TokioIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let mut chunk = [0u8; READ_CHUNK_BYTES];
        let len = buf.remaining().min(READ_CHUNK_BYTES);
        let mut read = tokio::io::ReadBuf::new(&mut chunk[..len]);
        ready!(Pin::new(&mut self.inner).poll_read(cx, &mut read))?;
        buf.put_slice(read.filled());
        Poll::Ready(Ok(()))
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> hyper::rt::Write for TokioIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
