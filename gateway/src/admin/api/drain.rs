//! `POST /api/v1/drain`: the same drain as SIGTERM, through the one
//! [`Drain`](crate::drain::Drain) handle. Asking again while draining is
//! answered 202 as well; the drain is already under way.

use actix_web::HttpResponse;
use serde_json::json;

use super::State;
use crate::admin::ApiError;
use crate::admin::body::Body;

/// `POST /api/v1/drain`.
pub async fn drain(state: State, body: Body) -> Result<HttpResponse, ApiError> {
    body.none()?;
    if state.drain.start() {
        tracing::info!("drain requested through the admin API");
    }
    Ok(HttpResponse::Accepted().json(json!({"status": "draining"})))
}
