//! A WebSocket client for the gateway's WebSocket listener (contract
//! section 12), on the client side of `tungstenite`, over a blocking socket:
//! plain TCP (`ws://`) or TLS over it (`wss://`, [`WsClient::connect_tls`],
//! where the server's end is an EOF only after its `close_notify`).
//!
//! [`WsClient`] speaks whole messages and sees control frames (the client
//! answers pings and Closes as any client library does, on its next read or
//! write). For what a library will not do (a client that never answers the
//! Close, one that keeps sending during the closing handshake) the raw
//! stream is there ([`WsClient::socket`], through TLS for `wss`), with
//! [`client_frame`] to mask frames by hand.
//! [`raw_request`] sends any bytes to the listener and reads the HTTP
//! answer, for the refusals before the upgrade.

use crate::FRAME_TIMEOUT;
use crate::client::{bound_to, small_rcvbuf};
use crate::http::{self, Response};
use crate::tls::{ClientTls, TlsWire};
use crate::writer::Duplex;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::{Error, Message, WebSocket};

/// What the client saw next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsEvent {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// A ping from the server (answered on the client's next read or write).
    Ping(Vec<u8>),
    /// A pong.
    Pong(Vec<u8>),
    /// The server's Close frame, with its status code.
    Close(Option<u16>),
    /// The TCP connection ended cleanly (after the closing handshake, or
    /// without one).
    Eof,
    /// The TCP connection was reset, or failed.
    Reset(String),
    /// Nothing within the timeout.
    Timeout,
}

/// The stream under a WebSocket client.
pub enum WsWire {
    /// `ws://`: plain TCP.
    Plain(TcpStream),
    /// `wss://`: TLS over TCP, its handshake done.
    Tls(Box<TlsWire>),
}

impl WsWire {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            WsWire::Plain(tcp) => tcp,
            WsWire::Tls(tls) => tls.tcp(),
        }
    }
}

impl Read for WsWire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            WsWire::Plain(tcp) => tcp.read(buf),
            WsWire::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for WsWire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            WsWire::Plain(tcp) => tcp.write(buf),
            WsWire::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            WsWire::Plain(tcp) => tcp.flush(),
            WsWire::Tls(tls) => tls.flush(),
        }
    }
}

/// A connected WebSocket client; the socket closes on drop.
pub struct WsClient {
    ws: WebSocket<WsWire>,
}

impl WsClient {
    /// Connects to `path` on `addr` with no `Origin` (not a browser).
    pub fn connect(addr: SocketAddr, path: &str) -> WsClient {
        WsClient::connect_with(addr, path, &[])
            .unwrap_or_else(|e| panic!("WebSocket upgrade on ws://{addr}{path}: {e}"))
    }

