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
use tokio_util::sync::CancellationToken;

use gateway_registry::Registry;

/// A cheap handle to ask for, and ask about, the drain.
#[derive(Clone, Default)]
pub struct Drain {
    inner: Arc<Inner>,
}

/// `draining` answers the hot question (every accept asks it) with one
/// atomic load; `requested` is what waiters await, and any number of them
/// may, at any time, before or after the drain began.
#[derive(Default)]
struct Inner {
    draining: AtomicBool,
    requested: CancellationToken,
}

impl Drain {
    /// Asks for the drain; returns `false` when it had already begun.
    pub fn start(&self) -> bool {
        let first = !self.inner.draining.swap(true, Ordering::SeqCst);
        self.inner.requested.cancel();
        first
    }

    /// Whether the drain has begun.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// Resolves once the drain has begun (at once if it already has).
    async fn requested(&self) {
        self.inner.requested.cancelled().await;
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

#[cfg(test)]
mod tests {
    use super::Drain;

    #[actix_rt::test]
    async fn a_waiter_that_comes_after_the_request_still_sees_it() {
        let drain = Drain::default();
        assert!(!drain.is_draining());
        assert!(drain.start(), "the first request starts the drain");
        assert!(!drain.start(), "a second one finds it under way");
        // Both a late waiter and a second one resolve at once.
        drain.requested().await;
        drain.clone().requested().await;
        assert!(drain.is_draining());
    }
}
