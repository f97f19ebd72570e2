//! TLS over a client's TCP stream, on rustls's unbuffered API: the
//! handshake, bounded in time, that turns an accepted socket into a
//! [`TlsStream`] (a `Transport` through `Transport::from`), and that
//! stream, which owns its buffers so that an idle connection holds none.
//!
//! rustls's buffered connection (what tokio-rustls drives) keeps a 4 KiB
//! receive buffer for the life of the connection. Here each buffer exists
//! only while it holds bytes, as nginx has OpenSSL release its buffers
//! (`SSL_MODE_RELEASE_BUFFERS`): ciphertext read but not yet a whole
//! record, plaintext decrypted but not yet read, ciphertext encrypted but
//! not yet taken by the socket.
//!
//! rustls runs the handshake. Once it is done, a TLS 1.3 connection's
//! record layer passes to `records.rs` (rustls's kernel-connection API
//! hands over the traffic secrets and keeps only the key schedule), which
//! builds its keys when traffic comes and drops them when its worker's
//! sweep finds them unused ([`TlsStream::cool`]): an idle TLS 1.3
//! connection holds about 1.1 KiB here rather than rustls's 3.3 KiB
//! (docs/benchmarks.md, "TLS 1.3's record layer after the handshake").
//! A TLS 1.2 connection stays with rustls for its whole life: rustls
//! encrypts, decrypts and refuses renegotiation.
//!
//! Which certificate is served, and reloading it, is the caller's business
//! (the `ServerConfig`'s certificate resolver); this module only runs the
//! protocol.

use std::future::poll_fn;
use std::io::{self, ErrorKind, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use rustls::ProtocolVersion;
pub use rustls::ServerConfig;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, WriteTraffic,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::records::{self, Records};

/// Room made for each read from the socket: a whole record of the
/// largest size (16 KiB of data and its overhead) fits in one read.
const READ_SIZE: usize = 17 * 1024;
/// The most ciphertext waiting to be processed: a handshake message of
/// the largest size rustls accepts (64 KiB) and one read. rustls refuses
/// larger messages before this is reached; the bound holds whatever it
/// does.
const MAX_INCOMING: usize = 64 * 1024 + READ_SIZE;
/// The most plaintext one write takes: one record of the largest size.
/// Its ciphertext goes out before the next write is taken, so this layer
/// holds at most one write's records.
const MAX_WRITE: usize = 16 * 1024;
/// Room guessed for each record's header, padding and tag; rustls says
/// when a record needs more.
const RECORD_OVERHEAD: usize = 64;

/// Runs server handshakes with one configuration.
#[derive(Clone)]
pub struct TlsAcceptor {
    config: Arc<ServerConfig>,
}

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAcceptor").finish_non_exhaustive()
    }
}

/// Builds an acceptor for `config`.
pub fn acceptor(config: Arc<ServerConfig>) -> TlsAcceptor {
    TlsAcceptor { config }
}

/// Why a TLS handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The client spoke something other than acceptable TLS, or went away.
    #[error("TLS handshake failed: {0}")]
    Failed(#[from] io::Error),
    /// The handshake took longer than it may.
    #[error("TLS handshake did not finish within {0:?}")]
    TimedOut(Duration),
}

/// Runs the server side of a handshake on `tcp`, for at most `within`.
pub async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    within: Duration,
) -> Result<TlsStream, HandshakeError> {
    let conn =
        UnbufferedServerConnection::new(acceptor.config.clone()).map_err(io::Error::other)?;
    let mut stream = TlsStream::new(tcp, conn);
    match tokio::time::timeout(within, poll_fn(|cx| stream.poll_handshake(cx))).await {
        Ok(Ok(())) => Ok(stream.hand_over(&acceptor.config)?),
        Ok(Err(err)) => Err(HandshakeError::Failed(err)),
        Err(_) => Err(HandshakeError::TimedOut(within)),
    }
}

/// A TLS stream over TCP, its handshake done. Reads keep tokio-rustls's
/// meaning: a `close_notify` is the end (`Ok` with nothing read), a TCP
/// EOF without one an `UnexpectedEof` error.
pub struct TlsStream {
    tcp: TcpStream,
    engine: Engine,
    /// Ciphertext read and not yet processed: after processing, at most
    /// the start of one record, in a buffer of its own size; none (and no
    /// allocation) at a record boundary.
    incoming: Vec<u8>,
    /// Plaintext decrypted and not yet read, from `read_from`: what did not
    /// fit the reader's buffer, or came with the handshake.
    plaintext: Vec<u8>,
    read_from: usize,
    /// Ciphertext not yet taken by the socket, from `sent`.
    outgoing: Vec<u8>,
    sent: usize,
    /// The client's `close_notify` came: no more records are read.
    peer_closed: bool,
    /// The TCP stream ended.
    tcp_eof: bool,
    /// Our `close_notify` is queued: nothing more is written.
    closing: bool,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("incoming", &self.incoming.len())
            .field("plaintext", &(self.plaintext.len() - self.read_from))
            .field("outgoing", &(self.outgoing.len() - self.sent))
            .field("peer_closed", &self.peer_closed)
            .field("closing", &self.closing)
            .finish_non_exhaustive()
    }
}