    /// Connects with extra request headers (`Origin`); the error says why
    /// the upgrade failed (an HTTP status is shown in it).
    pub fn connect_with(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<WsClient, String> {
        let stream = TcpStream::connect_timeout(&addr, FRAME_TIMEOUT).map_err(|e| e.to_string())?;
        WsClient::upgrade(stream, addr, path, headers, None)
    }

    /// Connects over TLS (`wss`) to `path` on `addr`, trusting what `tls`
    /// trusts; panics if the handshake or the upgrade fails.
    pub fn connect_tls(addr: SocketAddr, path: &str, tls: &ClientTls) -> WsClient {
        let stream = TcpStream::connect_timeout(&addr, FRAME_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        WsClient::upgrade(stream, addr, path, &[], Some(tls))
            .unwrap_or_else(|e| panic!("WebSocket upgrade on wss://{addr}{path}: {e}"))
    }

    /// Connects to `/ws` from the loopback address `source` (any
    /// `127.x.y.z`), over TLS when `tls` is given, for tests of
    /// per-address limits.
    pub fn connect_from(addr: SocketAddr, source: IpAddr, tls: Option<&ClientTls>) -> WsClient {
        WsClient::try_connect_from(addr, source, tls)
            .unwrap_or_else(|e| panic!("WebSocket upgrade on {addr} from {source}: {e}"))
    }

    /// Like [`WsClient::connect_from`], saying why the handshake or the
    /// upgrade failed.
    pub fn try_connect_from(
        addr: SocketAddr,
        source: IpAddr,
        tls: Option<&ClientTls>,
    ) -> Result<WsClient, String> {
        WsClient::upgrade(bound_to(addr, source), addr, "/ws", &[], tls)
    }

    /// Connects with a small receive buffer, for a client meant to fall
    /// behind (a slow consumer).
    pub fn connect_small_rcvbuf(addr: SocketAddr, path: &str, rcvbuf: usize) -> WsClient {
        WsClient::upgrade(small_rcvbuf(addr, rcvbuf), addr, path, &[], None)
            .unwrap_or_else(|e| panic!("WebSocket upgrade on ws://{addr}{path}: {e}"))
    }

    fn upgrade(
        stream: TcpStream,
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
        tls: Option<&ClientTls>,
    ) -> Result<WsClient, String> {
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(FRAME_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let (scheme, stream) = match tls {
            None => ("ws", WsWire::Plain(stream)),
            Some(tls) => {
                let stream = tls.handshake(stream).map_err(|e| format!("TLS: {e}"))?;
                ("wss", WsWire::Tls(Box::new(TlsWire::new(stream))))
            }
        };
        let mut request = format!("{scheme}://{addr}{path}")
            .into_client_request()
            .map_err(|e| e.to_string())?;
        for (name, value) in headers {
            let name = tungstenite::http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| e.to_string())?;
            let value = value.parse().map_err(|e| format!("{e}"))?;
            request.headers_mut().insert(name, value);
        }
        match tungstenite::client(request, stream) {
            Ok((ws, _)) => Ok(WsClient { ws }),
            Err(tungstenite::HandshakeError::Failure(Error::Http(response))) => {
                Err(format!("HTTP {}", response.status().as_u16()))
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Sends a text message.
    pub fn send_text(&mut self, text: &str) {
        self.send(Message::text(text));
    }

    /// Sends a binary message.
    pub fn send_binary(&mut self, data: &[u8]) {
        self.send(Message::binary(data.to_vec()));
    }

    /// Sends one message as several frames: the first is text or binary,
    /// the others continuations; only the last has FIN.
    pub fn send_fragmented(&mut self, text: bool, pieces: &[&[u8]]) {
        for (i, piece) in pieces.iter().enumerate() {
            let opcode = match (i, text) {
                (0, true) => Data::Text,
                (0, false) => Data::Binary,
                _ => Data::Continue,
            };
            let last = i + 1 == pieces.len();
            self.send_frame(Frame::message(piece.to_vec(), OpCode::Data(opcode), last));
        }
    }

    /// Sends one raw frame (masked by the client).
    pub fn send_frame(&mut self, frame: Frame) {
        self.send(Message::Frame(frame));
    }

    /// Sends a ping.
    pub fn ping(&mut self, payload: &[u8]) {
        self.send(Message::Ping(payload.to_vec().into()));
    }

    /// Starts the closing handshake with `code`.
    pub fn close(&mut self, code: u16) {
        let frame = tungstenite::protocol::CloseFrame {
            code: code.into(),
            reason: "".into(),
        };
        self.ws
            .close(Some(frame))
            .unwrap_or_else(|e| panic!("sending Close: {e}"));
    }

    fn send(&mut self, message: Message) {
        self.ws
            .send(message)
            .unwrap_or_else(|e| panic!("sending a WebSocket message: {e}"));
    }

    /// The next thing that happens, waiting at most `timeout`.
    pub fn next_event(&mut self, timeout: Duration) -> WsEvent {
        let _ = self.ws.get_ref().tcp().set_read_timeout(Some(timeout));
        match self.ws.read() {
            Ok(Message::Text(text)) => WsEvent::Text(text.as_str().to_owned()),
            Ok(Message::Binary(data)) => WsEvent::Binary(data.to_vec()),
            Ok(Message::Ping(data)) => WsEvent::Ping(data.to_vec()),
            Ok(Message::Pong(data)) => WsEvent::Pong(data.to_vec()),
            Ok(Message::Close(frame)) => WsEvent::Close(frame.map(|f| f.code.into())),
            Ok(Message::Frame(_)) => WsEvent::Reset("a raw frame".into()),
            Err(Error::ConnectionClosed | Error::AlreadyClosed) => WsEvent::Eof,
            Err(Error::Protocol(
                tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
            )) => WsEvent::Eof,
            Err(Error::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                WsEvent::Timeout
            }
            Err(e) => WsEvent::Reset(e.to_string()),
        }
    }

    /// The next data message (pings and pongs skipped), within
    /// [`FRAME_TIMEOUT`].
    pub fn recv(&mut self) -> WsEvent {
        let deadline = Instant::now() + FRAME_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left.max(Duration::from_millis(1))) {
                WsEvent::Ping(_) | WsEvent::Pong(_) if Instant::now() < deadline => continue,
                event => return event,
            }
        }
    }

    /// Expects the next data message to be this text.
    pub fn expect_text(&mut self, expected: &str) {
        assert_eq!(self.recv(), WsEvent::Text(expected.to_owned()));
    }

    /// Sends a text command and expects this text answer.
    pub fn check(&mut self, request: &str, reply: &str) {
        self.send_text(request);
        self.expect_text(reply);
    }

    /// `HELLO user`; returns the connection id.
    pub fn hello(&mut self, user: &str) -> String {
        self.send_text(&format!("HELLO {user}"));
        match self.recv() {
            WsEvent::Text(text) => text
                .strip_prefix("OK HELLO ")
                .unwrap_or_else(|| panic!("HELLO {user} answered {text:?}"))
                .to_owned(),
            other => panic!("HELLO {user} answered {other:?}"),
        }
    }

    /// `SUB topic`, expecting `OK SUB topic`.
    pub fn sub(&mut self, topic: &str) {
        self.check(&format!("SUB {topic}"), &format!("OK SUB {topic}"));
    }

    /// Expects the server's Close with `code`, then the end of the TCP
    /// connection after the client's answer.
    pub fn expect_close(&mut self, code: u16) {
        assert_eq!(self.recv(), WsEvent::Close(Some(code)));
        assert_eq!(self.next_event(FRAME_TIMEOUT), WsEvent::Eof);
    }

    /// Every event until the connection ends (or `timeout` passes).
    pub fn read_to_end(&mut self, timeout: Duration) -> Vec<WsEvent> {
        let deadline = Instant::now() + timeout;
        let mut events = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = self.next_event(left.max(Duration::from_millis(1)));
            let end = matches!(event, WsEvent::Eof | WsEvent::Reset(_) | WsEvent::Timeout);
            events.push(event);
            if end {
                return events;
            }
        }
    }

    /// The stream underneath, for writing and reading raw bytes (through
    /// TLS for `wss`).
    pub fn socket(&mut self) -> &mut WsWire {
        self.ws.get_mut()
    }
}

impl Duplex for WsClient {
    type Event = WsEvent;

    fn second_writer(&mut self) -> Option<TcpStream> {
        match self.socket() {
            WsWire::Plain(tcp) => Some(tcp.try_clone().expect("clone the socket")),
            WsWire::Tls(_) => None,
        }
    }

    fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        let socket = self.socket();
        socket.write_all(bytes)?;
        socket.flush()
    }

    fn read_event(&mut self, timeout: Duration) -> WsEvent {
        self.next_event(timeout)
    }

    fn timed_out(event: &WsEvent) -> bool {
        *event == WsEvent::Timeout
    }

    fn ends(event: &WsEvent) -> bool {
        matches!(event, WsEvent::Close(_) | WsEvent::Eof | WsEvent::Reset(_))
    }
}

/// A masked client frame written by hand (RFC 6455 section 5.2): `first`
/// holds FIN and the opcode (`0x81` a whole text message, `0x88` a Close).
pub fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x5a, 0x13, 0xc4, 0x7e];
    let mut out = vec![first];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=65535 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// One server frame read straight from the socket, without answering
