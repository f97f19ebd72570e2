//! One drain path for SIGTERM, SIGINT and `POST /api/v1/drain` (contract
//! section 9): stop serving new clients, kick every connection with
//! `KICK shutdown` behind what was queued for it, and stop the process once
//! all are closed or `--shutdown-timeout` runs out.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use gateway_metrics::GatewayMetrics;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::Notify;

use gateway_registry::Registry;

/// How often the drain checks whether every connection is gone.
const POLL: Duration = Duration::from_millis(20);

/// A cheap handle to ask for, and ask about, the drain.
#[derive(Clone, Default)]
pub struct Drain {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    draining: AtomicBool,
    requested: Notify,
}

impl Drain {
    /// Asks for the drain; returns `false` when it had already begun.
    pub fn start(&self) -> bool {
        let first = !self.inner.draining.swap(true, Ordering::SeqCst);
        if first {
            self.inner.requested.notify_one();
        }
        first
    }

    /// Whether the drain has begun.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    async fn requested(&self) {
        self.inner.requested.notified().await;
    }
}

/// Waits for the drain, carries it out, then stops the actor system.
pub async fn run(
    drain: Drain,
    registry: Registry,
    admin: ServerHandle,
    metrics: GatewayMetrics,
    timeout: Duration,
) {
    drain.requested().await;
    let active = metrics.connections_active.get();
    tracing::info!(active, "draining");
    registry.drain_all();
    let all_closed = async {
        while metrics.connections_active.get() > 0 {
            actix_rt::time::sleep(POLL).await;
        }
    };
    match actix_rt::time::timeout(timeout, all_closed).await {
        Ok(()) => tracing::info!("drained; exiting"),
        Err(_) => tracing::warn!(
            left = metrics.connections_active.get(),
            "shutdown timeout ran out; exiting"
        ),
    }
    // Let the admin server finish what it is answering (the drain request
    // itself, among others) before the process goes.
    admin.stop(true).await;
    actix_rt::System::current().stop();
}

/// SIGTERM and SIGINT, caught from the moment this exists: install it
/// before announcing `READY`, or an early signal kills the process.
pub struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Installs the handlers.
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Starts the drain on each signal.
    pub async fn drain_on_each(mut self, drain: Drain) {
        loop {
            let name = tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            };
            if drain.start() {
                tracing::info!(signal = name, "drain requested");
            }
        }
    }
}
