//! `GET /api/v1/cluster`: this node, its NATS connection and every live
//! node it knows of, itself included. A single node answers with
//! `"nats": null` and itself alone.

use actix_web::HttpResponse;
use serde_json::json;

use super::State;
use crate::admin::ApiError;
use crate::admin::body::Body;

/// `GET /api/v1/cluster`.
pub async fn cluster(state: State, body: Body) -> Result<HttpResponse, ApiError> {
    body.none()?;
    let answer = match &state.cluster {
        Some(cluster) => json!(cluster.info()),
        None => json!({
            "node": state.node_id,
            "nats": null,
            "nodes": [{
                "id": state.node_id,
                "connections": state.registry.open_count(),
                "last_seen_seconds": 0.0,
            }],
        }),
    };
    Ok(HttpResponse::Ok().json(answer))
}
