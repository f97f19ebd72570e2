//! `GET /api/v1/connections` (filtered, paged by id) and
//! `GET /api/v1/connections/{id}`: registry look-ups followed by a
//! snapshot from each connection's own mailbox, so counters and state are
//! the connection's, not the registry's copy.

use actix_web::{HttpRequest, HttpResponse, web};
use conn_actor::{ConnId, ConnInfo, command};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{State, cursor, param};
use crate::admin::body::Body;
use crate::admin::{ApiError, rfc3339};
use crate::registry::query::List;

/// Connections on a page unless `limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 100;
/// The largest `limit`.
pub const MAX_LIMIT: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    user: Option<String>,
    topic: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// `GET /api/v1/connections?user=&topic=&limit=&cursor=`.
pub async fn list(state: State, req: HttpRequest, body: Body) -> Result<HttpResponse, ApiError> {
    body.none()?;
    let query = web::Query::<ListQuery>::from_query(req.query_string())
        .map_err(|err| ApiError::BadRequest(format!("bad query: {err}")))?
        .into_inner();
    let limit = match query.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::BadRequest(format!("limit must be an integer from 1 to {MAX_LIMIT}"))
            })?,
    };
    if let Some(user) = &query.user {
        command::user(user.as_bytes())
            .map_err(|_| ApiError::BadUser(format!("`{user}` is not a valid user name")))?;
    }
    if let Some(topic) = &query.topic {
        command::topic(topic.as_bytes())
            .map_err(|_| ApiError::BadTopic(format!("`{topic}` is not a valid topic")))?;
    }
    let after = match query.cursor.as_deref() {
        None => None,
        Some(text) => Some(
            cursor::decode(text).ok_or_else(|| ApiError::BadRequest("malformed cursor".into()))?,
        ),
    };
    let page = state.registry.list(&List {
        user: query.user,
        topic: query.topic,
        after,
        limit,
    });
    let next = page
        .more
        .then(|| page.conns.last().map(|h| cursor::encode(h.id())))
        .flatten();
    let mut conns = Vec::with_capacity(page.conns.len());
    for handle in &page.conns {
        // A connection gone since the registry answered is no longer listed.
        if let Some(info) = handle.inspect().await {
            conns.push(conn_json(&info));
        }
    }
    Ok(HttpResponse::Ok().json(json!({"connections": conns, "next_cursor": next})))
}

/// `GET /api/v1/connections/{id}`.
pub async fn get(state: State, req: HttpRequest, body: Body) -> Result<HttpResponse, ApiError> {
    body.none()?;
    let id = conn_id(&param(&req, "id")?)?;
    let handle = state.registry.get(id).ok_or_else(not_found)?;
    let info = handle.inspect().await.ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(conn_json(&info)))
}

/// A connection id as the API spells it: the decimal id, exactly (no sign,
/// no leading zeros). Anything else names no connection.
pub fn conn_id(text: &[u8]) -> Result<ConnId, ApiError> {
    let text = std::str::from_utf8(text).map_err(|_| not_found())?;
    text.parse::<ConnId>()
        .ok()
        .filter(|id| id.to_string() == text)
        .ok_or_else(not_found)
}

fn not_found() -> ApiError {
    ApiError::NotFound("no such connection".into())
}

/// CONN (contract section 7).
fn conn_json(info: &ConnInfo) -> Value {
    let counters = &info.counters;
    json!({
        "id": info.id.to_string(),
        "peer": info.peer.to_string(),
        "user": info.user.as_deref(),
        "topics": info.topics.iter().map(|t| &**t).collect::<Vec<&str>>(),
        "state": if info.closing { "closing" } else { "open" },
        "connected_at": rfc3339::format(info.connected_at),
        "frames_in": counters.frames_in,
        "frames_out": counters.frames_out,
        "bytes_in": counters.bytes_in,
        "bytes_out": counters.bytes_out,
        "pending_bytes": info.pending_bytes,
    })
}
