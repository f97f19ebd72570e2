//! The opening handshake (RFC 6455 section 4.2) on one path, with the
//! `Origin` check.
//!
//! [`Policy::respond`] looks at the bytes read so far and says what to
//! write: the `101 Switching Protocols` answer (with the accept key from
//! `tungstenite`), or a refusal, after which the transport closes the
//! connection. Refusals, in the order they are checked:
//!
//! | request | answer |
//! | --- | --- |
//! | not HTTP | 400 |
//! | a head over [`MAX_REQUEST_BYTES`] or with too many headers | 431 |
//! | another path (the query is ignored) | 404 |
//! | a method other than `GET` | 405 |
//! | an `Origin` not in the allowed list | 403 |
//! | no `Upgrade: websocket` (a plain HTTP request) | 426, naming the upgrade |
//! | a version other than 13 | 426 with `Sec-WebSocket-Version: 13` |
//! | any other bad upgrade (no key, a bad key, no `Connection: Upgrade`) | 400 |
//!
//! A request without `Origin` comes from something other than a browser
//! and is allowed whatever the list says.

use std::fmt;

use tungstenite::error::{Error, ProtocolError};
use tungstenite::handshake::server::{create_response, write_response};
use tungstenite::http;

/// The largest request head read before answering 431.
pub const MAX_REQUEST_BYTES: usize = 8192;
/// The most header lines in a request.
const MAX_HEADERS: usize = 64;

/// The origins a browser may connect from (`--ws-allowed-origins`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origins {
    /// Any origin (`*`).
    Any,
    /// Only these, compared without regard to ASCII case.
    Only(Vec<String>),
}

/// Why a list of origins or a path is not usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyError {
    /// An entry of the origin list is not `*`, `null` or `scheme://host[:port]`.
    BadOrigin(String),
    /// The path does not start with `/`, or holds a `?`, `#` or space.
    BadPath(String),
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadOrigin(origin) => write!(
                f,
                "bad origin {origin:?}: expected * or scheme://host[:port], comma separated"
            ),
            Self::BadPath(path) => write!(
                f,
                "bad path {path:?}: expected an absolute path such as /ws"
            ),
        }
    }
}

impl std::error::Error for PolicyError {}

impl Origins {
    /// Parses a comma-separated list: `*` allows any origin; otherwise each
    /// entry is an origin as browsers send it (`https://app.example.com`,
    /// `http://127.0.0.1:8080`), a trailing `/` tolerated.
    pub fn parse(list: &str) -> Result<Self, PolicyError> {
        let mut only = Vec::new();
        for entry in list.split(',').map(str::trim) {
            if entry == "*" {
                return Ok(Self::Any);
            }
            let origin = entry.strip_suffix('/').unwrap_or(entry);
            let valid = origin == "null"
                || origin.split_once("://").is_some_and(|(scheme, host)| {
                    !scheme.is_empty()
                        && scheme
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
                        && !host.is_empty()
                        && host.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
                });
            if !valid {
                return Err(PolicyError::BadOrigin(entry.to_owned()));
            }
            only.push(origin.to_ascii_lowercase());
        }
        Ok(Self::Only(only))
    }

    /// Whether a browser at `origin` may connect.
    pub fn allows(&self, origin: &[u8]) -> bool {
        match self {
            Self::Any => true,
            Self::Only(list) => list
                .iter()
                .any(|o| o.as_bytes().eq_ignore_ascii_case(origin)),
        }
    }
}

/// Where the upgrade is served and from which origins.
#[derive(Debug, Clone)]
pub struct Policy {
    path: String,
    origins: Origins,
}

/// What to do with the request read so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The request head is not complete yet: read more.
    Partial,
    /// Write `response`; WebSocket frames start `consumed` bytes into what
    /// was read.
    Upgrade {
        /// Bytes of the request head.
        consumed: usize,
        /// The `101 Switching Protocols` answer.
        response: Vec<u8>,
    },
    /// Write `response`, then close the connection.
    Refuse {
        /// The HTTP status.
        status: u16,
        /// The whole answer, headers and a short text body.
        response: Vec<u8>,
    },
}

impl Policy {
    /// The upgrade on `path` (such as `/ws`) from `origins`.
    pub fn new(path: &str, origins: Origins) -> Result<Self, PolicyError> {
        let valid = path.starts_with('/') && !path.contains(['?', '#', ' ']);
        if !valid {
            return Err(PolicyError::BadPath(path.to_owned()));
        }
        Ok(Self {
            path: path.to_owned(),
            origins,
        })
    }

