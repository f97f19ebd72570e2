//! `--admin-token`: every request under `/api` must carry
//! `Authorization: Bearer TOKEN`, compared in constant time. `/metrics`,
//! `/healthz` and `/readyz` stay open so that probes and Prometheus need no
//! secret. It does not rate-limit or log failed attempts.

use std::future::Future;

use actix_web::body::BoxBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::http::header;

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

/// Compares without stopping at the first difference; only the lengths
/// (which a token's holder knows anyway) can be learned from the timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, &x) in b.iter().enumerate() {
        let y = a.get(i).copied().unwrap_or(!x);
        diff |= usize::from(x ^ y);
    }
    diff == 0
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
