//! WebSocket under a connection (contract section 12): the transport of a
//! client that came through the WebSocket listener, after the upgrade.
//!
//! One WebSocket message is one frame. Going out, the connection's codec
//! ([`FrameCodec::websocket`](crate::codec::FrameCodec::websocket)) puts an
//! unmasked message header before each body; coming in, the connection
//! runs this stream's `ws-protocol` decoder over what it reads and acts on
//! whole messages and control frames (`connection/input.rs`). This stream
//! reads, writes and shuts down, and knows nothing of the connection.
//! What only this transport writes (pongs, the server's pings, the Close
//! frame) waits in a small control queue and goes out between two whole
//! messages, never inside one.
//!
//! The close state machine stays in charge of when the Close frame goes
//! out: shutting the write side (`WsStream::poll_shutdown`) is writing
//! the Close frame, with the status code of the close reason, and then the
//! TCP FIN. A client's own Close is answered that way too, after what was
//! queued for it, echoing its code; the connection then closes the socket
//! as soon as its Close is written, the closing handshake being complete.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::task::{Context, Poll};

use bytes::Bytes;
use ws_protocol::{CloseCode, Decoder, encode};

use super::carrier::Carrier;
use crate::messages::CloseReason;

/// The status code of the Close frame that ends a close for `reason`: 1000
/// for `BYE`, 1001 for `shutdown`, 1008 for `unauthorized` and `expired`,
/// 1009 for a message too large, 1013 for `slow`, 1000 for a client that
/// ended without a Close of its own, 4000 otherwise.
pub fn close_code(reason: CloseReason) -> CloseCode {
    match reason {
        CloseReason::Quit | CloseReason::Client => CloseCode::Normal,
        CloseReason::Shutdown => CloseCode::Away,
        CloseReason::Unauthorized | CloseReason::Expired => CloseCode::Policy,
        CloseReason::FrameTooLarge => CloseCode::Size,
        CloseReason::Slow => CloseCode::Again,
        _ => CloseCode::Library(4000),
    }
}

/// The opcodes of the control frames the server queues (RFC 6455
/// section 5.2).
const OPCODE_PING: u8 = 0x9;
const OPCODE_PONG: u8 = 0xA;

/// A WebSocket connection's stream over `S`, what carries it (in the
/// gateway a `Transport`: TCP, or TLS for `wss`), boxed inside
/// `Transport::Ws`.
pub struct WsStream<S> {
    /// What carries the WebSocket (TCP, or TLS for `wss`).
    inner: S,
    /// Client frames in; taken out while it runs so that the connection can
    /// act on each message.
    pub(crate) decoder: Decoder,
    /// Bytes that came with the upgrade request, read before the socket.
    early: Vec<u8>,
    /// Control frames waiting for a message boundary, the front one
    /// possibly partly written: at most one pong, one ping and the Close
    /// besides that one (each at most 127 bytes), so it is bounded.
    control: VecDeque<Bytes>,
    control_written: usize,
    /// The code the Close frame will carry; the first one set wins.
    close_code: Option<CloseCode>,
    /// The Close frame is in the control queue (or written).
    close_queued: bool,
    /// The client sent its Close frame.
    pub(crate) peer_closed: bool,
}

impl<S: Carrier> WsStream<S> {
    /// The stream of a client upgraded on `inner`; `early` holds the bytes
    /// read after its request, `max_message` is `--max-frame-bytes`.
    pub fn new(inner: S, early: Vec<u8>, max_message: usize) -> Self {
        Self {
            inner,
            decoder: Decoder::new(max_message),
            early,
            control: VecDeque::new(),
            control_written: 0,
            close_code: None,
            close_queued: false,
            peer_closed: false,
        }
    }

    /// The transport underneath and the bytes that came with the upgrade
    /// request, not yet read: for a client refused right after its
    /// upgrade.
    pub fn into_parts(self) -> (S, Vec<u8>) {
        (self.inner, self.early)
    }

    /// The transport underneath.
    pub(crate) fn carrier(&mut self) -> &mut S {
        &mut self.inner
    }

