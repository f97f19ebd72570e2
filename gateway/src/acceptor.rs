//! The client listener: admits or refuses each client, checks a state out
//! of the pool, and starts the connection actor on a worker thread, round
//! robin. It runs on one thread and does no per-connection work beyond
//! that, so it is not the bottleneck.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use actix::Addr;
use actix_rt::ArbiterHandle;
use conn_actor::{ConnState, Connection, Shared};
use gateway_metrics::GatewayMetrics;
use pool_manager::{CheckoutOf, PoolManager};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::drain::Drain;

/// Refused clients being closed at once; past it they are dropped unread.
const MAX_REFUSING: usize = 1024;

/// What the acceptor needs.
pub struct Acceptor {
    pub listener: TcpListener,
    pub workers: Vec<ArbiterHandle>,
    pub pool: Addr<PoolManager<ConnState>>,
    pub shared: Arc<Shared>,
    pub metrics: GatewayMetrics,
    pub max_connections: usize,
    pub close_timeout: Duration,
    pub drain: Drain,
}

/// Connection ids: never reused for the life of the process.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static REFUSING: AtomicUsize = AtomicUsize::new(0);

impl Acceptor {
    /// Accepts until the process stops.
    pub async fn run(self) {
        let mut next_worker = 0;
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of descriptors or a client gone before accept:
                    // back off briefly rather than spin.
                    tracing::warn!(error = %err, "accept failed");
                    actix_rt::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let metrics = &self.metrics;
            if self.drain.is_draining() {
                metrics.rejected("draining");
                self.refuse(stream, b"ERR draining");
                continue;
            }
            if metrics.connections_active.get() >= self.max_connections as i64 {
                metrics.rejected("full");
                self.refuse(stream, b"ERR server-full");
                continue;
            }
            metrics.connections_accepted.inc();
            metrics.connections_active.inc();
            let worker = self.workers[next_worker % self.workers.len()].clone();
            next_worker = next_worker.wrapping_add(1);
            self.admit(stream, peer, worker);
        }
    }

    fn admit(&self, stream: TcpStream, peer: SocketAddr, worker: ArbiterHandle) {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let pool = self.pool.clone();
        let shared = self.shared.clone();
        let metrics = self.metrics.clone();
        // Small frames must not wait for more to fill a segment.
        let _ = stream.set_nodelay(true);
        actix_rt::spawn(async move {
            let (lease, std_stream) =
                match (pool.send(CheckoutOf::default()).await, stream.into_std()) {
                    (Ok(lease), Ok(std_stream)) => (lease, std_stream),
                    _ => {
                        // The pool is gone (shutting down) or the socket broke.
                        metrics.connections_active.dec();
                        metrics.closed("error");
                        return;
                    }
                };
            let started = worker.spawn(async move {
                match TcpStream::from_std(std_stream) {
                    Ok(stream) => {
                        Connection::start(id, stream, peer, lease.state, shared);
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot register client socket");
                        metrics.connections_active.dec();
                        metrics.closed("error");
                    }
                }
            });
            if !started {
                tracing::warn!("worker thread is gone");
            }
        });
    }

    /// Closes a refused client at once: one frame, EOF, and a short
    /// lingering read so the frame is not lost to a reset.
    fn refuse(&self, stream: TcpStream, frame: &'static [u8]) {
        if REFUSING.fetch_add(1, Ordering::Relaxed) >= MAX_REFUSING {
            REFUSING.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let encoded = self.shared.codec().encode(&[frame]);
        let linger = self.close_timeout;
        actix_rt::spawn(async move {
            let _ = refuse_gracefully(stream, &encoded, linger).await;
            REFUSING.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn refuse_gracefully(
    mut stream: TcpStream,
    frame: &[u8],
    linger: Duration,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
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
