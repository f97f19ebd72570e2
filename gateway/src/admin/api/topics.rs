//! Topics and fan-out: `GET /api/v1/topics`,
//! `POST /api/v1/topics/{topic}/publish` and `POST /api/v1/broadcast`.
//! A frame is encoded once and the registry queues it for every target;
//! the answer counts the connections it was queued for.

use actix_web::{HttpRequest, HttpResponse};
use conn_actor::command;
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
    let frame = state
        .codec()
        .encode(&[b"MSG ", topic.as_bytes(), b" ", &payload]);
    let delivered = state.registry.publish_frame(topic, &frame, None);
    Ok(HttpResponse::Ok().json(json!({"delivered_to": delivered})))
}

/// `POST /api/v1/broadcast`: every open connection gets `PUSH <payload>`.
pub async fn broadcast(state: State, body: Body) -> Result<HttpResponse, ApiError> {
    let payload = body.message(state.framing)?;
    state.not_draining()?;
    let frame = state.codec().encode(&[b"PUSH ", &payload]);
    let delivered = state.registry.broadcast(&frame);
    Ok(HttpResponse::Ok().json(json!({"delivered_to": delivered})))
}
