//! The gateway: flags, the client listener, the topic and user registry,
//! the admin server, and start-up and drain. Connections themselves live in
//! `conn-actor`, recycled state in `pool-manager`, metric names in
//! `gateway-metrics`, the registry and the routing seam in
//! `gateway-registry`.
//!
//! Threads: each of the `--workers` arbiters accepts clients on its own
//! clone of the listening socket, keeps its own pool manager and runs the
//! connection actors it accepted; the system thread runs the drain;
//! actix-web runs the admin API on its own thread. The registry is shared
//! by all of them.

pub mod acceptor;
pub mod admin;
pub mod config;
pub mod drain;
pub mod listeners;
pub mod logging;
pub mod tls;
pub mod ws_upgrade;

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use actix::Actor;
use actix_rt::Arbiter;
use anyhow::Context as _;
use conn_actor::transport::tls as client_tls;
use conn_actor::{Admission, ConnState, FrameCodec, Hub, WorkerContext};
use gateway_cluster::Cluster;
use gateway_registry::{Registry, Router};
use pool_manager::PoolManager;

use crate::acceptor::Acceptor;
use crate::admin::AdminState;
use crate::config::Config;
use crate::drain::Drain;

/// A worker's runtime: actix-rt's own (one thread, I/O and timers), which
/// yields the core before it blocks for lack of work
/// (`conn_actor::park`).
fn worker_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(conn_actor::park::before_park)
        .build()
}

