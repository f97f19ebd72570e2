//! The admin API's errors: each becomes `{"error":{"code","message"}}` with
//! its status. Bad input is the caller's mistake and is only answered; an
//! internal failure is logged with detail and answered without it.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

/// An error answered to an admin client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidJson(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    InvalidPayload(String),
    #[error("{0}")]
    BadTopic(String),
    #[error("{0}")]
    BadUser(String),
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the connection is closing")]
    Closing,
    #[error("the body is larger than 1 MiB")]
    PayloadTooLarge,
    #[error("the body must be application/json")]
    UnsupportedMediaType,
    #[error("the gateway is draining")]
    Draining,
    #[error("the connection is on another node and the cluster cannot be reached")]
    ClusterUnavailable,
    #[error(
        "the node that may hold the target did not answer in time; the request may still be carried out"
    )]
    ClusterTimeout,
    #[error("the message is larger than the cluster's bus accepts")]
    TooLargeForCluster,
    #[error("the request did not arrive whole within 10 s")]
    RequestTimeout,
    #[error("{0}")]
    BadPosition(String),
    #[error("{0}")]
    NoHistory(String),
    #[error("history cannot store or read messages now")]
    HistoryUnavailable,
    #[error("internal error")]
    Internal,
}

impl ApiError {
    /// Logs `err` and answers a bare 500.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "admin request failed");
        Self::Internal
    }

    /// The `code` field.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidJson(_) => "invalid_json",
            Self::BadRequest(_) => "bad_request",
            Self::InvalidPayload(_) => "invalid_payload",
            Self::BadTopic(_) => "bad_topic",
            Self::BadUser(_) => "bad_user",
            Self::Unauthorized => "unauthorized",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Closing => "closing",
            Self::PayloadTooLarge | Self::TooLargeForCluster => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Draining => "draining",
            Self::ClusterUnavailable => "cluster_unavailable",
            Self::ClusterTimeout => "cluster_timeout",
            Self::RequestTimeout => "request_timeout",
            Self::BadPosition(_) => "bad_position",
            Self::NoHistory(_) => "no_history",
            Self::HistoryUnavailable => "history_unavailable",
            Self::Internal => "internal",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::InvalidJson(_)
            | Self::BadRequest(_)
            | Self::InvalidPayload(_)
            | Self::BadTopic(_)
            | Self::BadUser(_)
            | Self::BadPosition(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) | Self::NoHistory(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Closing => StatusCode::CONFLICT,
            Self::PayloadTooLarge | Self::TooLargeForCluster => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Draining | Self::ClusterUnavailable | Self::HistoryUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::ClusterTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        match self {
            Self::Unauthorized => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            // The rest of the request may never come: the connection ends
            // with this answer.
            Self::RequestTimeout => {
                response.force_close();
            }
            _ => {}
        }
        response.json(json!({"error": {"code": self.code(), "message": self.to_string()}}))
    }
}

impl actix_web::Responder for ApiError {
    type Body = actix_web::body::BoxBody;

    fn respond_to(self, _: &actix_web::HttpRequest) -> HttpResponse {
        self.error_response()
    }
}