/// Who runs the record layer.
enum Engine {
    /// rustls: through the handshake, and for a TLS 1.2 connection its
    /// whole life.
    Rustls(Box<UnbufferedServerConnection>),
    /// A TLS 1.3 connection after its handshake (`records.rs`): rustls
    /// keeps only its key schedule, and the keys are dropped while idle.
    Records(Box<Records>),
}

/// rustls needs more ciphertext, or cannot go on.
struct Stalled;

impl TlsStream {
    fn new(tcp: TcpStream, conn: UnbufferedServerConnection) -> Self {
        Self {
            tcp,
            engine: Engine::Rustls(Box::new(conn)),
            incoming: Vec::new(),
            plaintext: Vec::new(),
            read_from: 0,
            outgoing: Vec::new(),
            sent: 0,
            peer_closed: false,
            tcp_eof: false,
            closing: false,
        }
    }

    /// Reads, processes and sends until the handshake is over.
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            // Data the client sent right after its Finished waits in
            // `plaintext` for the first read.
            let _ = self.advance(None, |_, _| Ok(()))?;
            ready!(self.poll_send(cx))?;
            if let Engine::Rustls(conn) = &self.engine
                && !conn.is_handshaking()
            {
                return Poll::Ready(Ok(()));
            }
            if self.tcp_eof || self.peer_closed {
                return Poll::Ready(Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "the client closed during the TLS handshake",
                )));
            }
            ready!(self.poll_fill(cx))?;
        }
    }

    /// After the handshake, a TLS 1.3 connection's record layer passes to
    /// `records.rs` where the configuration allows secret extraction and
    /// the cipher suite is one it has; rustls keeps only the key
    /// schedule. Anything else stays with rustls.
    fn hand_over(mut self, config: &ServerConfig) -> io::Result<Self> {
        let conn = match self.engine {
            Engine::Rustls(conn)
                if config.enable_secret_extraction
                    && conn.protocol_version() == Some(ProtocolVersion::TLSv1_3)
                    && conn.negotiated_cipher_suite().is_some_and(records::takes) =>
            {
                conn
            }
            engine => {
                self.engine = engine;
                return Ok(self);
            }
        };
        let (secrets, kernel) = conn
            .dangerous_into_kernel_connection()
            .map_err(io::Error::other)?;
        self.engine = Engine::Records(Box::new(Records::new(secrets, kernel)?));
        Ok(self)
    }

    /// Whether this connection just started using its record keys: it
    /// then goes under its worker's sweep, which calls [`Self::cool`].
    pub fn take_warmed(&mut self) -> bool {
        match &mut self.engine {
            Engine::Records(records) => records.take_warmed(),
            Engine::Rustls(_) => false,
        }
    }

    /// Drops the record keys if nothing used them since the last call;
    /// returns whether they are still held. rustls's keys (TLS 1.2) stay.
    pub fn cool(&mut self) -> bool {
        match &mut self.engine {
            Engine::Records(records) => records.cool(),
            Engine::Rustls(_) => false,
        }
    }

    /// Opens what was read: decrypted data to `into` while it has room,
    /// then to `plaintext`; what must go back (a key update, an alert) to
    /// `outgoing`.
    fn process(&mut self, mut into: Option<&mut ReadBuf<'_>>) -> io::Result<()> {
        let Self {
            engine,
            incoming,
            plaintext,
            read_from,
            outgoing,
            peer_closed,
            ..
        } = self;
        let Engine::Records(records) = engine else {
            return self.advance(into, |_, _| Ok(())).map(|_| ());
        };
        let (used, closed) = records.open(incoming, outgoing, |data| {
            deliver(data, &mut into, plaintext, *read_from)
        })?;
        discard_front(incoming, used);
        if closed {
            *peer_closed = true;
            // Nothing after a `close_notify` is read.
            incoming.clear();
        }
        fit(incoming);
        Ok(())
    }

    /// Encrypts `data` (at most `MAX_WRITE` bytes) into `outgoing`; false
    /// where the connection can no longer send data.
    fn encrypt(&mut self, data: &[u8]) -> io::Result<bool> {
        if let Engine::Records(records) = &mut self.engine {
            records.seal(data, &mut self.outgoing)?;
            return Ok(true);
        }
        let len = data.len();
        let overhead = (len / MAX_WRITE + 1) * RECORD_OVERHEAD;
        let encrypted = self.advance(None, |traffic, outgoing| {
            append(outgoing, len + overhead, |buf| {
                match traffic.encrypt(data, buf) {
                    Err(EncryptError::InsufficientSize(short)) => Err(Short(short)),
                    other => other.map_err(|err| Fail(io::Error::other(err))),
                }
            })
        })?;
        Ok(encrypted.is_ok())
    }

    /// Queues our `close_notify` after everything written before; a
    /// connection that can no longer send (or failed) has nothing to say.
    fn queue_close_notify(&mut self) -> io::Result<()> {
        if let Engine::Records(records) = &mut self.engine {
            let _ = records.seal_close_notify(&mut self.outgoing);
            return Ok(());
        }
        let _ = self.advance(None, |traffic, outgoing| {
            append(outgoing, RECORD_OVERHEAD, |buf| {
                match traffic.queue_close_notify(buf) {
                    Err(EncryptError::InsufficientSize(short)) => Err(Short(short)),
                    other => other.map_err(|err| Fail(io::Error::other(err))),
                }
            })
        })?;
        Ok(())
    }

    /// Runs rustls over the ciphertext read so far, until it needs more:
    /// decrypted data goes to `into` while it has room, then to
    /// `plaintext`; records rustls has to send (handshake, alerts, key
    /// updates) go to `outgoing`. Once data may be sent, `write` encrypts
    /// into `outgoing` and its result is returned; `Err(Stalled)` when
    /// data may not be sent (the handshake waits for the client, or the
    /// connection is closed).
    fn advance<R>(
        &mut self,
        mut into: Option<&mut ReadBuf<'_>>,
        write: impl FnOnce(&mut WriteTraffic<'_, ServerConnectionData>, &mut Vec<u8>) -> io::Result<R>,
    ) -> io::Result<Result<R, Stalled>> {
        let Self {
            engine: Engine::Rustls(conn),
            incoming,
            plaintext,
            read_from,
            outgoing,
            peer_closed,
            ..
        } = self
        else {
            return Err(io::Error::other("rustls no longer runs this connection"));
        };
        let result = loop {
            let status = conn.process_tls_records(incoming);
            let mut discard = status.discard;
            let state = match status.state {
                Ok(state) => state,
                Err(err) => {
                    queue_alert(conn.as_mut(), outgoing);
                    return Err(io::Error::new(ErrorKind::InvalidData, err));
                }
            };
            match state {
                ConnectionState::ReadTraffic(mut records) => {
                    while let Some(record) = records.next_record() {
                        let record =
                            record.map_err(|err| io::Error::new(ErrorKind::InvalidData, err))?;
                        discard += record.discard;
                        deliver(record.payload, &mut into, plaintext, *read_from);
                    }
                }
                ConnectionState::EncodeTlsData(mut message) => {
                    append(outgoing, RECORD_OVERHEAD, |buf| match message.encode(buf) {
                        Err(EncodeError::InsufficientSize(short)) => Err(Short(short)),
                        other => other.map_err(|err| Fail(io::Error::other(err))),
                    })?;
                }
                // Queued in `outgoing`, which goes out in order.
                ConnectionState::TransmitTlsData(queued) => queued.done(),
                ConnectionState::PeerClosed => *peer_closed = true,
                ConnectionState::WriteTraffic(mut traffic) => {
                    let wrote = write(&mut traffic, outgoing);
                    discard_front(incoming, discard);
                    break wrote.map(Ok);
                }
                ConnectionState::Closed => {
                    *peer_closed = true;
                    discard_front(incoming, discard);
                    break Ok(Err(Stalled));
                }
                ConnectionState::BlockedHandshake => {
                    discard_front(incoming, discard);
                    break Ok(Err(Stalled));
                }
                // Early data is never enabled; anything else is new to
                // this code.
                _ => {
                    return Err(io::Error::new(
                        ErrorKind::InvalidData,
                        "unexpected TLS connection state",
                    ));
                }
            }
            discard_front(incoming, discard);
        };
        if *peer_closed {
            // rustls reads nothing after a `close_notify`.
            incoming.clear();
        }
        fit(incoming);
        result
    }

    /// Reads more ciphertext into `incoming`; the buffer is allocated only
    /// once the socket has bytes for it.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.tcp.poll_read_ready(cx))?;
        if self.incoming.len() >= MAX_INCOMING {
            return Poll::Ready(Err(io::Error::new(
                ErrorKind::InvalidData,
                "TLS message too large",
            )));
        }
        self.incoming.reserve(READ_SIZE);
        // Through tokio's `poll_read`, which notes a short read as the
        // socket drained: the next poll waits without a `recv` that would
        // only say so.
        match tokio_util::io::poll_read_buf(Pin::new(&mut self.tcp), cx, &mut self.incoming) {
            Poll::Ready(Ok(0)) => {
                self.tcp_eof = true;
                fit(&mut self.incoming);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Ok(_)) => Poll::Ready(Ok(())),
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => {
                // Readiness was stale; the task is registered again.
                fit(&mut self.incoming);
                Poll::Pending
            }
        }
    }

    /// Writes `outgoing` until the socket has taken all of it, then frees
    /// it.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.outgoing.len() {
            let rest = &self.outgoing[self.sent..];
            match ready!(Pin::new(&mut self.tcp).poll_write(cx, rest)) {
                Ok(0) => return Poll::Ready(Err(ErrorKind::WriteZero.into())),
                Ok(n) => self.sent += n,
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
        self.outgoing = Vec::new();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    fn poll_read_tls(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if self.read_from < self.plaintext.len() {
                let rest = &self.plaintext[self.read_from..];
                let n = rest.len().min(buf.remaining());
                buf.put_slice(&rest[..n]);
                self.read_from += n;
                if self.read_from == self.plaintext.len() {
                    self.plaintext = Vec::new();
                    self.read_from = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if self.peer_closed || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            if self.tcp_eof {
                return Poll::Ready(Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "the client closed without a close_notify",
                )));
            }
            ready!(self.poll_fill(cx))?;
            let before = buf.filled().len();
            let processed = self.process(Some(buf));
            if let Err(err) = processed {
                // The alert, if any, goes out as far as the socket takes it.
                let _ = self.poll_send(cx);
                return Poll::Ready(Err(err));
            }
            if self.sent < self.outgoing.len() {
                // A key update's answer or an alert: sent now if the socket
                // takes it, else before the next write. A failure shows at
                // that write.
                let _ = self.poll_send(cx);
            }
            if buf.filled().len() > before {
                return Poll::Ready(Ok(()));
            }
        }
    }

    fn poll_write_tls(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.closing {
            return Poll::Ready(Err(io::Error::new(
                ErrorKind::BrokenPipe,
                "the TLS write side is closed",
            )));
        }
        // What an earlier write encrypted leaves first: the caller feels
        // the socket's back-pressure, and this layer holds one write.
        ready!(self.poll_send(cx))?;
        let len = bufs.iter().map(|b| b.len()).sum::<usize>().min(MAX_WRITE);
        if len == 0 {
            return Poll::Ready(Ok(0));
        }
        let gathered;
        let data = match bufs.iter().find(|b| !b.is_empty()) {
            Some(first) if first.len() >= len => &first[..len],
            _ => {
                gathered = gather(bufs, len);
                &gathered[..]
            }
        };
        if !self.encrypt(data)? {
            return Poll::Ready(Err(io::Error::new(
                ErrorKind::NotConnected,
                "the TLS connection can no longer send data",
            )));
        }
        // Sent now as far as the socket takes it; the rest waits for the
        // next write or flush.
        if let Poll::Ready(Err(err)) = self.poll_send(cx) {
            return Poll::Ready(Err(err));
        }
        Poll::Ready(Ok(len))
    }

    fn poll_shutdown_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.closing {
            self.queue_close_notify()?;
            self.closing = true;
        }
        ready!(self.poll_send(cx))?;
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// Why `append` could not write a record.
enum AppendError {
    /// The buffer was this much too small.
    Short(InsufficientSizeError),
    Fail(io::Error),
}
use AppendError::{Fail, Short};

