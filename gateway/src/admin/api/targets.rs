//! Send and close for one connection, named by id or by its user:
//! `POST /api/v1/{connections/{id},users/{user}}/{send,close}`. Both go
//! through the router, which answers once the request is queued in the
//! connection's mailbox (on whichever node holds it), so requests made one
//! after another keep their order; 202 means queued, not yet written.

use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use conn_actor::{Name, command};
use gateway_registry::Address;
use serde_json::json;

use super::connections::conn_id;
use super::{State, param, show};
use crate::admin::ApiError;
use crate::admin::body::Body;

/// `POST /api/v1/connections/{id}/send`.
pub async fn conn_send(
    state: State,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let target = Address::Conn(conn_id(&param(&req, "id")?)?);
    send(state, target, body).await
}

/// `POST /api/v1/connections/{id}/close`.
pub async fn conn_close(
    state: State,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let target = Address::Conn(conn_id(&param(&req, "id")?)?);
    close(state, target, body).await
}

/// `POST /api/v1/users/{user}/send`.
pub async fn user_send(
    state: State,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let target = Address::User(user(&req)?);
    send(state, target, body).await
}

/// `POST /api/v1/users/{user}/close`.
pub async fn user_close(
    state: State,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let target = Address::User(user(&req)?);
    close(state, target, body).await
}

fn user(req: &HttpRequest) -> Result<Name, ApiError> {
    let user = param(req, "user")?;
    command::user(&user)
        .map(Name::from)
        .map_err(|_| ApiError::BadUser(format!("`{}` is not a valid user name", show(&user))))
}

async fn send(state: State, target: Address, body: Body) -> Result<HttpResponse, ApiError> {
    let payload = body.message(state.framing)?;
    state.not_draining()?;
    state.router.send(target, payload).await?;
    Ok(HttpResponse::Accepted().json(json!({"status": "queued"})))
}

async fn close(state: State, target: Address, body: Body) -> Result<HttpResponse, ApiError> {
    let (reason, message) = body.close(state.framing)?;
    state.not_draining()?;
    let message = message.map(Bytes::from);
    state.router.close(target, reason, message).await?;
    Ok(HttpResponse::Accepted().json(json!({"status": "closing"})))
}
