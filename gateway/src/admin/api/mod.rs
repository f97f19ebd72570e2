//! The `/api/v1` handlers, one file per resource. Each takes a
//! [`Body`](super::body::Body)
//! (read and type-checked before it runs), checks its path parameters and
//! body, and only then asks the router (or, for lists, the local registry). What is refused
//! while the gateway drains: everything that would queue output for a
//! client (send, close, publish, broadcast) answers 503 `draining`; reads
//! and `drain` itself keep answering.

pub mod cluster;
pub mod connections;
pub mod cursor;
pub mod drain;
pub mod stats;
pub mod targets;
pub mod topics;

use actix_web::{HttpRequest, web};

use super::{AdminState, ApiError};
use gateway_registry::RouteError;

/// The handlers' shared state.
pub type State = web::Data<AdminState>;

impl AdminState {
    /// 503 while draining.
    pub fn not_draining(&self) -> Result<(), ApiError> {
        match self.drain.is_draining() {
            true => Err(ApiError::Draining),
            false => Ok(()),
        }
    }
}

/// A path parameter, percent-decoded. The router decodes most escapes but
/// leaves `%2F`, `%25` and `%2B` as they are; they are decoded here, once,
/// so a topic may be written `a/b` or `a%2Fb`.
pub fn param(req: &HttpRequest, name: &str) -> Result<Vec<u8>, ApiError> {
    req.match_info()
        .get(name)
        .map(percent_decode)
        .ok_or_else(|| ApiError::NotFound("no such route".into()))
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

/// Shows a name from a path in an error message.
pub fn show(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

impl From<RouteError> for ApiError {
    fn from(err: RouteError) -> Self {
        match err {
            RouteError::NotFound => ApiError::NotFound("no such connection".into()),
            RouteError::Closing => ApiError::Closing,
            RouteError::Unavailable => ApiError::ClusterUnavailable,
            RouteError::TooLarge => ApiError::TooLargeForCluster,
            RouteError::Timeout => ApiError::ClusterTimeout,
            RouteError::HistoryUnavailable => ApiError::HistoryUnavailable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn decodes_what_the_router_leaves() {
        assert_eq!(percent_decode("a%2Fb"), b"a/b");
        assert_eq!(percent_decode("a%2fb%25"), b"a/b%");
        assert_eq!(percent_decode("50%"), b"50%");
        assert_eq!(percent_decode("%zz%4"), b"%zz%4");
        assert_eq!(percent_decode("%FF"), [0xff]);
        assert_eq!(percent_decode("+a"), b"+a");
    }
}
