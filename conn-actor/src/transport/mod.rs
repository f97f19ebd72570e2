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
//! [`tls`] is TLS over TCP; [`ws`] is WebSocket over another transport
//! (TCP, or TLS for `wss`).

pub mod carrier;
mod records;
pub mod tls;
pub mod ws;

use std::io::{self, ErrorKind, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use gateway_metrics::Transport as TransportLabel;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::messages::CloseReason;
use carrier::Carrier;

/// The WebSocket stream as the gateway has it: over TCP or TLS.
pub type WsStream = ws::WsStream<Transport>;

/// A client connection's byte stream.
pub enum Transport {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS 1.2 or 1.3 over TCP, its handshake done.
    Tls(Box<tls::TlsStream>),
    /// WebSocket, after the upgrade.
    Ws(Box<WsStream>),
}

/// Forwards one call to the variant's tokio `AsyncRead`/`AsyncWrite`, or
/// to the WebSocket stream's own method of the same name.
macro_rules! each {
    ($self:ident, $io:ident => $call:expr, $ws:ident => $ws_call:expr) => {
        match $self {
            Transport::Tcp($io) => $call,
            Transport::Tls($io) => $call,
            Transport::Ws($ws) => $ws_call,
        }
    };
}

impl Transport {
    /// Reads into `buf`. `Ok(0)` is the end of the client's data: a TCP
    /// EOF, or for TLS a `close_notify` or a TCP EOF without one (treated
    /// alike, so a client that half-closes is still answered).
    pub fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut buf = ReadBuf::new(buf);
        let read = match self {
            Transport::Tcp(io) => Pin::new(io).poll_read(cx, &mut buf),
            Transport::Tls(io) => Pin::new(io).poll_read(cx, &mut buf),
            Transport::Ws(ws) => return ws.poll_read(cx, buf.initialize_unfilled()),
        };
        match read {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(buf.filled().len())),
            Poll::Ready(Err(err)) if err.kind() == ErrorKind::UnexpectedEof => Poll::Ready(Ok(0)),
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Whether the transport just built keys it can drop while idle (TLS
    /// 1.3's record keys): the connection then goes under its worker's
    /// sweep, which calls [`Self::cool`] every tick.
    pub fn take_warmed(&mut self) -> bool {
        match self {
            Transport::Tcp(_) => false,
            Transport::Tls(tls) => tls.take_warmed(),
            Transport::Ws(ws) => ws.carrier().take_warmed(),
        }
    }

    /// Drops such keys if unused since the last call; returns whether they
    /// are still held.
    pub fn cool(&mut self) -> bool {
        match self {
            Transport::Tcp(_) => false,
            Transport::Tls(tls) => tls.cool(),
            Transport::Ws(ws) => ws.carrier().cool(),
        }
    }

    /// Writes from `bufs` in one go where the transport can; returns how
    /// many bytes it took. Bytes a layer took (TLS records) may still wait
    /// in its own buffer: [`Self::poll_flush`] pushes them out.
    pub fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self {
            // One slice is a `send`, which the kernel serves with less
            // work than a `writev`.
            Transport::Tcp(io) if bufs.len() == 1 => Pin::new(io).poll_write(cx, &bufs[0]),
            _ => {
                each!(self, io => Pin::new(io).poll_write_vectored(cx, bufs), ws => ws.poll_write_vectored(cx, bufs))
            }
        }
    }

    /// Writes what the transport itself still holds.
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, io => Pin::new(io).poll_flush(cx), ws => ws.poll_flush(cx))
    }

    /// Ends the write side after everything written before: TCP sends its
    /// FIN; TLS sends `close_notify`, flushes, then shuts the TCP write
    /// side; WebSocket sends its Close frame first. Reading goes on
    /// afterwards (the lingering read).
    pub fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, io => Pin::new(io).poll_shutdown(cx), ws => ws.poll_shutdown(cx))
    }

    /// Writes what the transport takes right now, without waiting: the
    /// caller has no task to wake. The next write through the connection's
    /// driver registers its task again.
    pub fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Tcp(io) if bufs.len() == 1 => io.try_write(&bufs[0]),
            Transport::Tcp(io) => io.try_write_vectored(bufs),
            Transport::Ws(ws) => ws.try_write_vectored(bufs),
            Transport::Tls(_) => {
                let mut cx = Context::from_waker(Waker::noop());
                match self.poll_write_vectored(&mut cx, bufs) {
                    Poll::Ready(result) => result,
                    Poll::Pending => Err(ErrorKind::WouldBlock.into()),
                }
            }
        }
    }

    /// Which transport this is, as metrics and the admin API name it.
    pub fn label(&self) -> TransportLabel {
        match self {
            // TLS on the client listener is still the `tcp` transport.
            Transport::Tcp(_) | Transport::Tls(_) => TransportLabel::Tcp,
            Transport::Ws(_) => TransportLabel::Ws,
        }
    }

    /// A close began for `reason`: a layer with an end of its own (the
    /// WebSocket Close frame) notes what that end will say.
    pub(crate) fn closing(&mut self, reason: CloseReason) {
        if let Transport::Ws(ws) = self {
            ws.set_close_code(ws::close_code(reason));
        }
    }

    /// Writes what the transport itself has to say between two whole
    /// frames (WebSocket pongs and pings); the caller is at such a
    /// boundary.
    pub(crate) fn poll_write_control(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Transport::Ws(ws) if ws.has_control() => ws.poll_write_control(cx),
            _ => Poll::Ready(Ok(())),
        }
    }

    /// A connection closed at once (a slow consumer): a layer's end goes
    /// out too if the socket takes it without waiting.
    pub(crate) fn end_now(&mut self) {
        if let Transport::Ws(ws) = self {
            ws.try_close_now();
        }
    }
}

/// As a tokio stream, for code that drives a transport with `async`
/// (a refusal, the admin HTTP server over TLS); reads keep the tokio
/// meaning of each layer (a TLS EOF without `close_notify` is an error).
impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(io) => Pin::new(io).poll_read(cx, buf),
            Transport::Tls(io) => Pin::new(io).poll_read(cx, buf),
            Transport::Ws(ws) => {
                let n = std::task::ready!(ws.poll_read(cx, buf.initialize_unfilled()))?;
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Transport::poll_write_vectored(self.get_mut(), cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Transport::poll_write_vectored(self.get_mut(), cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Transport::poll_flush(self.get_mut(), cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Transport::poll_shutdown(self.get_mut(), cx)
    }
}

impl From<TcpStream> for Transport {
    fn from(stream: TcpStream) -> Self {
        Transport::Tcp(stream)
    }
}

impl From<tls::TlsStream> for Transport {
    fn from(stream: tls::TlsStream) -> Self {
        Transport::Tls(Box::new(stream))
    }
}

/// A WebSocket rides on a transport through its inherent methods.
impl Carrier for Transport {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Transport::poll_read(self, cx, buf)
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Transport::poll_write_vectored(self, cx, bufs)
    }

    fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        Transport::try_write_vectored(self, bufs)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Transport::poll_flush(self, cx)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Transport::poll_shutdown(self, cx)
    }
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Transport")
            .field(&self.label().as_str())
            .finish()
    }
}
