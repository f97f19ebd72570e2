//! Accepting clients. Every worker thread runs its own acceptor on a clone
//! of the one listening socket, with its own pool manager, and starts the
//! connections it accepts on its own thread: a new client costs no hop
//! between threads. A worker that is busy accepts less, so load spreads by
//! itself.
//!
//! Each acceptor admits or refuses (`ERR server-full` past
//! `--max-connections` or `--max-connections-per-ip`, `ERR draining` during
//! a drain, both followed by a short lingering close), assigns the id, checks a state out of its pool
//! and starts the `Connection`. With TLS, each client's handshake runs
//! first, in a task of its own on the same thread and bounded by
//! `--close-timeout`; a handshake that fails or runs out of time is
//! dropped, counted in `gateway_tls_handshake_failures_total` and never
//! admitted or accepted. Refusals then go out over TLS too. The WebSocket listener's acceptors first
//! run the upgrade, each in a task of its own so that a slow request holds
//! up no other client; a request that is refused or never finishes is no
//! connection at all. Refusals after an upgrade are a WebSocket message and
//! a Close frame.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use actix::Addr;
use conn_actor::transport::tls::{self, TlsAcceptor};
use conn_actor::{ConnState, Connection, FrameCodec, Refusal, Transport, WorkerContext, WsStream};
use gateway_metrics::{GatewayMetrics, RejectReason};
use pool_manager::{CheckoutOf, PoolManager};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use ws_protocol::CloseCode;
use ws_protocol::handshake::Policy;

use crate::drain::Drain;

/// Refused clients being closed at once; past it they are dropped unread.
const MAX_REFUSING: usize = 1024;

/// One worker thread's acceptor.
pub struct Acceptor {
    /// This thread's registration of the shared listening socket.
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
        loop {
            let (stream, peer) = match this.listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(err) => {
                    // Out of descriptors or a client gone before accept:
                    // back off briefly rather than spin.
                    tracing::warn!(error = %err, "accept failed");
                    actix_rt::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            // Small frames must not wait for more to fill a segment.
            let _ = stream.set_nodelay(true);
            if this.tls.is_none() && this.websocket.is_none() {
                this.admit(Transport::Tcp(stream), peer).await;
            } else {
                let this = Arc::clone(&this);
                actix_rt::spawn(async move { this.prepare(stream, peer).await });
            }
        }
    }

    /// The TLS handshake and the WebSocket upgrade, where this listener
    /// has them, then the admission.
    async fn prepare(&self, stream: TcpStream, peer: SocketAddr) {
        let transport = match &self.tls {
            None => Transport::Tcp(stream),
            Some(acceptor) => match tls::handshake(acceptor, stream, self.close_timeout).await {
                Ok(transport) => transport,
                Err(err) => {
                    // Anyone can connect and send garbage: only worth a
                    // debug line, and the count.
                    self.metrics.tls_handshake_failures.inc();
                    tracing::debug!(%peer, error = %err, "TLS handshake failed");
                    return;
                }
            },
        };
        match &self.websocket {
            None => self.admit(transport, peer).await,
            Some(policy) => self.upgrade(transport, peer, policy).await,
        }
    }

    /// Runs the WebSocket upgrade, then admits the client.
    async fn upgrade(&self, mut stream: Transport, peer: SocketAddr, policy: &Policy) {
        match crate::ws_upgrade::upgrade(&mut stream, policy, self.close_timeout).await {
            Ok(early) => {
                let max_message = self.context.limits().max_frame_bytes;
                let ws = WsStream::new(stream, early, max_message);
                self.admit(Transport::Ws(Box::new(ws)), peer).await;
            }
            Err(err) => tracing::debug!(%peer, error = %err, "no WebSocket upgrade"),
        }
    }

    /// Starts a connection for the client, or refuses it.
    async fn admit(&self, transport: Transport, peer: SocketAddr) {
        if self.drain.is_draining() {
            self.metrics.rejected(RejectReason::Draining);
            self.refuse(transport, b"ERR draining", CloseCode::Away);
            return;
        }
        let slot = match self.context.admission().try_admit_from(peer.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                self.metrics.rejected(match refusal {
                    Refusal::Full => RejectReason::Full,
                    Refusal::PerIp => RejectReason::PerIp,
                });
                self.refuse(transport, b"ERR server-full", CloseCode::Library(4000));
                return;
            }
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

    /// Closes a refused client at once: one frame (for a WebSocket client
    /// a message and a Close frame with `code`), EOF, and a short
    /// lingering read so the frame is not lost to a reset.
    fn refuse(&self, transport: Transport, frame: &'static [u8], code: CloseCode) {
        if REFUSING.fetch_add(1, Ordering::Relaxed) >= MAX_REFUSING {
            REFUSING.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let (stream, encoded) = match transport {
            Transport::Ws(ws) => {
                let message = FrameCodec::websocket(frame.len()).encode(&[frame]);
                let close = ws_protocol::encode::close(code);
                // Written as they are to what carries the WebSocket.
                (ws.into_inner(), [&message[..], &close[..]].concat().into())
            }
            plain_or_tls => (plain_or_tls, self.context.codec().encode(&[frame])),
        };
        let linger = self.close_timeout;
        actix_rt::spawn(async move {
            let _ = refuse_gracefully(stream, &encoded, linger).await;
            REFUSING.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn refuse_gracefully(
    mut stream: Transport,
    frame: &[u8],
    linger: Duration,
) -> std::io::Result<()> {
    let _ = stream.tcp().set_nodelay(true);
    stream.write_all(frame).await?;
    stream.shutdown().await?;
    let mut sink = [0u8; 1024];
    let drained = async {
        while stream.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    };
    let _ = actix_rt::time::timeout(linger, drained).await;
    Ok(())
}
