//! Accepting clients. Every worker thread runs its own acceptor on a clone
//! of the one listening socket, with its own pool manager, and starts the
//! connections it accepts on its own thread: a new client costs no hop
//! between threads. A worker that is busy accepts less, so load spreads by
//! itself.
//!
//! Each acceptor admits or refuses (`ERR server-full` past
//! `--max-connections` or `--max-connections-per-ip`, `ERR draining` during
//! a drain, both followed by a
//! short lingering close), assigns the id, checks a state out of its pool
//! and starts the `Connection`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use actix::Addr;
use conn_actor::{ConnState, Connection, Refusal, WorkerContext};
use gateway_metrics::{GatewayMetrics, RejectReason};
use pool_manager::{CheckoutOf, PoolManager};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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
}

/// Connection ids: never reused for the life of the process.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static REFUSING: AtomicUsize = AtomicUsize::new(0);

impl Acceptor {
    /// Accepts until the process stops.
    pub async fn run(self) {
        loop {
            let (stream, peer) = match self.listener.accept().await {
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
            if self.drain.is_draining() {
                self.metrics.rejected(RejectReason::Draining);
                self.refuse(stream, b"ERR draining");
                continue;
            }
            let slot = match self.context.admission().try_admit_from(peer.ip()) {
                Ok(slot) => slot,
                Err(refusal) => {
                    self.metrics.rejected(match refusal {
                        Refusal::Full => RejectReason::Full,
                        Refusal::PerIp => RejectReason::PerIp,
                    });
                    self.refuse(stream, b"ERR server-full");
                    continue;
                }
            };
            // Small frames must not wait for more to fill a segment.
            let _ = stream.set_nodelay(true);
            let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
            let Ok(lease) = self.pool.send(CheckoutOf::default()).await else {
                // The pool manager is gone: the system is stopping (the
                // slot is given back as it drops).
                continue;
            };
            Connection::start(
                id,
                stream.into(),
                peer,
                lease.state,
                slot,
                self.context.clone(),
            );
            // Counted once listed, so an active connection can be addressed.
            self.metrics.connections_accepted.inc();
            self.metrics.connections_active.inc();
        }
    }

    /// Closes a refused client at once: one frame, EOF, and a short
    /// lingering read so the frame is not lost to a reset.
    fn refuse(&self, stream: TcpStream, frame: &'static [u8]) {
        if REFUSING.fetch_add(1, Ordering::Relaxed) >= MAX_REFUSING {
            REFUSING.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let encoded = self.context.codec().encode(&[frame]);
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