/// Appends to `out` what `write` puts into a slice, with `guess` bytes of
/// room first and as much as it asks for when that was too little.
fn append(
    out: &mut Vec<u8>,
    guess: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, AppendError>,
) -> io::Result<()> {
    let start = out.len();
    out.resize(start + guess, 0);
    let written = match write(&mut out[start..]) {
        Err(Short(short)) => {
            out.resize(start + short.required_size, 0);
            write(&mut out[start..])
        }
        other => other,
    };
    match written {
        Ok(n) => {
            out.truncate(start + n);
            Ok(())
        }
        Err(err) => {
            out.truncate(start);
            Err(match err {
                Short(short) => io::Error::other(format!(
                    "TLS record needs {} bytes of room",
                    short.required_size
                )),
                Fail(err) => err,
            })
        }
    }
}

/// Hands decrypted `data` to the reader's buffer while it has room and
/// nothing waits before it, and keeps the rest in `plaintext`.
fn deliver(
    data: &[u8],
    into: &mut Option<&mut ReadBuf<'_>>,
    plaintext: &mut Vec<u8>,
    read_from: usize,
) {
    let mut taken = 0;
    if let Some(buf) = into
        && read_from == plaintext.len()
    {
        taken = data.len().min(buf.remaining());
        buf.put_slice(&data[..taken]);
    }
    plaintext.extend_from_slice(&data[taken..]);
}

