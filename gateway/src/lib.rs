//! The gateway: flags, the client listener, the topic and user registry,
//! the admin server, and start-up and drain. Connections themselves live in
//! `conn-actor`, recycled state in `pool-manager`, metric names in
//! `gateway-metrics`.
//!
//! Threads: the system thread runs the acceptor, the pool manager and the
//! drain; `--workers` arbiters run the connection actors; actix-web runs
//! the admin API on its own thread. The registry is shared by all of them.

pub mod acceptor;
pub mod admin;
pub mod config;
pub mod drain;
pub mod logging;
pub mod registry;

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use actix::Actor;
use actix_rt::Arbiter;
use anyhow::Context as _;
use conn_actor::{ConnState, Shared};
use pool_manager::PoolManager;

use crate::acceptor::Acceptor;
use crate::admin::AdminState;
use crate::config::Config;
use crate::drain::Drain;
use crate::registry::Registry;

/// Pending connections the kernel queues before `accept`.
const LISTEN_BACKLOG: i32 = 4096;

/// Runs the gateway until it has drained. Prints `READY` once both
/// listeners are bound.
pub fn run(config: Config) -> anyhow::Result<()> {
    let system = actix_rt::System::new();
    let (prometheus, metrics) =
        gateway_metrics::new_registry().context("cannot register metrics")?;
    let workers: Vec<Arbiter> = (0..config.workers).map(|_| Arbiter::new()).collect();

    let (client, admin) = system.block_on(async {
        let registry = Registry::new(metrics.clone());
        let pool = PoolManager::<ConnState>::new(config.pool_max_idle, metrics.clone()).start();
        let shared = Shared::new(
            config.limits.clone(),
            Arc::new(registry.clone()),
            metrics.clone(),
            pool.clone().recipient(),
        );
        let listener = bind_clients(config.listen)?;
        let client = listener.local_addr()?;
        let drain = Drain::default();
        let (admin_server, admin) = admin::bind(
            config.admin_listen,
            AdminState {
                registry: registry.clone(),
                prometheus,
                metrics: metrics.clone(),
                drain: drain.clone(),
                framing: config.limits.framing,
                token: config.admin_token.clone(),
                started: Instant::now(),
            },
        )?;
        let admin_handle = admin_server.handle();
        actix_rt::spawn(async move {
            if let Err(err) = admin_server.await {
                tracing::error!(error = %err, "admin server failed");
            }
        });
        actix_rt::spawn(
            Acceptor {
                listener,
                workers: workers.iter().map(Arbiter::handle).collect(),
                pool,
                shared,
                metrics: metrics.clone(),
                max_connections: config.max_connections,
                close_timeout: config.limits.close_timeout,
                drain: drain.clone(),
            }
            .run(),
        );
        actix_rt::spawn(drain::on_signals(drain.clone()));
        actix_rt::spawn(drain::run(
            drain,
            registry,
            admin_handle,
            metrics.clone(),
            config.shutdown_timeout,
        ));
        anyhow::Ok((client, admin))
    })?;

    announce_ready(client, admin)?;
    tracing::info!(%client, %admin, workers = config.workers, "gateway ready");
    system.run().context("the actor system failed")?;
    for worker in workers {
        worker.stop();
    }
    Ok(())
}

fn bind_clients(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let bind = || -> std::io::Result<tokio::net::TcpListener> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        tokio::net::TcpListener::from_std(socket.into())
    };
    bind().with_context(|| format!("cannot bind the client listener on {addr}"))
}

/// The one line on stdout; tests and supervisors wait for it.
fn announce_ready(client: SocketAddr, admin: SocketAddr) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "READY client={client} admin={admin}")
        .and_then(|()| stdout.flush())
        .context("cannot write the READY line")
}
