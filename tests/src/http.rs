//! HTTP/1.1 for the tests (contract sections 7, 8).
//!
//! The admin listener is read through a client written here, on purpose: its
//! framing is the gateway's own (`AdminIo`), and these tests must see every
//! byte it sends (a `HEAD` answer's body, bytes past `Content-Length`, an
//! answer on a kept-alive connection), which a client library reads past or
//! hides. [`request`] sends one request per connection (`Connection:
//! close`) and reads to EOF, `Content-Length` and chunked bodies understood;
//! [`read_one`] reads one answer off a kept-alive connection, for pipelining.
//! Servers that are not under test (Prometheus, the NATS monitor, Chromium's
//! DevTools) are asked through `ureq` ([`fetch`]).

use crate::FRAME_TIMEOUT;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names (lower-cased) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics with the body when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
}

/// `GET path` with the `query` pairs (encoded here) on a server that is not
/// the gateway, through `ureq`; every status is an answer, not an error.
pub fn fetch(addr: SocketAddr, path: &str, query: &[(&str, &str)]) -> Result<Response, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(FRAME_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent
        .get(format!("http://{addr}{path}"))
        .query_pairs(query.iter().copied())
        .call()
        .map_err(|e| e.to_string())?;
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), value)
        })
        .collect();
    let body = response
        .body_mut()
        .read_to_vec()
        .map_err(|e| e.to_string())?;
    Ok(Response {
        status: response.status().as_u16(),
        headers,
        body,
    })
}

/// `GET path` on `addr`.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path, &[], None)
}

/// Any request; `body` is sent with a `Content-Length`.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Response {
    try_request(addr, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} http://{addr}{path}: {e}"))
}

/// Like [`request`], reporting failures instead of panicking.
pub fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Response, String> {
    let mut stream = TcpStream::connect_timeout(&addr, FRAME_TIMEOUT).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(FRAME_TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(FRAME_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut wire = req.into_bytes();
    if let Some(body) = body {
        wire.extend_from_slice(body);
    }
    stream.write_all(&wire).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("reading the response: {e}"))?;
    if method == "HEAD" {
        parse_head(&raw)
    } else {
        parse(&raw)
    }
}

/// Parses the answer to a `HEAD`: its headers describe a body that is not
/// sent, so whatever follows the head is returned as the body (it must be
/// empty).
pub fn parse_head(raw: &[u8]) -> Result<Response, String> {
    parse_with(raw, true)
}

/// Parses one whole response.
pub fn parse(raw: &[u8]) -> Result<Response, String> {
    parse_with(raw, false)
}

/// Reads one answer with a `Content-Length` body from a kept-alive
/// connection, leaving the connection open; `Err` on EOF, a timeout of the
/// stream or a malformed answer. Raw on purpose: the pipelining tests write
/// several requests at once and read what comes back, answer by answer.
pub fn read_one(stream: &mut TcpStream) -> Result<Response, String> {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte up to the head's end, so nothing after it is taken.
    while !raw.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(0) => return Err(format!("EOF after {} bytes", raw.len())),
            Ok(_) => raw.push(byte[0]),
            Err(err) => return Err(format!("reading the head: {err}")),
        }
    }
    let head = parse_with(&raw, true)?;
    let len: usize = head
        .header("content-length")
        .ok_or("no content-length")?
        .parse()
        .map_err(|_| "bad content-length")?;
    let mut body = vec![0; len];
    stream
        .read_exact(&mut body)
        .map_err(|e| format!("reading the body: {e}"))?;
    Ok(Response { body, ..head })
}

fn parse_with(raw: &[u8], head_only: bool) -> Result<Response, String> {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut head = httparse::Response::new(&mut slots);
    let head_len = match head.parse(raw).map_err(|e| format!("bad head: {e}"))? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => {
            return Err(format!("no end of headers in {} bytes", raw.len()));
        }
    };
    let status = head.code.ok_or("no status code")?;
    let headers: Vec<(String, String)> = head
        .headers
        .iter()
        .map(|h| {
            let value = String::from_utf8_lossy(h.value).trim().to_string();
            (h.name.to_ascii_lowercase(), value)
        })
        .collect();
    let rest = &raw[head_len..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let body = if head_only {
        rest.to_vec()
    } else if chunked {
        dechunk(rest)?
    } else if let Some((_, len)) = headers.iter().find(|(n, _)| n == "content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| format!("bad content-length `{len}`"))?;
        rest.get(..len)
            .ok_or("body shorter than content-length")?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let Ok(httparse::Status::Complete((used, size))) = httparse::parse_chunk_size(rest) else {
            return Err("bad chunk size".into());
        };
        rest = &rest[used..];
        if size == 0 {
            return Ok(body);
        }
        let size = usize::try_from(size).map_err(|_| "chunk too large")?;
        body.extend_from_slice(rest.get(..size).ok_or("short chunk")?);
        rest = rest.get(size + 2..).ok_or("short chunk")?;
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_length_and_chunked() {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").expect("parse");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
        let r = parse(
            b"HTTP/1.1 503 X\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n",
        )
        .expect("parse");
        assert_eq!((r.status, r.body.as_slice()), (503, &b"abc"[..]));
    }
}
