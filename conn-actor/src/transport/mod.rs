//! The byte stream under a connection: what the connection actor reads
//! from, writes vectored to, flushes and shuts down, whatever carries it.
//!
//! The actor's close state machine (flush, shut the write side, linger
//! reading, the close timeout) sees only these four operations, so it does
//! not know which transport it has: a TLS layer would wrap the TCP stream
//! and send its `close_notify` as what shutting its write side means, a
//! WebSocket one its Close frame. Framing is not done here: the connection's codec wraps each
//! body as it is handed to [`Transport::poll_write_vectored`].
//!
//! A variant per transport, rather than a trait object, keeps a plain TCP
//! connection's socket inline in the actor (no extra allocation per
//! connection) and each call a direct one; a larger transport is boxed.

use std::io::{self, ErrorKind, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A client connection's byte stream.
pub enum Transport {
    /// Plain TCP.
    Tcp(TcpStream),
}

/// Forwards one call to the variant's tokio `AsyncRead`/`AsyncWrite`.
macro_rules! each {
    ($self:ident, $io:ident => $call:expr) => {
        match $self {
            Transport::Tcp($io) => $call,
        }
    };
}

impl Transport {
    /// Reads into `buf`. `Ok(0)` is the end of the client's data. A layer
    /// that reports a TCP EOF without its own end (`UnexpectedEof`) is
    /// treated alike, so a client that half-closes is still answered.
    pub fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut buf = ReadBuf::new(buf);
        let read = each!(self, io => Pin::new(io).poll_read(cx, &mut buf));
        match read {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(buf.filled().len())),
            Poll::Ready(Err(err)) if err.kind() == ErrorKind::UnexpectedEof => Poll::Ready(Ok(0)),
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Writes from `bufs` in one go where the transport can; returns how
    /// many bytes it took. Bytes a layer took may still wait in its own
    /// buffer: [`Self::poll_flush`] pushes them out.
    pub fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self, io => Pin::new(io).poll_write_vectored(cx, bufs))
    }

    /// Writes what the transport itself still holds.
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, io => Pin::new(io).poll_flush(cx))
    }

    /// Ends the write side after everything written before: TCP sends its
    /// FIN (a layer sends its own end first, then the FIN). Reading goes on
    /// afterwards (the lingering read).
    pub fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, io => Pin::new(io).poll_shutdown(cx))
    }

    /// Writes what the transport takes right now, without waiting: the
    /// caller has no task to wake. The next write through the connection's
    /// driver registers its task again.
    pub fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Tcp(io) => io.try_write_vectored(bufs),
        }
    }

    /// The TCP stream underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Transport::Tcp(io) => io,
        }
    }
}

impl From<TcpStream> for Transport {
    fn from(stream: TcpStream) -> Self {
        Transport::Tcp(stream)
    }
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Transport::Tcp(_) => "tcp",
        };
        f.debug_tuple("Transport").field(&kind).finish()
    }
}
