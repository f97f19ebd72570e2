//! A minimal HTTP/1.1 client and server-side request reader over a
//! `TcpStream`, or TLS over one: enough for the admin API (`/metrics`, the
//! connection endpoints, publishes) and for the baseline's admin port.
//! Keep-alive (or a connection per request), `Content-Length` and chunked
//! bodies; nothing else.
//!
//! Hand-written but for the heads (`httparse`): `ureq` is blocking, and
//! `reqwest` or hyper's client would bring hyper, h2 and tower into a load
//! generator that needs only this, with its connection reuse (kept alive, or
//! one per request: the admin scenario's A/B) under its own control.

use std::io;
use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A connection's byte stream, plain or TLS.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// Largest header block or body read.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// One HTTP response.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text, lossily.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A keep-alive connection to one HTTP server, reconnecting when the server
/// closed it.
pub struct HttpClient {
    addr: SocketAddr,
    conn: Option<BufReader<Box<dyn Stream>>>,
    tls: Option<tokio_rustls::TlsConnector>,
    /// A connection per request (`Connection: close`), to compare with.
    per_request: bool,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .field("per_request", &self.per_request)
            .finish()
    }
}

impl HttpClient {
    /// A client for `addr`; connects on first use.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            conn: None,
            tls: None,
            per_request: false,
        }
    }

    /// Speaks TLS (HTTPS), for the name [`crate::net::TLS_SERVER_NAME`].
    pub fn with_tls(mut self, tls: tokio_rustls::TlsConnector) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Opens a connection (and with TLS makes a handshake) for every
    /// request, asking the server to close it after its answer.
    pub fn per_request(mut self) -> Self {
        self.per_request = true;
        self
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> Result<Response> {
        self.request("GET", path, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&mut self, path: &str, body: &[u8]) -> Result<Response> {
        self.request("POST", path, Some(body)).await
    }

    /// One request; retried once on a fresh connection when a reused one
    /// turns out to be closed.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Response> {
        let reused = self.conn.is_some();
        match self.try_request(method, path, body).await {
            Ok(r) => Ok(r),
            Err(e) if reused => {
                self.conn = None;
                self.try_request(method, path, body)
                    .await
                    .with_context(|| format!("{method} {path} (after retry: {e:#})"))
            }
            Err(e) => Err(e).with_context(|| format!("{method} {path} to {}", self.addr)),
        }
    }

    async fn try_request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Response> {
        if self.conn.is_none() {
            let s = TcpStream::connect(self.addr).await?;
            s.set_nodelay(true)?;
            let stream: Box<dyn Stream> = match &self.tls {
                None => Box::new(s),
                Some(tls) => {
                    let name = rustls_pki_types::ServerName::try_from(crate::net::TLS_SERVER_NAME)?;
                    Box::new(tls.connect(name, s).await?)
                }
            };
            self.conn = Some(BufReader::new(stream));
        }
        let Some(conn) = self.conn.as_mut() else {
            bail!("no connection");
        };
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        if self.per_request {
            req.push_str("Connection: close\r\n");
        }
        if let Some(b) = body {
            req.push_str("Content-Type: application/json\r\n");
            req.push_str(&format!("Content-Length: {}\r\n", b.len()));
        } else if method == "POST" {
            req.push_str("Content-Length: 0\r\n");
        }
        req.push_str("\r\n");
        let mut wire = req.into_bytes();
        if let Some(b) = body {
            wire.extend_from_slice(b);
        }
        conn.get_mut().write_all(&wire).await?;
        let head = read_head(conn).await?;
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Response::new(&mut slots);
        whole(parsed.parse(&head), "response")?;
        let status = parsed.code.context("no status code")?;
        let headers = headers_of(parsed.headers);
        let body = read_body(conn, &headers).await?;
        if self.per_request
            || headers
                .connection
                .as_deref()
                .is_some_and(|c| c.eq_ignore_ascii_case("close"))
        {
            self.conn = None;
        }
        Ok(Response { status, body })
    }
}

/// Headers the client and server care about.
#[derive(Debug, Default)]
pub struct Headers {
    /// `Content-Length`.
    pub content_length: Option<usize>,
    /// `Transfer-Encoding: chunked`.
    pub chunked: bool,
    /// `Connection`.
    pub connection: Option<String>,
    /// `Content-Type`.
    pub content_type: Option<String>,
}

