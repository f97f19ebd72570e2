//! Topics and fan-out: `GET /api/v1/topics`,
//! `POST /api/v1/topics/{topic}/publish` and `POST /api/v1/broadcast`.
//! The router queues the message for every target on every node (the
//! frame is encoded once per node); the answer counts the connections it
//! was queued for and, in a cluster, the nodes that answered. On a topic
//! with history (docs/protocol.md section 13) a publish is stored first,
//! once per `Idempotency-Key`, and answers its offset and epoch; `GET` and
//! `DELETE /api/v1/topics/{topic}/history` read and empty a topic's
//! history.

use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use conn_actor::{Name, command};
use gateway_cluster::HistoryRouteError;
use gateway_history::Position;
use gateway_registry::{Delivered, HistoryReadError, rfc3339};
use serde::Deserialize;
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
    let payload = body.message_to_keep(state.framing)?;
    let key = idempotency_key(&req)?;
    state.not_draining()?;
    let delivered = state
        .router
        .publish(Name::from(topic), payload, key)
        .await?;
    Ok(answer(delivered))
}

/// The `Idempotency-Key` header: 1 to 128 bytes of `A-Z a-z 0-9 _ . : -`.
fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().unwrap_or_default();
    let ok = (1..=128).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b));
    if !ok {
        return Err(ApiError::BadRequest(
            "Idempotency-Key is 1 to 128 bytes of A-Z a-z 0-9 _ . : -".into(),
        ));
    }
    Ok(Some(key.to_owned()))
}

/// Messages in a history page unless `limit` says otherwise.
const DEFAULT_HISTORY_LIMIT: usize = 100;
/// The largest `limit` of a history page.
const MAX_HISTORY_LIMIT: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    since: Option<String>,
    limit: Option<String>,
}

/// The topic named in the path, validated.
fn topic_of(req: &HttpRequest) -> Result<String, ApiError> {
    let raw = param(req, "topic")?;
    command::topic(&raw)
        .map(str::to_owned)
        .map_err(|_| ApiError::BadTopic(format!("`{}` is not a valid topic", show(&raw))))
}

fn no_history(topic: &str) -> ApiError {
    ApiError::NoHistory(format!("the topic `{topic}` has no history"))
}

fn history_error(err: HistoryRouteError, topic: &str) -> ApiError {
    match err {
        HistoryRouteError::NoHistory => no_history(topic),
        HistoryRouteError::Unavailable => ApiError::HistoryUnavailable,
    }
}

/// `GET /api/v1/topics/{topic}/history?since=<position>&limit=N`: the
/// messages after `since`, or the newest `limit`, oldest first.
pub async fn history(state: State, req: HttpRequest, body: Body) -> Result<HttpResponse, ApiError> {
    body.none()?;
    let topic = topic_of(&req)?;
    let query = web::Query::<HistoryQuery>::from_query(req.query_string())
        .map_err(|err| ApiError::BadRequest(format!("bad query: {err}")))?
        .into_inner();
    let limit = match query.limit.as_deref() {
        None => DEFAULT_HISTORY_LIMIT,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_HISTORY_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "limit must be an integer from 1 to {MAX_HISTORY_LIMIT}"
                ))
            })?,
    };
    let since = match query.since.as_deref() {
        None => None,
        Some(text) => Some(text.parse::<Position>().map_err(|_| {
            ApiError::BadPosition(format!("`{text}` is not a position (<epoch>:<offset>)"))
        })?),
    };
    let page = match &state.cluster {
        // A cluster's history is its stream.
        Some(cluster) => cluster
            .history_read(&topic, since.as_ref(), limit)
            .await
            .map_err(|err| history_error(err, &topic))?,
        None => state
            .registry
            .history_read(&topic, since.as_ref(), limit)
            .map_err(|HistoryReadError::NoHistory| no_history(&topic))?,
    };
    let messages: Vec<_> = page
        .messages
        .iter()
        .map(|(offset, payload, at)| {
            let mut message = json!({"offset": offset, "published_at": rfc3339::format(*at)});
            match std::str::from_utf8(payload) {
                Ok(text) => message["data"] = json!(text),
                Err(_) => {
                    message["data_base64"] =
                        json!(base64::engine::general_purpose::STANDARD.encode(payload))
                }
            }
            message
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "epoch": page.epoch,
        "offset": page.offset,
        "complete": page.complete,
        "messages": messages,
    })))
}

/// `DELETE /api/v1/topics/{topic}/history`: 204; the topic's messages
/// leave history and positions from before recover as `LOST`.
pub async fn delete_history(
    state: State,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    body.none()?;
    let topic = topic_of(&req)?;
    match &state.cluster {
        Some(cluster) => cluster
            .history_delete(&topic)
            .await
            .map_err(|err| history_error(err, &topic))?,
        None => state
            .registry
            .history_delete(&topic)
            .map_err(|HistoryReadError::NoHistory| no_history(&topic))?,
    }
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /api/v1/broadcast`: every open connection gets `PUSH <payload>`.
pub async fn broadcast(state: State, body: Body) -> Result<HttpResponse, ApiError> {
    let payload = body.message(state.framing)?;
    state.not_draining()?;
    let delivered = state.router.broadcast(payload).await?;
    Ok(answer(delivered))
}

/// `{"delivered_to": N}`, plus `"nodes"` in a cluster and `"offset"`
/// and `"epoch"` for a publish history stored.
fn answer(delivered: Delivered) -> HttpResponse {
    let mut body = json!({"delivered_to": delivered.count});
    if let Some(nodes) = delivered.nodes {
        body["nodes"] = json!(nodes);
    }
    if let Some(stored) = delivered.stored {
        body["offset"] = json!(stored.offset);
        body["epoch"] = json!(stored.epoch);
    }
    HttpResponse::Ok().json(body)
}