/// Runs the gateway until it has drained. Prints `READY` once both
/// listeners are bound.
pub fn run(config: Config) -> anyhow::Result<()> {
    let system = actix_rt::System::new();
    let (prometheus, metrics) =
        gateway_metrics::new_registry().context("cannot register metrics")?;
    let workers = (0..config.workers)
        .map(|_| Arbiter::try_with_tokio_rt(worker_runtime))
        .collect::<std::io::Result<Vec<Arbiter>>>()
        .context("cannot start a worker")?;
    let client_cert = config
        .tls
        .clone()
        .map(|files| tls::Certificate::load("client", files))
        .transpose()?;
    let admin_cert = config
        .admin_tls
        .clone()
        .map(|files| tls::Certificate::load("admin", files))
        .transpose()?;
    let client_tls = match &client_cert {
        Some(cert) => Some(client_tls::acceptor(cert.server_config(&[])?)),
        None => None,
    };
    let admin_tls = match &admin_cert {
        Some(cert) => Some(client_tls::acceptor(cert.server_config(&[b"http/1.1"])?)),
        None => None,
    };

    let (client, admin, ws, cluster) = system.block_on(async {
        let codec = FrameCodec::new(config.limits.framing, config.limits.max_frame_bytes);
        let run = config::random_hex();
        let id_prefix = config
            .cluster
            .as_ref()
            .map(|_| Arc::from(format!("{}.{run}-", config.node_id)));
        // A single node keeps history in memory, in the registry; a
        // cluster keeps it in its stream, behind the cluster's hub.
        let local_history = config.history.clone().filter(|_| config.cluster.is_none());
        let registry = Registry::with_history(metrics.clone(), codec, id_prefix, local_history);
        let cluster = match config.cluster.clone() {
            Some(settings) => Some(Cluster::start(
                settings,
                run,
                registry.clone(),
                &prometheus,
                config.history.clone(),
            )?),
            None => None,
        };
        let (router, hub): (Arc<dyn Router>, Arc<dyn Hub>) = match &cluster {
            Some(cluster) => (cluster.router(), cluster.hub()),
            None => (Arc::new(registry.clone()), Arc::new(registry.clone())),
        };
        // A socket per worker on each listener (`listeners.rs`).
        let client_listeners = listeners::bind(config.listen, workers.len(), "client")?;
        let client = client_listeners[0].local_addr()?;
        let ws_listeners = match &config.ws {
            Some(ws) => Some(listeners::bind(ws.listen, workers.len(), "WebSocket")?),
            None => None,
        };
        let ws = ws_listeners
            .as_ref()
            .map(|sockets| sockets[0].local_addr())
            .transpose()?;
        let mut ws_listeners = ws_listeners.map(Vec::into_iter);
        let ws_policy = config.ws.as_ref().map(|ws| Arc::new(ws.policy.clone()));
        let drain = Drain::default();
        let (admin_server, admin) = admin::bind(
            config.admin_listen,
            admin_tls,
            AdminState {
                registry: registry.clone(),
                router,
                prometheus,
                metrics: metrics.clone(),
                drain: drain.clone(),
                framing: config.limits.framing,
                token: config.admin_token.clone(),
                started: Instant::now(),
                node_id: config.node_id.clone(),
                cluster: cluster.clone(),
            },
        )?;
        let admin_handle = admin_server.handle();
        actix_rt::spawn(async move {
            if let Err(err) = admin_server.await {
                tracing::error!(error = %err, "admin server failed");
            }
        });
        let admission = Arc::new(
            Admission::new(config.max_connections).with_per_ip(config.max_connections_per_ip),
        );
        for ((index, worker), listener) in workers.iter().enumerate().zip(client_listeners) {
            let pool_max_idle = share_of(config.pool_max_idle, workers.len(), index);
            let ws_listener = ws_listeners.as_mut().and_then(Iterator::next);
            let ws_policy = ws_policy.clone();
            let limits = config.limits.clone();
            let tokens = config.client_tokens.clone();
            let (hub, admission) = (hub.clone(), admission.clone());
            let (metrics, drain) = (metrics.clone(), drain.clone());
            let tls = client_tls.clone();
            worker.spawn(async move {
                let pool = PoolManager::<ConnState>::new(pool_max_idle, metrics.clone()).start();
                let close_timeout = limits.close_timeout;
                let context = WorkerContext::new(
                    limits,
                    hub,
                    metrics.clone(),
                    admission,
                    pool.clone().recipient(),
                    tokens,
                );
                let acceptor = |listener, websocket| {
                    tokio::net::TcpListener::from_std(listener).map(|listener| Acceptor {
                        listener,
                        pool: pool.clone(),
                        context: context.clone(),
                        metrics: metrics.clone(),
                        close_timeout,
                        drain: drain.clone(),
                        websocket,
                        // With --tls-cert the WebSocket listener is `wss`.
                        tls: tls.clone(),
                    })
                };
                if let Some(ws_listener) = ws_listener {
                    match acceptor(ws_listener, ws_policy) {
                        Ok(ws) => drop(actix_rt::spawn(ws.run())),
                        Err(err) => {
                            tracing::error!(error = %err, "a worker cannot accept WebSocket clients");
                        }
                    }
                }
                match acceptor(listener, None) {
                    Ok(acceptor) => acceptor.run().await,
                    Err(err) => tracing::error!(error = %err, "a worker cannot accept clients"),
                }
            });
        }
        let signals = drain::Signals::install().context("cannot install signal handlers")?;
        actix_rt::spawn(signals.drain_on_each(drain.clone()));
        let certificates = client_cert.into_iter().chain(admin_cert).collect();
        let reloads =
            tls::Reloads::install(certificates).context("cannot install the SIGHUP handler")?;
        actix_rt::spawn(reloads.run());
        actix_rt::spawn(drain::run(
            drain,
            registry,
            admin_handle,
            admission,
            config.shutdown_timeout,
        ));
        anyhow::Ok((client, admin, ws, cluster))
    })?;

    announce_ready(client, admin, ws)?;
    tracing::info!(%client, %admin, workers = config.workers, "gateway ready");
    system.run().context("the actor system failed")?;
    if let Some(cluster) = cluster {
        cluster.leave(std::time::Duration::from_millis(500));
    }
    for worker in workers {
        worker.stop();
    }
    Ok(())
}

/// Worker `index`'s part of `total` pooled states, so the parts add up to
/// `--pool-max-idle`.
fn share_of(total: usize, workers: usize, index: usize) -> usize {
    total / workers + usize::from(index < total % workers)
}

/// The one line on stdout; tests and supervisors wait for it. With a
/// WebSocket listener it ends with ` ws=ADDR`.
fn announce_ready(
    client: SocketAddr,
    admin: SocketAddr,
    ws: Option<SocketAddr>,
) -> anyhow::Result<()> {
    let ws = ws.map(|ws| format!(" ws={ws}")).unwrap_or_default();
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "READY client={client} admin={admin}{ws}")
        .and_then(|()| stdout.flush())
        .context("cannot write the READY line")
}

#[cfg(test)]
mod tests {
    use super::share_of;

    #[test]
    fn pool_shares_add_up_to_the_total() {
        for (total, workers) in [(1024, 2), (1025, 2), (0, 3), (5, 3), (1, 4)] {
            let parts: Vec<usize> = (0..workers).map(|i| share_of(total, workers, i)).collect();
            assert_eq!(parts.iter().sum::<usize>(), total, "{parts:?}");
            assert!(parts.iter().max().unwrap_or(&0) - parts.iter().min().unwrap_or(&0) <= 1);
        }
    }
}
