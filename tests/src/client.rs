//! A protocol client on a blocking std `TcpStream` (contract sections 2, 3, 5).
//!
//! It sends frames or raw bytes, reads the next frame with a timeout, and
//! tells apart the ways a connection can end: a clean EOF after the last frame
//! ([`Event::Eof`]), an EOF in the middle of a frame ([`Event::Truncated`]) and a
//! reset ([`Event::Reset`]). Tests that promise "never a reset" fail on the
//! last two. Every socket has read and write timeouts, so a hung gateway fails
//! a test instead of hanging it.
//!
//! The same client speaks over TLS ([`Client::tls`]): then [`Event::Eof`]
//! means the server's `close_notify` followed by the TCP EOF, and an EOF
//! without `close_notify`, or bytes after it, is an [`Event::Error`].

use crate::tls::{ClientTls, TlsWire};
use crate::writer::Duplex;
use crate::{FRAME_TIMEOUT, Framing, show};
use socket2::{Domain, SockRef, Socket, Type};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// What one read of the next frame found.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// One whole frame, as sent.
    Frame(Vec<u8>),
    /// The server shut its write side after the last whole frame.
    Eof,
    /// The server shut its write side in the middle of a frame.
    Truncated(Vec<u8>),
    /// The connection was reset (ECONNRESET).
    Reset,
    /// Nothing whole arrived in time.
    Timeout,
    /// Any other socket error.
    Error(String),
}

impl Event {
    /// A one-line description for assertion messages.
    pub fn describe(&self) -> String {
        match self {
            Event::Frame(frame) => format!("frame `{}`", show(frame)),
            Event::Eof => "EOF".to_string(),
            Event::Truncated(rest) => format!("EOF inside a frame, after `{}`", show(rest)),
            Event::Reset => "a connection reset (ECONNRESET)".to_string(),
            Event::Timeout => "nothing (timed out)".to_string(),
            Event::Error(e) => format!("socket error: {e}"),
        }
    }
}

fn set_options(stream: &TcpStream) {
    stream.set_nodelay(true).expect("TCP_NODELAY");
    stream
        .set_read_timeout(Some(FRAME_TIMEOUT))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(FRAME_TIMEOUT))
        .expect("write timeout");
}

/// How a connection read to its end ended: every event but [`Event::Frame`].
pub type End = Event;

/// The byte stream under a client: plain TCP, or TLS over it.
trait Wire: Read + Write + Send {
    /// The TCP socket underneath.
    fn tcp(&self) -> &TcpStream;
    /// Ends this side's writing: a FIN, after `close_notify` over TLS.
    fn end_writing(&mut self) -> io::Result<()>;
    fn is_tls(&self) -> bool;
}

impl Wire for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }

    fn end_writing(&mut self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }

    fn is_tls(&self) -> bool {
        false
    }
}

impl Wire for TlsWire {
    fn tcp(&self) -> &TcpStream {
        TlsWire::tcp(self)
    }

    fn end_writing(&mut self) -> io::Result<()> {
        TlsWire::end_writing(self)
    }

    fn is_tls(&self) -> bool {
        true
    }
}

/// One client connection speaking one framing.
pub struct Client {
    stream: Box<dyn Wire>,
    framing: Framing,
    buf: Vec<u8>,
    start: usize,
    sync_seq: u64,
}

