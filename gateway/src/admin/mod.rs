//! The admin HTTP server (contract section 7): the JSON API under
//! `/api/v1`, Prometheus' `/metrics`, and the `/healthz` and `/readyz`
//! probes. It runs on its own actix-web worker thread and reaches
//! connections only through the registry and their mailboxes.
//!
//! Endpoints:
//! - `GET /healthz`: 200 `{"status":"ok"}`
//! - `GET /readyz`: 200 while accepting, 503 while draining
//! - `GET /metrics`: Prometheus text exposition

mod error;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use actix::Addr;
use actix_web::dev::Server;
use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context as _;
use conn_actor::Framing;
use gateway_metrics::GatewayMetrics;
use serde_json::json;

pub use error::ApiError;

use crate::drain::Drain;
use crate::registry::Registry;

/// What the handlers share.
pub struct AdminState {
    pub registry: Addr<Registry>,
    pub prometheus: prometheus::Registry,
    pub metrics: GatewayMetrics,
    pub drain: Drain,
    pub framing: Framing,
    pub token: Option<String>,
    pub started: Instant,
}

/// Binds the admin listener; the returned server runs once spawned.
pub fn bind(addr: SocketAddr, state: AdminState) -> anyhow::Result<(Server, SocketAddr)> {
    let state = web::Data::from(Arc::new(state));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics))
            .default_service(web::to(not_found))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .bind(addr)
    .with_context(|| format!("cannot bind the admin listener on {addr}"))?;
    let bound = server
        .addrs()
        .first()
        .copied()
        .context("the admin listener has no address")?;
    Ok((server.run(), bound))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn readyz(state: web::Data<AdminState>) -> HttpResponse {
    if state.drain.is_draining() {
        HttpResponse::ServiceUnavailable().json(json!({"status": "draining"}))
    } else {
        HttpResponse::Ok().json(json!({"status": "ready"}))
    }
}

async fn metrics(state: web::Data<AdminState>) -> Result<HttpResponse, ApiError> {
    let text = gateway_metrics::encode(&state.prometheus).map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type(gateway_metrics::CONTENT_TYPE)
        .body(text))
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}
