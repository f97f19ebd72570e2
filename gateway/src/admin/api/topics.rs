//! Topics and fan-out: `GET /api/v1/topics`,
//! `POST /api/v1/topics/{topic}/publish` and `POST /api/v1/broadcast`.
//! The router queues the message for every target on every node (the
//! frame is encoded once per node); the answer counts the connections it
//! was queued for and, in a cluster, the nodes that answered.

use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use conn_actor::{Name, command};
use gateway_registry::Delivered;
use serde_json::json;

use super::{State, param, show};
use crate::admin::ApiError;
use crate::admin::body::Body;

/// `GET /api/v1/topics`: topics with at least one subscriber.
pub async fn list(state: State, body: Body) -> Result<HttpResponse, ApiError> {
    body.none()?;
    let topics = state.registry.topics();
    let topics: Vec<_> = topics
        .iter()
        .map(|(name, subscribers)| json!({"name": &**name, "subscribers": subscribers}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({"topics": topics})))
}

/// `POST /api/v1/topics/{topic}/publish`: subscribers get
/// `MSG <topic> <payload>`.
pub async fn publish(state: State, req: HttpRequest, body: Body) -> Result<HttpResponse, ApiError> {
    let raw = param(&req, "topic")?;
    let topic = command::topic(&raw)
        .map_err(|_| ApiError::BadTopic(format!("`{}` is not a valid topic", show(&raw))))?;
    let payload = body.message(state.framing)?;
    state.not_draining()?;
    let delivered = state
        .router
        .publish(Name::from(topic), Bytes::from(payload))
        .await?;
    Ok(answer(delivered))
}

/// `POST /api/v1/broadcast`: every open connection gets `PUSH <payload>`.
pub async fn broadcast(state: State, body: Body) -> Result<HttpResponse, ApiError> {
    let payload = body.message(state.framing)?;
    state.not_draining()?;
    let delivered = state.router.broadcast(Bytes::from(payload)).await?;
    Ok(answer(delivered))
}

/// `{"delivered_to": N}`, plus `"nodes"` in a cluster.
fn answer(delivered: Delivered) -> HttpResponse {
    let body = match delivered.nodes {
        None => json!({"delivered_to": delivered.count}),
        Some(nodes) => json!({"delivered_to": delivered.count, "nodes": nodes}),
    };
    HttpResponse::Ok().json(body)
}
