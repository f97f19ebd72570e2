//! One drain path for SIGTERM, SIGINT and `POST /api/v1/drain` (contract
//! section 9): stop serving new clients, kick every connection with
//! `KICK shutdown` behind what was queued for it, and stop the process once
//! all are closed or `--shutdown-timeout` runs out. Each connection holds an
//! admission slot until its socket closes; the drain awaits the last one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use conn_actor::Admission;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::Notify;

use gateway_registry::Registry;

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
    admission: Arc<Admission>,
    timeout: Duration,
) {
    drain.requested().await;
    tracing::info!(active = admission.open(), "draining");
    registry.drain_all();
    match actix_rt::time::timeout(timeout, admission.none_open()).await {
        Ok(()) => tracing::info!("drained; exiting"),
        Err(_) => timed_out(&admission),
    }
    // Let the admin server finish what it is answering (the drain request
    // itself, among others) before the process goes.
    admin.stop(true).await;
    actix_rt::System::current().stop();
}

/// Says what `--shutdown-timeout` cut short. Clients that were sent
/// everything and only had not closed their side lose nothing; clients that
/// had not read all their frames lose the rest.
fn timed_out(admission: &Admission) {
    let open = admission.open();
    let not_closed = admission.flushed().min(open);
    let unwritten = open - not_closed;
    if unwritten == 0 {
        tracing::info!(
            not_closed,
            "--shutdown-timeout ran out: every client was sent its frames and \
             KICK shutdown; {not_closed} had not closed their side; exiting"
        );
    } else {
        tracing::warn!(
            unwritten,
            not_closed,
            "--shutdown-timeout ran out: {unwritten} of {open} open clients had not \
             been sent all their frames, and what was not written is dropped; \
             {not_closed} were sent everything but had not closed their side; exiting"
        );
    }
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