/// anything: its first byte (FIN and opcode) and payload; `None` at EOF, a
/// reset or after `timeout`.
pub fn read_raw_frame(socket: &mut WsWire, timeout: Duration) -> Option<(u8, Vec<u8>)> {
    socket.tcp().set_read_timeout(Some(timeout)).ok()?;
    let mut head = [0u8; 2];
    socket.read_exact(&mut head).ok()?;
    let len = match head[1] & 0x7f {
        126 => {
            let mut ext = [0u8; 2];
            socket.read_exact(&mut ext).ok()?;
            u64::from(u16::from_be_bytes(ext))
        }
        127 => {
            let mut ext = [0u8; 8];
            socket.read_exact(&mut ext).ok()?;
            u64::from_be_bytes(ext)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0u8; usize::try_from(len).ok()?];
    socket.read_exact(&mut payload).ok()?;
    Some((head[0], payload))
}

/// Sends `bytes` as they are to the WebSocket listener and reads the HTTP
/// answer up to the server's EOF.
pub fn raw_request(addr: SocketAddr, bytes: &[u8]) -> Response {
    let mut stream = TcpStream::connect_timeout(&addr, FRAME_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream
        .set_read_timeout(Some(FRAME_TIMEOUT))
        .expect("read timeout");
    stream
        .write_all(bytes)
        .unwrap_or_else(|e| panic!("write to {addr}: {e}"));
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("reading the answer from {addr}: {e}"));
    http::parse(&raw).unwrap_or_else(|e| panic!("answer from {addr}: {e}: {}", crate::show(&raw)))
}

#[cfg(test)]
mod tests {
    use super::client_frame;

    #[test]
    fn masked_frames() {
        assert_eq!(
            client_frame(0x81, b"Hi"),
            [0x81, 0x82, 0x5a, 0x13, 0xc4, 0x7e, b'H' ^ 0x5a, b'i' ^ 0x13]
        );
        assert_eq!(
            &client_frame(0x82, &[0; 300])[..4],
            &[0x82, 0x80 | 126, 1, 44]
        );
    }
}