    pub(crate) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if !self.early.is_empty() {
            let n = self.early.len().min(buf.len());
            buf[..n].copy_from_slice(&self.early[..n]);
            self.early.drain(..n);
            if self.early.is_empty() {
                self.early = Vec::new();
            }
            return Poll::Ready(Ok(n));
        }
        self.inner.poll_read(cx, buf)
    }

    /// Writes data; a control frame already started is finished first, so
    /// nothing goes inside it.
    pub(crate) fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.control_written > 0 {
            match self.poll_write_control(cx) {
                Poll::Ready(Ok(())) => {}
                other => return other.map(|r| r.map(|()| 0)),
            }
        }
        self.inner.poll_write_vectored(cx, bufs)
    }

    /// Writes the waiting control frames; the caller is between two whole
    /// messages.
    pub(crate) fn poll_write_control(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(front) = self.control.front() {
            let rest = [IoSlice::new(&front[self.control_written..])];
            match self.inner.poll_write_vectored(cx, &rest) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.control_written += n;
                    if self.control_written == front.len() {
                        self.control.pop_front();
                        self.control_written = 0;
                    }
                }
            }
        }
        if self.control.capacity() > 4 {
            self.control = VecDeque::new();
        }
        Poll::Ready(Ok(()))
    }

    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_flush(cx)
    }

    /// The Close frame (once), then the end of the write side underneath.
    pub(crate) fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.close_queued {
            self.close_queued = true;
            let code = self.close_code.unwrap_or(CloseCode::Library(4000));
            self.control.push_back(encode::close(code));
        }
        match self.poll_write_control(cx) {
            Poll::Ready(Ok(())) => self.inner.poll_shutdown(cx),
            other => other,
        }
    }

    pub(crate) fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if self.control_written > 0 {
            // Never inside a control frame.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.inner.try_write_vectored(bufs)
    }

    /// The Close frame, written only if the socket takes it whole now: a
    /// slow consumer's, after its `KICK slow`.
    pub(crate) fn try_close_now(&mut self) {
        if self.control_written == 0 && !self.close_queued {
            self.close_queued = true;
            let frame = encode::close(self.close_code.unwrap_or(CloseCode::Again));
            let _ = self.inner.try_write_vectored(&[IoSlice::new(&frame)]);
        }
    }

    /// Sets the Close frame's code unless one is set already.
    pub(crate) fn set_close_code(&mut self, code: CloseCode) {
        self.close_code.get_or_insert(code);
    }

    /// Queues a ping (the client has been silent for a while), unless one
    /// already waits: a second would say nothing more.
    pub(crate) fn queue_ping(&mut self) {
        if !self.close_queued && self.waiting(OPCODE_PING).is_none() {
            self.control.push_back(encode::ping(b""));
        }
    }

    /// Queues the answer to a client's ping. A pong that still waits is
    /// replaced rather than joined (RFC 6455 section 5.5.3: the latest
    /// answers for all), so a client that sends pings and never reads holds
    /// at most one pong here, whatever it sends.
    pub(crate) fn queue_pong(&mut self, payload: &[u8]) {
        if self.close_queued {
            return;
        }
        let pong = encode::pong(payload);
        match self.waiting(OPCODE_PONG) {
            Some(at) => self.control[at] = pong,
            None => self.control.push_back(pong),
        }
    }

    /// Where a control frame with `opcode` waits, not yet started.
    fn waiting(&self, opcode: u8) -> Option<usize> {
        let started = usize::from(self.control_written > 0);
        (started..self.control.len()).find(|&i| self.control[i].first() == Some(&(0x80 | opcode)))
    }

    /// Whether control frames wait to be written.
    pub(crate) fn has_control(&self) -> bool {
        !self.control.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_pongs_are_replaced_not_queued() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("runtime");
        let _in_runtime = rt.enter();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        client.set_nonblocking(true).expect("nonblocking");
        let tcp = tokio::net::TcpStream::from_std(client).expect("tokio");
        let mut ws = WsStream::new(crate::Transport::Tcp(tcp), Vec::new(), 1024);
        for i in 0..10_000u32 {
            ws.queue_pong(&i.to_be_bytes());
            ws.queue_ping();
        }
        assert_eq!(ws.control.len(), 2, "{:?}", ws.control);
        // The latest pong is the one kept.
        assert_eq!(ws.control[0], encode::pong(&9_999u32.to_be_bytes()));
        assert_eq!(ws.control[1], encode::ping(b""));
        // A pong already partly written is finished, and another waits.
        ws.control_written = 1;
        ws.queue_pong(b"new");
        ws.queue_pong(b"newer");
        assert_eq!(ws.control.len(), 3);
        assert_eq!(ws.control[0], encode::pong(&9_999u32.to_be_bytes()));
        assert_eq!(ws.control[2], encode::pong(b"newer"));
    }

    #[test]
    fn each_close_reason_has_its_status_code() {
        let check =
            |reason, code: u16| assert_eq!(u16::from(close_code(reason)), code, "{reason:?}");
        check(CloseReason::Quit, 1000);
        check(CloseReason::Client, 1000);
        check(CloseReason::Shutdown, 1001);
        check(CloseReason::Unauthorized, 1008);
        check(CloseReason::Expired, 1008);
        check(CloseReason::FrameTooLarge, 1009);
        check(CloseReason::Slow, 1013);
        check(CloseReason::Replaced, 4000);
        check(CloseReason::Admin, 4000);
        check(CloseReason::Idle, 4000);
        check(CloseReason::Error, 4000);
    }
}
