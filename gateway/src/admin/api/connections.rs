//! `GET /api/v1/connections` (filtered, paged by id; this node's
//! connections) and `GET /api/v1/connections/{id}` (any node's, through
//! the router): look-ups followed by a snapshot from each connection's own
//! mailbox, so counters and state are the connection's, not the registry's
//! copy.

use actix_web::{HttpRequest, HttpResponse, web};
use conn_actor::command;
use gateway_registry::query::List;
use serde::Deserialize;
use serde_json::json;

use super::{State, cursor, param};
use crate::admin::ApiError;
use crate::admin::body::Body;

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
        if let Some(view) = state.registry.view(handle).await {
            conns.push(view);
        }
    }
    Ok(HttpResponse::Ok().json(json!({"connections": conns, "next_cursor": next})))
}

/// `GET /api/v1/connections/{id}`.
pub async fn get(state: State, req: HttpRequest, body: Body) -> Result<HttpResponse, ApiError> {
    body.none()?;
    let id = conn_id(&param(&req, "id")?)?;
    let view = state.router.get(id).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// A connection id from a path: UTF-8 without spaces, which the router
/// then looks up exactly. Anything else names no connection.
pub fn conn_id(text: &[u8]) -> Result<String, ApiError> {
    std::str::from_utf8(text)
        .ok()
        .filter(|id| !id.is_empty() && !id.contains(char::is_whitespace))
        .map(str::to_owned)
        .ok_or_else(|| ApiError::NotFound("no such connection".into()))
}
