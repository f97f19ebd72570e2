//! Accepting clients. Every worker thread runs its own acceptor on a
//! listening socket of its own (`listeners.rs`), with its own pool manager,
//! and starts the connections it accepts on its own thread: a new client
//! costs no hop between threads. The kernel spreads new clients over the
//! workers' sockets by a hash of their address and port.
//!
//! Each acceptor admits or refuses, assigns the id, checks a state out of
//! its pool and starts the `Connection`. A client counts toward
//! `--max-connections` and `--max-connections-per-ip` from the moment it is
//! accepted: its admission slot is taken before anything else, so a TLS
//! handshake or a WebSocket upgrade under way holds one, and stalled
//! handshakes can never take more descriptors than the limits allow.
//!
//! Refusals:
//! - past a limit, a plain TCP client gets `ERR server-full` and a short
//!   lingering close; a client of a TLS or WebSocket listener is closed at
//!   once, without a handshake (it has nothing that could carry a frame
//!   yet, and a handshake is what a flood would make us pay for);
//! - during a drain, every client gets `ERR draining` (after its
//!   handshake, over TLS or as a WebSocket message and Close 1001) and a
//!   short lingering close.
//!
//! At most `MAX_REFUSING` refusals (draining handshakes included) are
//! under way at once; past that a refused client is closed at once. With
//! TLS or WebSocket, each client's handshake runs in a task of its own on
//! the same thread, bounded by `--close-timeout`, so that a slow client
//! holds up no other; a TLS handshake that fails or runs out of time is
//! dropped, counted in `gateway_tls_handshake_failures_total` and never
//! accepted, and a WebSocket request that is refused or never finishes is
//! no connection at all.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use actix::Addr;
use conn_actor::transport::tls::{self, TlsAcceptor};
use conn_actor::{
    ConnState, Connection, FrameCodec, Refusal, Slot, Transport, WorkerContext, WsStream,
};
use gateway_metrics::{GatewayMetrics, RejectReason};
use pool_manager::{CheckoutOf, PoolManager};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use ws_protocol::handshake::Policy;
use ws_protocol::{CloseCode, Decoder, Event};

use crate::drain::Drain;
use crate::listeners;

/// Refusals under way at once (each holds a descriptor); past it a refused
/// client is closed at once, unread.
const MAX_REFUSING: usize = 1024;

/// The most often a failing `accept` is logged.
const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(1);

/// One worker thread's acceptor.
pub struct Acceptor {
    /// This worker's listening socket (one of its listener's set).
    pub listener: TcpListener,
    /// This thread's pool manager.
    pub pool: Addr<PoolManager<ConnState>>,
    /// The context this thread's connections run in.
    pub context: Arc<WorkerContext>,
    pub metrics: GatewayMetrics,
    pub close_timeout: Duration,
    pub drain: Drain,
    /// The upgrade, on the WebSocket listener.
    pub websocket: Option<Arc<Policy>>,
    /// TLS on this listener, when configured (`wss` on the WebSocket one).
    pub tls: Option<TlsAcceptor>,
}

/// Connection ids: never reused for the life of the process.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static REFUSING: AtomicUsize = AtomicUsize::new(0);