fn headers_of(list: &[httparse::Header<'_>]) -> Headers {
    let mut h = Headers::default();
    for header in list {
        let value = String::from_utf8_lossy(header.value).trim().to_owned();
        match header.name.to_ascii_lowercase().as_str() {
            "content-length" => h.content_length = value.parse().ok(),
            "transfer-encoding" => h.chunked = value.to_ascii_lowercase().contains("chunked"),
            "connection" => h.connection = Some(value),
            "content-type" => h.content_type = Some(value),
            _ => {}
        }
    }
    h
}

/// `Err` unless httparse read a whole head (read_head stops at its end).
fn whole(parsed: httparse::Result<usize>, what: &str) -> Result<()> {
    match parsed.with_context(|| format!("bad {what} head"))? {
        httparse::Status::Complete(_) => Ok(()),
        httparse::Status::Partial => bail!("incomplete {what} head"),
    }
}

/// Reads up to and including the blank line; `UnexpectedEof` when the peer
/// closed before sending anything.
async fn read_head<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> io::Result<Vec<u8>> {
    use tokio::io::AsyncBufReadExt;
    let mut head = Vec::new();
    loop {
        let before = head.len();
        let n = r.read_until(b'\n', &mut head).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a complete header",
            ));
        }
        let line = &head[before..];
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if head.len() > 64 * 1024 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "header too long",
            ));
        }
    }
    Ok(head)
}

async fn read_body<R: AsyncRead + Unpin>(r: &mut BufReader<R>, h: &Headers) -> Result<Vec<u8>> {
    use tokio::io::AsyncBufReadExt;
    if h.chunked {
        let mut body = Vec::new();
        loop {
            let mut size_line = String::new();
            r.read_line(&mut size_line).await?;
            let size_hex = size_line.trim().split(';').next().unwrap_or_default();
            let size = usize::from_str_radix(size_hex, 16)
                .with_context(|| format!("bad chunk size {size_line:?}"))?;
            if size == 0 {
                // Trailers until the blank line.
                loop {
                    let mut t = String::new();
                    if r.read_line(&mut t).await? == 0 || t.trim().is_empty() {
                        break;
                    }
                }
                return Ok(body);
            }
            if body.len() + size > MAX_BODY {
                bail!("body too large");
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..]).await?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf).await?;
        }
    }
    let len = h.content_length.unwrap_or(0);
    if len > MAX_BODY {
        bail!("body too large");
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(body)
}

/// One request read by a server.
#[derive(Debug)]
pub struct Request {
    /// Method, upper-case.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Parsed headers.
    pub headers: Headers,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// Reads one request; `Ok(None)` when the client closed between requests.
pub async fn read_request<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> Result<Option<Request>> {
    let head = match read_head(r).await {
        Ok(h) => h,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut slots);
    whole(parsed.parse(&head), "request")?;
    let method = parsed.method.unwrap_or_default().to_owned();
    let target = parsed.path.unwrap_or_default();
    let path = target.split('?').next().unwrap_or_default().to_owned();
    let headers = headers_of(parsed.headers);
    let body = read_body(r, &headers).await?;
    Ok(Some(Request {
        method,
        path,
        headers,
        body,
    }))
}

/// Serialises a response with a body and keep-alive.
pub fn response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        _ => "Status",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn chunked_and_plain_bodies() {
        let wire = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".to_vec();
        let mut r = BufReader::new(&wire[..]);
        let h = Headers {
            chunked: true,
            ..Headers::default()
        };
        let body = read_body(&mut r, &h).await.ok();
        assert_eq!(body.as_deref(), Some(&b"hello world"[..]));
    }

    #[tokio::test]
    async fn reads_a_request() {
        let wire =
            b"POST /x?y=1 HTTP/1.1\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}"
                .to_vec();
        let mut r = BufReader::new(&wire[..]);
        let req = read_request(&mut r).await.ok().flatten();
        let req = req.as_ref();
        assert_eq!(req.map(|r| r.path.as_str()), Some("/x"));
        assert_eq!(req.map(|r| r.body.as_slice()), Some(&b"{}"[..]));
    }
}