/// Frees an empty `incoming`, and fits one that holds the start of a
/// record to it: a client that stalls mid-record holds no more than what
/// it sent.
fn fit(incoming: &mut Vec<u8>) {
    if incoming.is_empty() {
        *incoming = Vec::new();
    } else {
        incoming.shrink_to_fit();
    }
}

/// Removes what rustls has processed from the front of `incoming`.
fn discard_front(incoming: &mut Vec<u8>, discard: usize) {
    if discard >= incoming.len() {
        incoming.clear();
    } else if discard > 0 {
        incoming.drain(..discard);
    }
}

/// The first `len` bytes of `bufs`, in one slice: one record for several
/// small slices rather than one record each.
fn gather(bufs: &[IoSlice<'_>], len: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(len);
    for buf in bufs {
        let take = buf.len().min(len - data.len());
        data.extend_from_slice(&buf[..take]);
        if data.len() == len {
            break;
        }
    }
    data
}

/// After an error, the alert rustls queued for it (a bad record, a failed
/// handshake), into `outgoing` for a last write; the error is what counts.
fn queue_alert(conn: &mut UnbufferedServerConnection, outgoing: &mut Vec<u8>) {
    // Nothing is read now: the alert, if any, comes first, then a state
    // that ends this loop.
    for _ in 0..4 {
        let status = conn.process_tls_records(&mut []);
        match status.state {
            Ok(ConnectionState::EncodeTlsData(mut alert)) => {
                let encoded = append(outgoing, RECORD_OVERHEAD, |buf| match alert.encode(buf) {
                    Err(EncodeError::InsufficientSize(short)) => Err(Short(short)),
                    other => other.map_err(|err| Fail(io::Error::other(err))),
                });
                if encoded.is_err() {
                    return;
                }
            }
            Ok(ConnectionState::TransmitTlsData(queued)) => queued.done(),
            _ => return,
        }
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().poll_read_tls(cx, buf)
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_tls(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_tls(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_send(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_shutdown_tls(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::version::{TLS12, TLS13};
    use rustls::{ClientConfig, ClientConnection, RootCertStore, SupportedProtocolVersion};
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A server configuration and a client one that trusts it.
    fn configs(version: &'static SupportedProtocolVersion) -> (TlsAcceptor, Arc<ClientConfig>) {
        configs_with(version, None)
    }

    /// The same, the client offering only `suite` where one is given.
    fn configs_with(
        version: &'static SupportedProtocolVersion,
        suite: Option<rustls::SupportedCipherSuite>,
    ) -> (TlsAcceptor, Arc<ClientConfig>) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client_provider = Arc::new(rustls::crypto::CryptoProvider {
            cipher_suites: suite.map_or(provider.cipher_suites.clone(), |s| vec![s]),
            ..rustls::crypto::ring::default_provider()
        });
        let issued =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
        let cert = issued.cert.der().clone();
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(issued.signing_key.serialize_der().into());
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&TLS13, &TLS12])
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .expect("server config");
        // As the gateway's: TLS 1.3 connections pass to `records.rs`.
        server.enable_secret_extraction = true;
        let mut roots = RootCertStore::empty();
        roots.add(cert).expect("root");
        let client = ClientConfig::builder_with_provider(client_provider)
            .with_protocol_versions(&[version])
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        (acceptor(Arc::new(server)), Arc::new(client))
    }

    /// The client's side: blocking rustls over a std socket.
    struct Client {
        tls: ClientConnection,
        tcp: std::net::TcpStream,
    }

    impl Client {
        fn send(&mut self, data: &[u8]) {
            // In pieces: rustls buffers no more than 64 KiB.
            for piece in data.chunks(16 * 1024) {
                self.tls.writer().write_all(piece).expect("plaintext");
                self.flush();
            }
        }

        /// Sends what rustls has queued (a `close_notify`, a key update).
        fn flush(&mut self) {
            while self.tls.wants_write() {
                self.tls.write_tls(&mut self.tcp).expect("send");
            }
        }

        /// Reads until `len` bytes, or the end; an end without
        /// `close_notify` fails.
        fn read(&mut self, len: usize) -> io::Result<Vec<u8>> {
            let mut got = Vec::new();
            let mut stream = rustls::Stream::new(&mut self.tls, &mut self.tcp);
            let mut buf = [0; 4096];
            while got.len() < len {
                match stream.read(&mut buf)? {
                    0 => break,
                    n => got.extend_from_slice(&buf[..n]),
                }
            }
            Ok(got)
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    /// A server stream and its client, their handshake done.
    fn pair(
        rt: &tokio::runtime::Runtime,
        version: &'static SupportedProtocolVersion,
    ) -> (TlsStream, Client) {
        pair_with(rt, configs(version))
    }

    fn pair_with(
        rt: &tokio::runtime::Runtime,
        (acceptor, client_config): (TlsAcceptor, Arc<ClientConfig>),
    ) -> (TlsStream, Client) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = std::thread::spawn(move || {
            let mut tcp = std::net::TcpStream::connect(addr).expect("connect");
            let name = "localhost".try_into().expect("name");
            let mut tls = ClientConnection::new(client_config, name).expect("client");
            while tls.is_handshaking() {
                tls.complete_io(&mut tcp).expect("client handshake");
            }
            Client { tls, tcp }
        });
        let (tcp, _) = listener.accept().expect("accept");
        tcp.set_nonblocking(true).expect("nonblocking");
        let server = rt.block_on(async {
            let tcp = TcpStream::from_std(tcp).expect("tokio socket");
            handshake(&acceptor, tcp, Duration::from_secs(5)).await
        });
        let client = client.join().expect("client thread");
        (server.expect("server handshake"), client)
    }

    /// Reads `len` bytes on the server, through a reader's buffer of
    /// `chunk` bytes.
    fn server_read(
        rt: &tokio::runtime::Runtime,
        server: &mut TlsStream,
        len: usize,
        chunk: usize,
    ) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        rt.block_on(async {
            let mut got = Vec::new();
            let mut buf = vec![0; chunk];
            while got.len() < len {
                let n = tokio::time::timeout(Duration::from_secs(5), server.read(&mut buf))
                    .await
                    .expect("data within 5 s")
                    .expect("read");
                assert_ne!(n, 0, "EOF after {} of {len} bytes", got.len());
                got.extend_from_slice(&buf[..n]);
            }
            got
        })
    }

    async fn within_5s<T>(future: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(5), future)
            .await
            .expect("within 5 s")
    }

    fn server_write(rt: &tokio::runtime::Runtime, server: &mut TlsStream, data: &[u8]) {
        use tokio::io::AsyncWriteExt;
        rt.block_on(within_5s(async {
            server.write_all(data).await.expect("write");
            server.flush().await.expect("flush");
        }));
    }

    fn assert_idle(server: &TlsStream) {
        assert_eq!(server.incoming.capacity(), 0, "incoming");
        assert_eq!(server.plaintext.capacity(), 0, "plaintext");
        assert_eq!(server.outgoing.capacity(), 0, "outgoing");
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn an_idle_connection_holds_no_buffers() {
        let rt = runtime();
        for version in [&TLS13, &TLS12] {
            let (mut server, mut client) = pair(&rt, version);
            assert_idle(&server);
            client.send(b"HELLO alice\nSUB news\n");
            assert_eq!(
                server_read(&rt, &mut server, 21, 64 * 1024),
                b"HELLO alice\nSUB news\n"
            );
            assert_idle(&server);
            server_write(&rt, &mut server, b"OK HELLO 1\nOK SUB news\n");
            assert_idle(&server);
            assert_eq!(
                client.read(23).expect("client read"),
                b"OK HELLO 1\nOK SUB news\n"
            );
            // Large data both ways, read through a small buffer: what did
            // not fit waits, then the buffers go again.
            let big = pattern(100_000);
            client.send(&big);
            assert_eq!(server_read(&rt, &mut server, big.len(), 1000), big);
            assert_idle(&server);
            let client_reads = std::thread::spawn(move || {
                let got = client.read(100_000).expect("client read");
                (client, got)
            });
            server_write(&rt, &mut server, &big);
            let (_client, got) = client_reads.join().expect("client thread");
            assert_eq!(got, big);
            assert_idle(&server);
        }
    }

    #[test]
    fn the_stream_is_small_and_rustls_is_boxed_beside_it() {
        // The socket, three empty buffers and a pointer to the engine: 144
        // or 152 bytes (the socket's size follows tokio's features), within
        // mimalloc's 160-byte size class.
        let size = std::mem::size_of::<TlsStream>();
        assert!(size <= 160, "TlsStream is {size} bytes");
    }

    fn own_records(server: &mut TlsStream) -> &mut Records {
        match &mut server.engine {
            Engine::Records(records) => records,
            Engine::Rustls(_) => panic!("rustls still runs the record layer"),
        }
    }

    #[test]
    fn every_tls13_suite_runs_on_the_own_record_layer_and_tls12_stays_with_rustls() {
        let rt = runtime();
        let big = pattern(70_000);
        let suites = rustls::crypto::ring::default_provider().cipher_suites;
        // The certificate is ECDSA: TLS 1.2's RSA suites cannot serve it.
        let ecdsa_or_tls13 = |s: &rustls::SupportedCipherSuite| {
            s.tls13().is_some() || format!("{:?}", s.suite()).contains("ECDSA")
        };
        for suite in suites.into_iter().filter(ecdsa_or_tls13) {
            let version = if suite.tls13().is_some() {
                &TLS13
            } else {
                &TLS12
            };
            let (mut server, mut client) = pair_with(&rt, configs_with(version, Some(suite)));
            assert_eq!(
                matches!(server.engine, Engine::Records(_)),
                suite.tls13().is_some(),
                "{suite:?}"
            );
            client.send(&big);
            assert_eq!(
                server_read(&rt, &mut server, big.len(), 5000),
                big,
                "{suite:?}"
            );
            let client_reads = std::thread::spawn(move || {
                let got = client.read(140_000).expect("client read");
                (client, got)
            });
            let sent = [pattern(70_000), pattern(70_000)].concat();
            server_write(&rt, &mut server, &sent[..70_000]);
            server_write(&rt, &mut server, &sent[70_000..]);
            let (_client, got) = client_reads.join().expect("client thread");
            assert!(got == sent, "{suite:?}");
            assert_idle(&server);
        }
    }

    #[test]
    fn the_keys_are_dropped_once_unused_for_a_sweep_and_built_again_on_use() {
        let rt = runtime();
        let (mut server, mut client) = pair(&rt, &TLS13);
        // Nothing used the keys yet: none built, nothing for the sweep.
        assert!(!own_records(&mut server).holds_keys());
        assert!(!server.take_warmed());
        client.send(b"PING\n");
        assert_eq!(server_read(&rt, &mut server, 5, 64), b"PING\n");
        assert!(own_records(&mut server).holds_keys());
        assert!(server.take_warmed(), "handed to the sweep once");
        assert!(!server.take_warmed());
        // Used since it was handed over: kept one more sweep.
        assert!(server.cool());
        assert!(!server.cool(), "unused for a whole sweep");
        assert!(!own_records(&mut server).holds_keys());
        // Both ways again, with keys built anew from the secrets.
        server_write(&rt, &mut server, b"PONG\n");
        assert_eq!(client.read(5).expect("client read"), b"PONG\n");
        client.send(b"PING\n");
        assert_eq!(server_read(&rt, &mut server, 5, 64), b"PING\n");
        assert!(server.take_warmed());
    }

    #[test]
    fn the_send_key_is_replaced_before_its_limit() {
        let rt = runtime();
        let (mut server, client) = pair(&rt, &TLS13);
        own_records(&mut server).set_send_limit(3);
        let client_reads = std::thread::spawn(move || {
            let mut client = client;
            client.read(10 * 6).expect("client read")
        });
        let mut sent = Vec::new();
        for i in 0..10 {
            let line = format!("LINE{i}\n");
            server_write(&rt, &mut server, line.as_bytes());
            sent.extend_from_slice(line.as_bytes());
        }
        // The client read every record: each key update came before the
        // records under the next key.
        assert_eq!(client_reads.join().expect("client thread"), sent);
        // And the keys were replaced: no key protected more than 3 records
        // (without replacement the sequence would be past 10).
        assert!(own_records(&mut server).send_seq() <= 3);
    }

    /// Sends raw bytes from the client and returns the server's read error.
    fn server_refuses(
        rt: &tokio::runtime::Runtime,
        server: &mut TlsStream,
        client: &mut Client,
        wire: &[u8],
    ) -> io::Error {
        client.tcp.write_all(wire).expect("send");
        let mut buf = [0; 64];
        rt.block_on(within_5s(tokio::io::AsyncReadExt::read(server, &mut buf)))
            .expect_err("refused")
    }

    #[test]
    fn a_tampered_record_is_refused_with_bad_record_mac() {
        let rt = runtime();
        let (mut server, mut client) = pair(&rt, &TLS13);
        client.tls.writer().write_all(b"PING\n").expect("plaintext");
        let mut wire = Vec::new();
        while client.tls.wants_write() {
            client.tls.write_tls(&mut wire).expect("encode");
        }
        let last = wire.len() - 1;
        wire[last] ^= 1;
        let err = server_refuses(&rt, &mut server, &mut client, &wire);
        assert_eq!(err.kind(), ErrorKind::InvalidData, "{err}");
        let alert = client.read(1).expect_err("the server's alert");
        assert!(format!("{alert}").contains("BadRecordMac"), "{alert}");
        // Nothing more is accepted either way.
        assert!(server.encrypt(b"more").is_err());
    }

    #[test]
    fn whatever_bytes_follow_the_handshake_the_record_layer_refuses_or_waits_and_never_panics() {
        // A small xorshift, seeded: the same bytes every run.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let rt = runtime();
        let (mut server, _client) = pair(&rt, &TLS13);
        let records = own_records(&mut server);
        for round in 0..2000 {
            let len = (next() % 64) as usize;
            let mut wire: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if round % 2 == 0 && wire.len() >= 5 {
                // Half of them look like application data of a length that
                // is all there: they get as far as the AEAD.
                let body = (wire.len() - 5) as u16;
                wire[..5].copy_from_slice(&[23, 3, 3, (body >> 8) as u8, body as u8]);
            }
            let mut out = Vec::new();
            let mut delivered = 0;
            match records.open(&mut wire, &mut out, |data| delivered += data.len()) {
                // Not yet a whole record: nothing used, nothing delivered.
                Ok((used, closed)) => assert!(used == 0 && !closed && delivered == 0, "{round}"),
                Err(err) => {
                    assert_eq!(err.kind(), ErrorKind::InvalidData, "{round}");
                    assert_eq!(delivered, 0, "{round}");
                    // Once refused, the connection stays refused; the next
                    // round starts afresh.
                    records.forget_failure();
                }
            }
        }
    }

    #[test]
    fn unprotected_and_oversized_records_are_refused() {
        let rt = runtime();
        for (wire, alert) in [
            // A handshake record in the clear after the handshake.
            (&[22u8, 3, 3, 0, 1, 0][..], "UnexpectedMessage"),
            // Longer than any ciphertext may be.
            (&[23u8, 3, 3, 0x48, 0x01][..], "RecordOverflow"),
        ] {
            let (mut server, mut client) = pair(&rt, &TLS13);
            let err = server_refuses(&rt, &mut server, &mut client, wire);
            assert_eq!(err.kind(), ErrorKind::InvalidData, "{err}");
            let got = client.read(1).expect_err("the server's alert");
            assert!(format!("{got}").contains(alert), "{got}");
        }
    }

    #[test]
    fn records_arriving_in_pieces_are_read_whole() {
        let rt = runtime();
        for chunk in [1, 2, 3, 7] {
            let (mut server, mut client) = pair(&rt, &TLS13);
            let message = b"PUB news one record in many pieces\n";
            client.tls.writer().write_all(message).expect("plaintext");
            let mut wire = Vec::new();
            while client.tls.wants_write() {
                client.tls.write_tls(&mut wire).expect("encode");
            }
            let mut got = Vec::new();
            for piece in wire.chunks(chunk) {
                client.tcp.write_all(piece).expect("send");
                rt.block_on(within_5s(poll_fn(|cx| server.tcp.poll_read_ready(cx))))
                    .expect("ready");
                let mut buf = [0; 64];
                let mut buf = ReadBuf::new(&mut buf);
                let mut cx = Context::from_waker(std::task::Waker::noop());
                match server.poll_read_tls(&mut cx, &mut buf) {
                    Poll::Ready(result) => result.expect("read"),
                    Poll::Pending => {
                        // The start of a record waits in a buffer of its
                        // own size.
                        assert!(server.incoming.capacity() < wire.len(), "{chunk}");
                    }
                }
                got.extend_from_slice(buf.filled());
            }
            assert_eq!(got, message, "chunks of {chunk}");
            assert_idle(&server);
        }
    }

    #[test]
    fn close_notify_follows_everything_written() {
        use tokio::io::AsyncWriteExt;
        let rt = runtime();
        for version in [&TLS13, &TLS12] {
            let (mut server, mut client) = pair(&rt, version);
            let data = pattern(50_000);
            let client_reads = std::thread::spawn(move || client.read(usize::MAX));
            rt.block_on(within_5s(async {
                server.write_all(&data).await.expect("write");
                server.shutdown().await.expect("shutdown");
            }));
            // The client's read ends cleanly: `close_notify` came, after
            // all of it.
            let got = client_reads
                .join()
                .expect("client thread")
                .expect("clean end");
            assert_eq!(got, data);
            assert_idle(&server);
        }
    }

    #[test]
    fn a_client_that_half_closes_is_still_answered() {
        let rt = runtime();
        let (mut server, mut client) = pair(&rt, &TLS13);
        client.send(b"QUIT\n");
        client.tls.send_close_notify();
        client.flush();
        assert_eq!(server_read(&rt, &mut server, 5, 1024), b"QUIT\n");
        let mut buf = [0; 16];
        let end = rt.block_on(within_5s(tokio::io::AsyncReadExt::read(
            &mut server,
            &mut buf,
        )));
        assert_eq!(end.expect("close_notify is a clean end"), 0);
        assert_idle(&server);
        server_write(&rt, &mut server, b"BYE\n");
        assert_eq!(client.read(4).expect("client read"), b"BYE\n");
    }

    #[test]
    fn an_eof_without_close_notify_is_unexpected() {
        let rt = runtime();
        let (mut server, client) = pair(&rt, &TLS13);
        client.tcp.shutdown(std::net::Shutdown::Write).expect("FIN");
        let mut buf = [0; 16];
        let end = rt.block_on(within_5s(tokio::io::AsyncReadExt::read(
            &mut server,
            &mut buf,
        )));
        assert_eq!(
            end.expect_err("no close_notify").kind(),
            ErrorKind::UnexpectedEof
        );
        assert_idle(&server);
    }

    #[test]
    fn a_key_update_is_answered_and_traffic_goes_on() {
        let rt = runtime();
        let (mut server, mut client) = pair(&rt, &TLS13);
        client.tls.refresh_traffic_keys().expect("key update");
        client.send(b"PING\n");
        assert_eq!(server_read(&rt, &mut server, 5, 1024), b"PING\n");
        server_write(&rt, &mut server, b"PONG\n");
        // Our key update went first, then PONG as the first record under
        // the new key.
        assert_eq!(own_records(&mut server).send_seq(), 1);
        assert_eq!(client.read(5).expect("client read"), b"PONG\n");
        assert_idle(&server);
    }

    #[test]
    fn a_client_that_asks_for_key_updates_and_never_reads_is_answered_once() {
        let rt = runtime();
        let (mut server, mut client) = pair(&rt, &TLS13);
        // The client reads what the handshake left (session tickets) first.
        server_write(&rt, &mut server, b"HI\n");
        assert_eq!(client.read(3).expect("client read"), b"HI\n");
        for i in 0..100 {
            // Each asks for ours; a byte of data between them keeps within
            // the bound on key updates in a row.
            client.tls.refresh_traffic_keys().expect("key update");
            client.send(b"x");
            assert_eq!(server_read(&rt, &mut server, 1, 16), b"x", "{i}");
            // Reading queued nothing to send.
            assert_idle(&server);
        }
        // And sent nothing: the client's socket has no byte to read.
        client.tcp.set_nonblocking(true).expect("nonblocking");
        let mut byte = [0; 1];
        let waiting = client.tcp.peek(&mut byte);
        assert_eq!(
            waiting.map_err(|e| e.kind()),
            Err(ErrorKind::WouldBlock),
            "the server wrote while it only read"
        );
        client.tcp.set_nonblocking(false).expect("blocking");
        server_write(&rt, &mut server, b"PONG\n");
        assert_eq!(own_records(&mut server).send_seq(), 1);
        assert_eq!(client.read(5).expect("client read"), b"PONG\n");
    }

    #[test]
    fn a_client_that_speaks_no_tls_fails_the_handshake() {
        let rt = runtime();
        let (acceptor, _) = configs(&TLS13);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("send");
        let (tcp, _) = listener.accept().expect("accept");
        tcp.set_nonblocking(true).expect("nonblocking");
        let result = rt.block_on(async {
            let tcp = TcpStream::from_std(tcp).expect("tokio socket");
            handshake(&acceptor, tcp, Duration::from_secs(5)).await
        });
        assert!(
            matches!(result, Err(HandshakeError::Failed(_))),
            "{result:?}"
        );
    }
}
