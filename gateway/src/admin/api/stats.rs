//! `GET /api/v1/stats`: the gateway's counters in one JSON object, read
//! from the same metrics `/metrics` exports plus the registry's counts.

use actix_web::HttpResponse;
use serde_json::json;

use super::State;
use crate::admin::ApiError;
use crate::admin::body::Body;

/// `GET /api/v1/stats`.
pub async fn stats(state: State, body: Body) -> Result<HttpResponse, ApiError> {
    body.none()?;
    let counts = state.registry.counts();
    let m = &state.metrics;
    Ok(HttpResponse::Ok().json(json!({
        "connections": {
            "active": m.connections_active.get(),
            "accepted": m.connections_accepted.get(),
            "closed": m.connections_closed.total(),
            "rejected": m.connections_rejected.total(),
        },
        "pool": {
            "idle": m.pool_idle.get(),
            "reused": m.pool_reused.get(),
            "allocated": m.pool_allocated.get(),
            "discarded": m.pool_discarded.get(),
        },
        "topics": counts.topics,
        "subscriptions": counts.subscriptions,
        "uptime_seconds": state.started.elapsed().as_secs_f64(),
        "draining": state.drain.is_draining(),
    })))
}