    /// The path that upgrades.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Answers the request at the start of `buf`.
    pub fn respond(&self, buf: &[u8]) -> Outcome {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        let consumed = match request.parse(buf) {
            Ok(httparse::Status::Complete(n)) if n <= MAX_REQUEST_BYTES => n,
            Ok(httparse::Status::Partial) if buf.len() < MAX_REQUEST_BYTES => {
                return Outcome::Partial;
            }
            Ok(_) | Err(httparse::Error::TooManyHeaders) => return refuse(431, &[]),
            Err(_) => return refuse(400, &[]),
        };
        let (Some(method), Some(target), Some(version)) =
            (request.method, request.path, request.version)
        else {
            return refuse(400, &[]);
        };
        let path = target.split_once('?').map_or(target, |(path, _)| path);
        if path != self.path {
            return refuse(404, &[]);
        }
        if method != "GET" {
            return refuse(405, &["Allow: GET"]);
        }
        let header = |name: &str| {
            request
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value)
        };
        if let Some(origin) = header("Origin")
            && !self.origins.allows(origin)
        {
            return refuse(403, &[]);
        }
        let upgrade = header("Upgrade").is_some_and(|v| v.eq_ignore_ascii_case(b"websocket"));
        if !upgrade {
            return refuse(426, &["Upgrade: websocket"]);
        }
        let Some(http_request) = to_http(target, version, request.headers) else {
            return refuse(400, &[]);
        };
        match create_response(&http_request) {
            Ok(response) => {
                let mut out = Vec::with_capacity(160);
                match write_response(&mut out, &response) {
                    Ok(()) => Outcome::Upgrade {
                        consumed,
                        response: out,
                    },
                    Err(_) => refuse(400, &[]),
                }
            }
            Err(Error::Protocol(ProtocolError::MissingSecWebSocketVersionHeader)) => {
                refuse(426, &["Upgrade: websocket", "Sec-WebSocket-Version: 13"])
            }
            Err(_) => refuse(400, &[]),
        }
    }
}

