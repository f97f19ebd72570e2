//! The admin HTTP server (contract section 7): the JSON API under
//! `/api/v1`, Prometheus' `/metrics`, and the `/healthz` and `/readyz`
//! probes. It runs on its own actix-web worker thread and reaches
//! connections only through the router and their mailboxes.
//!
//! Endpoints:
//! - `GET /healthz`: 200 `{"status":"ok"}`
//! - `GET /readyz`: 200 while accepting, 503 while draining (and, in a
//!   cluster, until the node has heard from the cluster once)
//! - `GET /metrics`: Prometheus text exposition
//! - `GET /api/v1/stats`: connection, pool, topic and subscription counts
//! - `GET /api/v1/connections?user=&topic=&limit=&cursor=`: a page of
//!   connections by id, with an opaque `next_cursor`
//! - `GET /api/v1/connections/{id}`: one connection
//! - `POST /api/v1/connections/{id}/send`: `PUSH <payload>` to it (202)
//! - `POST /api/v1/connections/{id}/close`: `KICK admin [message]` (202)
//! - `POST /api/v1/users/{user}/send`, `POST /api/v1/users/{user}/close`:
//!   the same, to the connection bound to the user
//! - `GET /api/v1/topics`: topics with subscribers
//! - `POST /api/v1/topics/{topic}/publish`: `MSG <topic> <payload>` to its
//!   subscribers, answering how many (and, on a topic with history, the
//!   offset and epoch it was stored at, once per `Idempotency-Key`)
//! - `GET /api/v1/topics/{topic}/history`,
//!   `DELETE /api/v1/topics/{topic}/history`: a topic's history, read or
//!   emptied
//! - `POST /api/v1/broadcast`: `PUSH <payload>` to every open connection
//! - `POST /api/v1/drain`: the same drain as SIGTERM (202)
//! - `GET /api/v1/cluster`: this node and the live nodes it knows of
//! - `GET /api/v1/openapi.json`: the OpenAPI 3 document of all the above
//!
//! Every `GET` route also answers `HEAD`. With `--admin-token` everything
//! under `/api` needs the bearer token ([`auth`]). Bodies are read by
//! [`body`]; the route table is in [`routes`]; the listener and its limits
//! (connections kept alive, one request at a time, each whole within 10 s
//! of its first byte) in
//! [`server`], and [`wire`] gives the HTTP layer's own errors the JSON
//! shape. Unknown routes answer 404 and known routes with another method
//! 405, both in the API's JSON error shape. This module never
//! touches a socket of a client: it asks the router (the local registry, or
//! the cluster in front of it), which queues into the connections' mailboxes.

pub mod api;
pub mod auth;
pub mod body;
mod error;
mod framer;
pub mod routes;
pub mod server;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use actix_web::dev::Server;
use actix_web::{App, HttpResponse, web};
use anyhow::Context as _;
use conn_actor::Framing;
use conn_actor::transport::tls::TlsAcceptor;
use gateway_cluster::Cluster;
use gateway_metrics::GatewayMetrics;
use gateway_registry::{Registry, Router};
use serde_json::json;

pub use error::ApiError;

use crate::drain::Drain;

/// What the handlers share.
pub struct AdminState {
    /// Local look-ups: lists, topics, counts.
    pub registry: Registry,
    /// Sends, closes, snapshots, publishes and broadcasts, wherever the
    /// targets live.
    pub router: Arc<dyn Router>,
    pub prometheus: prometheus::Registry,
    pub metrics: GatewayMetrics,
    pub drain: Drain,
    pub framing: Framing,
    pub token: Option<String>,
    pub started: Instant,
    /// This node's name (`--node-id`, or generated).
    pub node_id: String,
    /// Set when this gateway is a node of a cluster.
    pub cluster: Option<Cluster>,
}

impl AdminState {
    /// A probe's body: the status, plus `"nats"` in a cluster.
    fn probe(&self, status: &str) -> serde_json::Value {
        match &self.cluster {
            None => json!({"status": status}),
            Some(cluster) => json!({
                "status": status,
                "nats": if cluster.nats_connected() { "connected" } else { "disconnected" },
            }),
        }
    }
}

/// Binds the admin listener, speaking HTTPS when `tls` is given; the
/// returned server runs once spawned.
pub fn bind(
    addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    state: AdminState,
) -> anyhow::Result<(Server, SocketAddr)> {
    let token: Option<Arc<str>> = state.token.as_deref().map(Arc::from);
    let state = web::Data::from(Arc::new(state));
    let app = move || {
        let token = token.clone();
        App::new()
            .app_data(state.clone())
            .wrap_fn(move |req, srv| auth::check(token.as_deref(), req, srv))
            .configure(routes::configure)
            .default_service(web::to(not_found))
    };
    let listener = server::listen(addr)
        .with_context(|| format!("cannot bind the admin listener on {addr}"))?;
    let bound = listener
        .local_addr()
        .context("the admin listener has no address")?;
    let server = server::serve(listener, tls, app)
        .with_context(|| format!("cannot serve the admin listener on {bound}"))?;
    Ok((server, bound))
}

pub(crate) async fn healthz(state: web::Data<AdminState>) -> HttpResponse {
    HttpResponse::Ok().json(state.probe("ok"))
}

pub(crate) async fn readyz(state: web::Data<AdminState>) -> HttpResponse {
    if state.drain.is_draining() {
        HttpResponse::ServiceUnavailable().json(state.probe("draining"))
    } else if state
        .cluster
        .as_ref()
        .is_some_and(|cluster| !cluster.knows_cluster())
    {
        // Until then its cross-node answers would be guesses.
        HttpResponse::ServiceUnavailable().json(state.probe("starting"))
    } else {
        HttpResponse::Ok().json(state.probe("ready"))
    }
}

pub(crate) async fn metrics(state: web::Data<AdminState>) -> Result<HttpResponse, ApiError> {
    let text = gateway_metrics::encode(&state.prometheus).map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type(gateway_metrics::CONTENT_TYPE)
        .body(text))
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}
