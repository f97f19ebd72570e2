//! `--admin-token`: every request under `/api` must carry
//! `Authorization: Bearer TOKEN`, compared in constant time; a 401 says
//! `WWW-Authenticate: Bearer`. `/metrics`, `/healthz` and `/readyz` stay
//! open so that probes and Prometheus need no secret. It does not
//! rate-limit, and neither the token nor a presented one is ever logged.

use std::future::Future;

use actix_web::body::BoxBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use subtle::ConstantTimeEq as _;

use super::ApiError;

/// Whether `path` is behind the token.
pub fn protects(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}

/// Whether the request carries `Bearer <token>`.
pub fn authorized(req: &ServiceRequest, token: &str) -> bool {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return false;
    };
    let value = value.as_bytes();
    let Some((scheme, presented)) = value.split_at_checked(7) else {
        return false;
    };
    scheme.eq_ignore_ascii_case(b"bearer ") && constant_time_eq(presented, token.as_bytes())
}

/// Compares `presented` with `token` in constant time (`subtle`): the same
/// work, over the token's length, whatever was presented, so the timing
/// shows at most whether the lengths match.
fn constant_time_eq(presented: &[u8], token: &[u8]) -> bool {
    let same_length = presented.len().ct_eq(&token.len());
    let candidate = if presented.len() == token.len() {
        presented
    } else {
        token
    };
    bool::from(candidate.ct_eq(token) & same_length)
}

/// The middleware body: answers 401 to an unauthorized `/api` request,
/// passes everything else on.
pub fn check<S>(
    token: Option<&str>,
    req: ServiceRequest,
    srv: &S,
) -> impl Future<Output = Result<ServiceResponse<BoxBody>, actix_web::Error>> + use<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<BoxBody>, Error = actix_web::Error>,
{
    let denied = token.is_some_and(|t| protects(req.path()) && !authorized(&req, t));
    let next = if denied { Err(req) } else { Ok(srv.call(req)) };
    async move {
        match next {
            Ok(call) => call.await,
            Err(req) => Ok(req.error_response(ApiError::Unauthorized)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_whole_tokens() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cre", b"s3cret"));
        assert!(!constant_time_eq(b"s3cretx", b"s3cret"));
        assert!(!constant_time_eq(b"S3cret", b"s3cret"));
        assert!(!constant_time_eq(b"", b"s3cret"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn protected_paths() {
        assert!(protects("/api"));
        assert!(protects("/api/v1/stats"));
        assert!(!protects("/apix"));
        assert!(!protects("/metrics"));
        assert!(!protects("/healthz"));
    }
}