impl Client {
    /// Connects to `addr` with default socket options.
    pub fn connect(addr: SocketAddr, framing: Framing) -> Client {
        let stream = TcpStream::connect_timeout(&addr, FRAME_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        Client::from_stream(stream, framing)
    }

    /// Connects with a small receive buffer, for clients that are meant to
    /// fall behind (slow consumers, drains that cannot flush).
    pub fn connect_small_rcvbuf(addr: SocketAddr, framing: Framing, rcvbuf: usize) -> Client {
        Client::from_stream(small_rcvbuf(addr, rcvbuf), framing)
    }

    /// Connects from the loopback address `source` (any `127.x.y.z`), for
    /// tests of per-address limits.
    pub fn connect_from(addr: SocketAddr, source: std::net::IpAddr, framing: Framing) -> Client {
        Client::from_stream(bound_to(addr, source), framing)
    }

    /// Connects over TLS and completes the handshake; panics if it fails.
    pub fn tls(addr: SocketAddr, framing: Framing, tls: &ClientTls) -> Client {
        let stream = TcpStream::connect_timeout(&addr, FRAME_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        Client::tls_over(stream, framing, tls)
    }

    /// Runs a TLS handshake over a connected socket; panics if it fails.
    pub fn tls_over(stream: TcpStream, framing: Framing, tls: &ClientTls) -> Client {
        set_options(&stream);
        let stream = tls
            .handshake(stream)
            .unwrap_or_else(|e| panic!("TLS handshake: {e}"));
        Client::with_wire(Box::new(TlsWire::new(stream)), framing)
    }

    /// Like [`Client::connect_small_rcvbuf`], over TLS.
    pub fn tls_small_rcvbuf(
        addr: SocketAddr,
        framing: Framing,
        rcvbuf: usize,
        tls: &ClientTls,
    ) -> Client {
        Client::tls_over(small_rcvbuf(addr, rcvbuf), framing, tls)
    }

    fn from_stream(stream: TcpStream, framing: Framing) -> Client {
        set_options(&stream);
        Client::with_wire(Box::new(stream), framing)
    }

    fn with_wire(stream: Box<dyn Wire>, framing: Framing) -> Client {
        Client {
            stream,
            framing,
            buf: Vec::new(),
            start: 0,
            sync_seq: 0,
        }
    }

    /// The framing this client speaks.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// The local address of this connection.
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.tcp().local_addr().expect("local address")
    }

    /// A second handle on the socket, for a writer thread (plain TCP only:
    /// a TLS stream cannot be written from two places).
    pub fn writer(&self) -> TcpStream {
        assert!(!self.stream.is_tls(), "a TLS client has no second writer");
        self.stream.tcp().try_clone().expect("clone the socket")
    }

    /// Sends one frame; panics if the write fails.
    pub fn send(&mut self, frame: impl AsRef<[u8]>) {
        let frame = frame.as_ref();
        self.try_send(frame)
            .unwrap_or_else(|e| panic!("send `{}`: {e}", show(frame)));
    }

    /// Sends one frame, reporting a failed write.
    pub fn try_send(&mut self, frame: &[u8]) -> io::Result<()> {
        let wire = self.framing.encode(frame);
        self.stream.write_all(&wire)
    }

    /// Sends many frames in one write.
    pub fn send_all<I, F>(&mut self, frames: I)
    where
        I: IntoIterator<Item = F>,
        F: AsRef<[u8]>,
    {
        let wire = self.framing.encode_all(frames);
        self.send_raw(&wire);
    }

    /// Sends bytes as they are, with no framing added.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("send {} raw bytes: {e}", bytes.len()));
    }