impl Acceptor {
    /// Accepts until the process stops.
    pub async fn run(self) {
        let this = Arc::new(self);
        let mut accept_errors = AcceptErrors::default();
        loop {
            let (stream, peer) = match this.listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(err) => {
                    // Out of descriptors or a client gone before accept:
                    // back off briefly rather than spin, and say so at
                    // most once a second.
                    accept_errors.failed(&err);
                    actix_rt::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            listeners::set_nodelay_after_accept(&stream);
            if this.tls.is_none() && this.websocket.is_none() {
                this.admit(Transport::Tcp(stream), peer, None).await;
                continue;
            }
            // A handshake holds a place from now on: a slot, or during a
            // drain a refusal's place.
            let held = if this.drain.is_draining() {
                match Refusing::take() {
                    Some(refusing) => Held::Refusing(refusing),
                    None => {
                        this.metrics.rejected(RejectReason::Draining);
                        continue;
                    }
                }
            } else {
                match this.context.admission().try_admit_from(peer.ip()) {
                    Ok(slot) => Held::Slot(slot),
                    Err(refusal) => {
                        // Closed at once, without a handshake.
                        this.metrics.rejected(reject_reason(refusal));
                        drop(stream);
                        continue;
                    }
                }
            };
            let this = Arc::clone(&this);
            actix_rt::spawn(async move { this.prepare(stream, peer, held).await });
        }
    }

    /// The TLS handshake and the WebSocket upgrade, where this listener
    /// has them, then the admission (or the drain's refusal).
    async fn prepare(&self, stream: TcpStream, peer: SocketAddr, held: Held) {
        let transport = match &self.tls {
            None => Transport::Tcp(stream),
            Some(acceptor) => match tls::handshake(acceptor, stream, self.close_timeout).await {
                Ok(tls) => Transport::from(tls),
                Err(err) => {
                    // Anyone can connect and send garbage: only worth a
                    // debug line, and the count.
                    self.metrics.tls_handshake_failures.inc();
                    tracing::debug!(%peer, error = %err, "TLS handshake failed");
                    return;
                }
            },
        };
        let transport = match &self.websocket {
            None => transport,
            Some(policy) => match self.upgrade(transport, peer, policy).await {
                Some(transport) => transport,
                None => return,
            },
        };
        match held {
            Held::Slot(slot) => self.admit(transport, peer, Some(slot)).await,
            Held::Refusing(refusing) => {
                self.metrics.rejected(RejectReason::Draining);
                self.refuse(transport, refusing, b"ERR draining", CloseCode::Away);
            }
        }
    }

    /// Runs the WebSocket upgrade; the client's WebSocket transport, or
    /// `None` when there is no upgrade.
    async fn upgrade(
        &self,
        mut stream: Transport,
        peer: SocketAddr,
        policy: &Policy,
    ) -> Option<Transport> {
        match crate::ws_upgrade::upgrade(&mut stream, policy, self.close_timeout).await {
            Ok(early) => {
                let max_message = self.context.limits().max_frame_bytes;
                let ws = WsStream::new(stream, early, max_message);
                Some(Transport::Ws(Box::new(ws)))
            }
            Err(err) => {
                tracing::debug!(%peer, error = %err, "no WebSocket upgrade");
                None
            }
        }
    }

    /// Starts a connection for the client, or refuses it. `slot` is the
    /// place taken at the accept, where a handshake came first.
    async fn admit(&self, transport: Transport, peer: SocketAddr, slot: Option<Slot>) {
        if self.drain.is_draining() {
            self.metrics.rejected(RejectReason::Draining);
            if let Some(refusing) = Refusing::take() {
                self.refuse(transport, refusing, b"ERR draining", CloseCode::Away);
            }
            return;
        }
        let slot = match slot {
            Some(slot) => slot,
            None => match self.context.admission().try_admit_from(peer.ip()) {
                Ok(slot) => slot,
                Err(refusal) => {
                    self.metrics.rejected(reject_reason(refusal));
                    if let Some(refusing) = Refusing::take() {
                        let frame = b"ERR server-full";
                        self.refuse(transport, refusing, frame, CloseCode::Library(4000));
                    }
                    return;
                }
            },
        };
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let Ok(lease) = self.pool.send(CheckoutOf::default()).await else {
            // The pool manager is gone: the system is stopping (the
            // slot is given back as it drops).
            return;
        };
        let label = transport.label();
        Connection::start(id, transport, peer, lease.state, slot, self.context.clone());
        // Counted once listed, so an active connection can be addressed.
        self.metrics.connections_accepted.inc();
        self.metrics.connections_active.inc();
        self.metrics.connections_by_transport.inc(label);
    }

    /// Closes a refused client at once, through its transport: one frame
    /// (for a WebSocket client a message and a Close frame with `code`),
    /// the end of the write side (over TLS `close_notify`, then the FIN),
    /// and a short lingering read so the frame is not lost to a reset.
    fn refuse(
        &self,
        transport: Transport,
        refusing: Refusing,
        frame: &'static [u8],
        code: CloseCode,
    ) {
        let refusal = match transport {
            Transport::Ws(ws) => {
                let message = FrameCodec::websocket(frame.len()).encode(&[frame]);
                let close = ws_protocol::encode::close(code);
                // Written as they are to what carries the WebSocket (TCP
                // or TLS); what the client sent after its request is read
                // first, in case its Close is already there.
                let (stream, early) = ws.into_parts();
                Refused {
                    stream,
                    wire: [&message[..], &close[..]].concat().into(),
                    websocket: Some(early),
                }
            }
            plain_or_tls => Refused {
                stream: plain_or_tls,
                wire: self.context.codec().encode(&[frame]),
                websocket: None,
            },
        };
        let linger = self.close_timeout;
        actix_rt::spawn(async move {
            // The whole refusal, its write included, is bounded.
            let _ = actix_rt::time::timeout(linger, refusal.run()).await;
            drop(refusing);
        });
    }
}

/// What a client whose handshake is under way holds.
enum Held {
    /// Its admission slot, given back if it never becomes a connection.
    Slot(Slot),
    /// During a drain: its place among the refusals under way.
    Refusing(Refusing),
}

/// A place among the [`MAX_REFUSING`] refusals under way, given back as
/// it drops.
struct Refusing(());

impl Refusing {
    fn take() -> Option<Refusing> {
        if REFUSING.fetch_add(1, Ordering::Relaxed) >= MAX_REFUSING {
            REFUSING.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Refusing(()))
    }
}

impl Drop for Refusing {
    fn drop(&mut self) {
        REFUSING.fetch_sub(1, Ordering::Relaxed);
    }
}

fn reject_reason(refusal: Refusal) -> RejectReason {
    match refusal {
        Refusal::Full => RejectReason::Full,
        Refusal::PerIp => RejectReason::PerIp,
    }
}

/// Failed accepts, logged at most once per [`ACCEPT_WARN_EVERY`] with the
/// number since the last line: out of descriptors, `accept` fails for every
/// waiting client, and a line each would flood the log.
#[derive(Default)]
struct AcceptErrors {
    last: Option<std::time::Instant>,
    since: u64,
}

impl AcceptErrors {
    fn failed(&mut self, err: &std::io::Error) {
        self.since += 1;
        let now = std::time::Instant::now();
        if self.last.is_none_or(|last| now - last >= ACCEPT_WARN_EVERY) {
            tracing::warn!(error = %err, failures = self.since, "accept failed");
            self.last = Some(now);
            self.since = 0;
        }
    }
}

/// A refused client: its last words, then what it still sends.
struct Refused {
    stream: Transport,
    wire: bytes::Bytes,
    /// For a WebSocket client, the bytes that followed its request: its
    /// Close frame, read there or later, ends the lingering read.
    websocket: Option<Vec<u8>>,
}

impl Refused {
    async fn run(mut self) -> std::io::Result<()> {
        self.stream.write_all(&self.wire).await?;
        self.stream.shutdown().await?;
        let mut decoder = Decoder::new(0);
        if let Some(early) = &mut self.websocket
            && close_seen(&mut decoder, early)
        {
            return Ok(());
        }
        let mut sink = [0u8; 1024];
        loop {
            let n = self.stream.read(&mut sink).await?;
            if n == 0 {
                return Ok(());
            }
            if self.websocket.is_some() && close_seen(&mut decoder, &mut sink[..n]) {
                // The closing handshake is complete: nothing follows a
                // Close.
                return Ok(());
            }
        }
    }
}

/// Whether `bytes` end the client's side of a WebSocket with its Close. The
/// decoder takes no message: data frames are skipped unbuffered.
fn close_seen(decoder: &mut Decoder, bytes: &mut [u8]) -> bool {
    let mut closed = false;
    decoder.decode(bytes, |event| closed |= matches!(event, Event::Close(_)));
    closed
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// A masked client Close frame with code 1000.
    const CLOSE: [u8; 8] = [0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xe8 ^ 2];
    /// A masked client text message `hi`.
    const TEXT: [u8; 8] = [0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2];
    /// What a refused WebSocket client is sent: `ERR` and Close 4000.
    const REFUSAL: &[u8] = b"\x81\x03ERR\x88\x02\x0f\xa0";

    async fn pair() -> (Transport, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let client = TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (Transport::Tcp(server), client)
    }

    fn websocket_refusal(stream: Transport, early: Vec<u8>) -> Refused {
        Refused {
            stream,
            wire: Bytes::from_static(REFUSAL),
            websocket: Some(early),
        }
    }

    /// Reads the refusal and the server's EOF after it.
    async fn read_refusal(client: &mut TcpStream) {
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, REFUSAL);
    }

    #[actix_rt::test]
    async fn a_websocket_refusal_ends_at_the_clients_close_not_its_eof() {
        let (server, mut client) = pair().await;
        let refusal = actix_rt::spawn(websocket_refusal(server, Vec::new()).run());
        read_refusal(&mut client).await;
        // A message is skipped; the Close ends it while the client's
        // socket stays open.
        client.write_all(&TEXT).await.expect("write");
        client.write_all(&CLOSE).await.expect("write");
        let ended = actix_rt::time::timeout(Duration::from_secs(5), refusal).await;
        assert!(
            matches!(ended, Ok(Ok(Ok(())))),
            "still lingering: {ended:?}"
        );
    }

    #[actix_rt::test]
    async fn a_close_sent_with_the_upgrade_request_ends_the_refusal_after_its_write() {
        let (server, mut client) = pair().await;
        let early = [&TEXT[..], &CLOSE[..]].concat();
        let refusal = actix_rt::spawn(websocket_refusal(server, early).run());
        let ended = actix_rt::time::timeout(Duration::from_secs(5), refusal).await;
        assert!(
            matches!(ended, Ok(Ok(Ok(())))),
            "still lingering: {ended:?}"
        );
        read_refusal(&mut client).await;
    }
}