/// The request as `tungstenite` checks it; `None` when a header is not
/// valid HTTP.
fn to_http(
    target: &str,
    version: u8,
    headers: &[httparse::Header<'_>],
) -> Option<http::Request<()>> {
    let mut builder = http::Request::get(target).version(if version == 0 {
        http::Version::HTTP_10
    } else {
        http::Version::HTTP_11
    });
    for h in headers {
        let name = http::HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = http::HeaderValue::from_bytes(h.value).ok()?;
        builder = builder.header(name, value);
    }
    builder.body(()).ok()
}

/// A whole refusal: status line, `extra` headers, a short text body.
fn refuse(status: u16, extra: &[&str]) -> Outcome {
    let (reason, body) = match status {
        400 => ("Bad Request", "not a valid WebSocket upgrade request\n"),
        403 => ("Forbidden", "origin not allowed\n"),
        404 => ("Not Found", "not found\n"),
        405 => ("Method Not Allowed", "method not allowed\n"),
        426 => (
            "Upgrade Required",
            "this endpoint speaks WebSocket (RFC 6455) only\n",
        ),
        _ => (
            "Request Header Fields Too Large",
            "request header fields too large\n",
        ),
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for line in extra {
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head.push_str(body);
    Outcome::Refuse {
        status,
        response: head.into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of RFC 6455 section 1.3.
    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn policy(origins: &str) -> Policy {
        Policy::new("/ws", Origins::parse(origins).expect("origins")).expect("policy")
    }

    fn request(method: &str, target: &str, headers: &[&str]) -> Vec<u8> {
        let mut out = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        for h in headers {
            out.push_str(h);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        out.into_bytes()
    }

    fn upgrade(target: &str, extra: &[&str]) -> Vec<u8> {
        let key = format!("Sec-WebSocket-Key: {KEY}");
        let mut headers = vec![
            "Upgrade: websocket",
            "Connection: keep-alive, Upgrade",
            "Sec-WebSocket-Version: 13",
            key.as_str(),
        ];
        headers.extend_from_slice(extra);
        request("GET", target, &headers)
    }

    fn status(outcome: &Outcome) -> u16 {
        match outcome {
            Outcome::Partial => 0,
            Outcome::Upgrade { .. } => 101,
            Outcome::Refuse { status, .. } => *status,
        }
    }

    #[test]
    fn upgrades_on_the_path_with_the_accept_key() {
        let mut buf = upgrade("/ws?v=1", &["Origin: http://127.0.0.1:8080"]);
        let head = buf.len();
        buf.extend_from_slice(b"\x81\x84"); // a frame right behind the head
        let Outcome::Upgrade { consumed, response } = policy("*").respond(&buf) else {
            panic!("not upgraded");
        };
        assert_eq!(consumed, head);
        let response = String::from_utf8(response).expect("text");
        assert!(
            response.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
            "{response}"
        );
        assert!(
            response.to_ascii_lowercase().contains(&format!(
                "sec-websocket-accept: {}",
                ACCEPT.to_ascii_lowercase()
            )),
            "{response}"
        );
        assert!(response.ends_with("\r\n\r\n"), "{response}");
    }

    #[test]
    fn waits_for_the_whole_head_byte_by_byte() {
        let buf = upgrade("/ws", &[]);
        let policy = policy("*");
        for end in 0..buf.len() {
            assert_eq!(policy.respond(&buf[..end]), Outcome::Partial, "{end}");
        }
        assert_eq!(status(&policy.respond(&buf)), 101);
    }

    #[test]
    fn refusals() {
        let check = |policy: &Policy, buf: &[u8], expected: u16, header: Option<&str>| {
            let outcome = policy.respond(buf);
            assert_eq!(
                status(&outcome),
                expected,
                "{}",
                String::from_utf8_lossy(buf)
            );
            if let Outcome::Refuse { response, .. } = outcome {
                let text = String::from_utf8(response).expect("text");
                assert!(text.contains("Connection: close\r\n"), "{text}");
                if let Some(header) = header {
                    assert!(text.contains(&format!("{header}\r\n")), "{text}");
                }
                let (_, body) = text.split_once("\r\n\r\n").expect("head and body");
                assert!(
                    text.contains(&format!("Content-Length: {}\r\n", body.len())),
                    "{text}"
                );
            }
        };
        let any = policy("*");
        let listed = policy("https://app.example.com, http://127.0.0.1:8080/");
        check(&any, &upgrade("/other", &[]), 404, None);
        check(&any, &upgrade("/ws/more", &[]), 404, None);
        check(&any, &request("POST", "/other", &[]), 404, None);
        check(&any, &request("POST", "/ws", &[]), 405, Some("Allow: GET"));
        check(
            &listed,
            &upgrade("/ws", &["Origin: https://evil.example.com"]),
            403,
            None,
        );
        check(
            &listed,
            &upgrade("/ws", &["Origin: HTTPS://APP.example.com"]),
            101,
            None,
        );
        check(
            &listed,
            &upgrade("/ws", &["Origin: http://127.0.0.1:8080"]),
            101,
            None,
        );
        check(&listed, &upgrade("/ws", &[]), 101, None);
        check(
            &any,
            &upgrade("/ws", &["Origin: https://anything.example"]),
            101,
            None,
        );
        check(
            &any,
            &request("GET", "/ws", &["Accept: text/html"]),
            426,
            Some("Upgrade: websocket"),
        );
        let old = request(
            "GET",
            "/ws",
            &[
                "Upgrade: websocket",
                "Connection: Upgrade",
                "Sec-WebSocket-Version: 8",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            ],
        );
        check(&any, &old, 426, Some("Sec-WebSocket-Version: 13"));
        let keyless = request(
            "GET",
            "/ws",
            &[
                "Upgrade: websocket",
                "Connection: Upgrade",
                "Sec-WebSocket-Version: 13",
            ],
        );
        check(&any, &keyless, 400, None);
        let bad_key = request(
            "GET",
            "/ws",
            &[
                "Upgrade: websocket",
                "Connection: Upgrade",
                "Sec-WebSocket-Version: 13",
                "Sec-WebSocket-Key: short",
            ],
        );
        check(&any, &bad_key, 400, None);
        check(&any, b"HELLO alice\r\n\r\n", 400, None);
        check(&any, b"\x16\x03\x01\x02\x00", 400, None);
        let huge = format!(
            "GET /ws HTTP/1.1\r\nX-Filler: {}\r\n",
            "a".repeat(MAX_REQUEST_BYTES)
        );
        check(&any, huge.as_bytes(), 431, None);
        let many: Vec<String> = (0..100).map(|i| format!("X-{i}: y")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        check(&any, &request("GET", "/ws", &many), 431, None);
    }

    #[test]
    fn origin_lists() {
        assert_eq!(Origins::parse("*"), Ok(Origins::Any));
        assert_eq!(Origins::parse("https://a.example, *"), Ok(Origins::Any));
        assert_eq!(
            Origins::parse(" https://A.example/ ,http://127.0.0.1:8080,null"),
            Ok(Origins::Only(vec![
                "https://a.example".into(),
                "http://127.0.0.1:8080".into(),
                "null".into()
            ]))
        );
        for bad in [
            "",
            "a.example",
            "https://",
            "https://a.example/app",
            "https://a,",
            "://a",
        ] {
            assert!(Origins::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Policy::new("ws", Origins::Any).is_err());
        assert!(Policy::new("/ws?x", Origins::Any).is_err());
        assert!(Policy::new("/", Origins::Any).is_ok());
    }
}