    /// Sends bytes as they are, reporting a failed write.
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Sends bytes one per write, each its own TCP segment where possible.
    pub fn send_bytewise(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.send_raw(&[b]);
            self.stream.flush().expect("flush");
        }
    }

    /// Shuts down this side's writing; the server reads EOF.
    pub fn shutdown_write(&mut self) {
        self.stream.end_writing().expect("shutdown(Write)");
    }

    /// Closes the connection with a reset (SO_LINGER 0, then close).
    pub fn reset(self) {
        SockRef::from(self.stream.tcp())
            .set_linger(Some(Duration::ZERO))
            .expect("SO_LINGER 0");
        drop(self);
    }

    /// Reads the next event, waiting at most `timeout` for a whole frame.
    pub fn next_event(&mut self, timeout: Duration) -> Event {
        let deadline = Instant::now() + timeout;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            if let Some((used, frame)) = self.framing.decode(&self.buf[self.start..]) {
                self.start += used;
                if self.start == self.buf.len() {
                    self.buf.clear();
                    self.start = 0;
                } else if self.start > 1 << 20 {
                    self.buf.drain(..self.start);
                    self.start = 0;
                }
                return Event::Frame(frame);
            }
            let now = Instant::now();
            if now >= deadline {
                return Event::Timeout;
            }
            let wait = (deadline - now).max(Duration::from_millis(1));
            self.stream
                .tcp()
                .set_read_timeout(Some(wait))
                .expect("read timeout");
            match self.stream.read(&mut chunk) {
                Ok(0) if self.start == self.buf.len() => return Event::Eof,
                Ok(0) => return Event::Truncated(self.buf[self.start..].to_vec()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {}
                    io::ErrorKind::ConnectionReset => return Event::Reset,
                    io::ErrorKind::Interrupted => {}
                    _ => return Event::Error(e.to_string()),
                },
            }
        }
    }

    /// Reads the next frame; panics on anything else.
    pub fn recv(&mut self) -> Vec<u8> {
        self.recv_within(FRAME_TIMEOUT)
    }

    /// Reads the next frame within `timeout`; panics on anything else.
    pub fn recv_within(&mut self, timeout: Duration) -> Vec<u8> {
        match self.next_event(timeout) {
            Event::Frame(frame) => frame,
            other => panic!("expected a frame, got {}", other.describe()),
        }
    }

    /// Asserts that the next frame is exactly `expected`.
    #[track_caller]
    pub fn expect(&mut self, expected: impl AsRef<[u8]>) {
        let expected = expected.as_ref();
        match self.next_event(FRAME_TIMEOUT) {
            Event::Frame(frame) if frame == expected => {}
            other => panic!(
                "expected frame `{}`, got {}",
                show(expected),
                other.describe()
            ),
        }
    }

    /// Asserts a clean EOF next: no frame, no partial frame, no reset.
    #[track_caller]
    pub fn expect_eof(&mut self) {
        match self.next_event(FRAME_TIMEOUT) {
            Event::Eof => {}
            other => panic!("expected EOF, got {}", other.describe()),
        }
    }

    /// Sends a request and asserts the exact reply.
    #[track_caller]
    pub fn check(&mut self, request: impl AsRef<[u8]>, reply: impl AsRef<[u8]>) {
        let request = request.as_ref();
        let reply = reply.as_ref();
        self.send(request);
        match self.next_event(FRAME_TIMEOUT) {
            Event::Frame(frame) if frame == reply => {}
            other => panic!(
                "sent `{}`: expected `{}`, got {}",
                show(request),
                show(reply),
                other.describe()
            ),
        }
    }

    /// `HELLO user`, asserting `OK HELLO <id>`; returns the id.
    #[track_caller]
    pub fn hello(&mut self, user: &str) -> String {
        self.send(format!("HELLO {user}"));
        let reply = self.recv();
        let id = reply.strip_prefix(b"OK HELLO ").unwrap_or_else(|| {
            panic!(
                "HELLO {user}: expected `OK HELLO <id>`, got `{}`",
                show(&reply)
            )
        });
        String::from_utf8(id.to_vec()).expect("the connection id is text")
    }

    /// `SUB topic`, asserting `OK SUB topic`.
    #[track_caller]
    pub fn sub(&mut self, topic: &str) {
        self.check(format!("SUB {topic}"), format!("OK SUB {topic}"));
    }

    /// A round trip that proves nothing else was queued for this client:
    /// sends `PING sync-N` and asserts the very next frame is `PONG sync-N`.
    #[track_caller]
    pub fn sync(&mut self) {
        self.sync_seq += 1;
        let n = self.sync_seq;
        self.check(format!("PING sync-{n}"), format!("PONG sync-{n}"));
    }

    /// `QUIT`, asserting `BYE` and then a clean EOF; then closes the socket,
    /// so the gateway's linger ends at once.
    #[track_caller]
    pub fn quit(mut self) {
        self.check("QUIT", "BYE");
        self.expect_eof();
    }

    /// Reads frames until the connection ends or `timeout` passes; returns
    /// them and how it ended.
    pub fn read_to_end(&mut self, timeout: Duration) -> (Vec<Vec<u8>>, End) {
        let deadline = Instant::now() + timeout;
        let mut frames = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left) {
                Event::Frame(frame) => frames.push(frame),
                end => return (frames, end),
            }
        }
    }
}

/// A socket connected to `addr` from the local address `source`.
pub fn bound_to(addr: SocketAddr, source: std::net::IpAddr) -> TcpStream {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::new(source, 0).into())
        .unwrap_or_else(|e| panic!("bind to {source}: {e}"));
    socket
        .connect_timeout(&addr.into(), FRAME_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect to {addr} from {source}: {e}"));
    socket.into()
}

/// A socket connected to `addr` with a receive buffer of `rcvbuf` bytes.
pub fn small_rcvbuf(addr: SocketAddr, rcvbuf: usize) -> TcpStream {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(rcvbuf).expect("SO_RCVBUF");
    socket
        .connect_timeout(&addr.into(), FRAME_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    socket.into()
}

impl Duplex for Client {
    type Event = Event;

    fn second_writer(&mut self) -> Option<TcpStream> {
        (!self.stream.is_tls()).then(|| self.writer())
    }

    fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.try_send_raw(bytes)
    }

    fn read_event(&mut self, timeout: Duration) -> Event {
        self.next_event(timeout)
    }

    fn timed_out(event: &Event) -> bool {
        *event == Event::Timeout
    }

    fn ends(event: &Event) -> bool {
        !matches!(event, Event::Frame(_) | Event::Timeout)
    }
}
