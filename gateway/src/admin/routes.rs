//! The route table: one row per endpoint (the probes, `/metrics` and
//! `/api/v1`), the single source both for the router and for the test that
//! holds `openapi.json` to it. A path answers the methods of its rows, and
//! a `GET` path `HEAD` as well (the same answer without its body); any
//! other method gets 405 `method_not_allowed` with an `Allow` header.

use actix_web::http::{Method, header};
use actix_web::{HttpResponse, Resource, Route, web};

use super::ApiError;
use super::api::{cluster, connections, drain, stats, targets, topics};
use super::body::Body;

/// The OpenAPI 3 description of the API, served at
/// `GET /api/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// One endpoint.
pub struct Endpoint {
    /// Its one method.
    pub method: Method,
    /// The path as OpenAPI writes it (`{name}` parameters).
    pub path: &'static str,
    /// The router's pattern, where it differs from `path` (a topic may
    /// hold `/`).
    pub pattern: Option<&'static str>,
    handler: fn() -> Route,
}

macro_rules! endpoint {
    ($method:ident $path:literal $(as $pattern:literal)? => $handler:path) => {
        Endpoint {
            method: Method::$method,
            path: $path,
            pattern: None $(.or(Some($pattern)))?,
            handler: || web::route().to($handler),
        }
    };
}

/// Every endpoint.
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        endpoint!(GET "/healthz" => super::healthz),
        endpoint!(GET "/readyz" => super::readyz),
        endpoint!(GET "/metrics" => super::metrics),
        endpoint!(GET "/api/v1/stats" => stats::stats),
        endpoint!(GET "/api/v1/connections" => connections::list),
        endpoint!(GET "/api/v1/connections/{id}" => connections::get),
        endpoint!(POST "/api/v1/connections/{id}/send" => targets::conn_send),
        endpoint!(POST "/api/v1/connections/{id}/close" => targets::conn_close),
        endpoint!(POST "/api/v1/users/{user}/send" => targets::user_send),
        endpoint!(POST "/api/v1/users/{user}/close" => targets::user_close),
        endpoint!(GET "/api/v1/topics" => topics::list),
        endpoint!(POST "/api/v1/topics/{topic}/publish"
            as "/api/v1/topics/{topic:.+}/publish" => topics::publish),
        endpoint!(GET "/api/v1/topics/{topic}/history"
            as "/api/v1/topics/{topic:.+}/history" => topics::history),
        endpoint!(DELETE "/api/v1/topics/{topic}/history"
            as "/api/v1/topics/{topic:.+}/history" => topics::delete_history),
        endpoint!(POST "/api/v1/broadcast" => topics::broadcast),
        endpoint!(POST "/api/v1/drain" => drain::drain),
        endpoint!(GET "/api/v1/cluster" => cluster::cluster),
        endpoint!(GET "/api/v1/openapi.json" => openapi),
    ]
}

/// Registers every endpoint, the rows of one path as one resource.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let mut paths: Vec<(&'static str, Vec<Endpoint>)> = Vec::new();
    for endpoint in endpoints() {
        let pattern = endpoint.pattern.unwrap_or(endpoint.path);
        match paths.iter_mut().find(|(p, _)| *p == pattern) {
            Some((_, rows)) => rows.push(endpoint),
            None => paths.push((pattern, vec![endpoint])),
        }
    }
    for (pattern, rows) in paths {
        cfg.service(resource(pattern, &rows));
    }
}

/// A path served by the methods of `rows` (`GET` with `HEAD`); any other
/// gets 405 with `Allow`.
fn resource(pattern: &str, rows: &[Endpoint]) -> Resource {
    let mut resource = web::resource(pattern);
    let mut allow = Vec::new();
    for row in rows {
        if row.method == Method::GET {
            resource = resource.route((row.handler)().method(Method::HEAD));
            allow.push("GET, HEAD".to_string());
        } else {
            allow.push(row.method.to_string());
        }
        resource = resource.route((row.handler)().method(row.method.clone()));
    }
    let allow = allow.join(", ");
    resource.default_service(web::to(move || {
        let allow = allow.clone();
        async move { MethodNotAllowed(allow) }
    }))
}

/// A 405 naming the allowed method.
struct MethodNotAllowed(String);

impl actix_web::Responder for MethodNotAllowed {
    type Body = actix_web::body::BoxBody;

    fn respond_to(self, req: &actix_web::HttpRequest) -> HttpResponse {
        let mut response = ApiError::MethodNotAllowed.respond_to(req);
        if let Ok(value) = header::HeaderValue::from_str(&self.0) {
            response.headers_mut().insert(header::ALLOW, value);
        }
        response
    }
}

async fn openapi(body: Body) -> Result<HttpResponse, ApiError> {
    body.none()?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Every path and method the document describes is routed, and every
    /// route is described.
    #[test]
    fn openapi_matches_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        assert!(
            doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
            "not an OpenAPI 3 document"
        );
        let paths = doc["paths"].as_object().expect("paths");
        let methods = [
            "get", "put", "post", "delete", "options", "head", "patch", "trace",
        ];
        let documented: BTreeSet<(String, String)> = paths
            .iter()
            .flat_map(|(path, item)| {
                let item = item.as_object().expect("path item");
                item.keys()
                    .filter(|k| methods.contains(&k.as_str()))
                    .map(|m| (m.to_uppercase(), path.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        // A GET route answers HEAD too (`resource`), and says so.
        let routed: BTreeSet<(String, String)> = endpoints()
            .iter()
            .flat_map(|e| {
                let head = (e.method == Method::GET).then(|| ("HEAD".to_string(), e.path.into()));
                std::iter::once((e.method.to_string(), e.path.to_string())).chain(head)
            })
            .collect();
        assert_eq!(documented, routed);
        assert_eq!(
            doc["servers"][0]["url"], "/",
            "the document names no host: it is served by the listener it describes"
        );
    }
}
