//! The admin listener's byte stream, between the socket and actix-http.
//!
//! actix-http answers some requests itself, before any handler runs: 400
//! for a request it cannot parse, 408 when the headers do not arrive in
//! time, 431 for headers too large. Those answers have an empty body, and
//! the contract wants every error in the API's JSON shape. [`AdminIo`]
//! watches the response heads written to the socket and gives such a bare
//! error (an error status without a `Content-Type`) the JSON body its
//! status calls for. Every answer of the API itself carries a
//! `Content-Type`, so nothing else is touched.
//!
//! A bare error ends the connection, and actix-http then drops the socket
//! without reading what the client still sends, which would make the
//! kernel answer with a reset that can destroy the answer before the client
//! reads it. So once such an answer is written, the flush also shuts the
//! write side and reads and discards the client's input until its EOF or
//! for at most [`LINGER`] (the graceful close of the client protocol, in
//! small).
//!
//! It also records when the connection was accepted: the start of its one
//! request (the admin listener serves one request per connection), from
//! which the 10 s bound on headers and body is counted.
//!
//! It parses nothing of the request and does not buffer the response body:
//! only a response head, at most [`MAX_HEAD`] bytes, is held back until it
//! is whole.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// The longest response head held back to be inspected; a longer one is
/// passed on as it is (actix-http writes far shorter ones).
pub const MAX_HEAD: usize = 16 * 1024;

/// How long the client's input is still read after a bare error.
pub const LINGER: Duration = Duration::from_secs(1);

/// A stream that gives the HTTP layer's bare error answers a JSON body.
pub struct AdminIo<T> {
    inner: T,
    accepted: Instant,
    /// The first bytes of the request, enough to tell `HEAD ` from others.
    request_start: [u8; 5],
    request_seen: usize,
    /// Bytes owed to `inner` before anything else is written.
    out: Vec<u8>,
    written: usize,
    /// The response head collected so far; `None` once the final head has
    /// been seen and the rest passes straight through.
    head: Option<Vec<u8>>,
    /// Set once a bare error was reshaped: the connection ends after it.
    ending: Option<Ending>,
}

/// The close after a bare error.
struct Ending {
    shut: bool,
    until: Pin<Box<Sleep>>,
}

impl<T> AdminIo<T> {
    /// Wraps a freshly accepted stream.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            accepted: Instant::now(),
            request_start: [0; 5],
            request_seen: 0,
            out: Vec::new(),
            written: 0,
            head: Some(Vec::new()),
            ending: None,
        }
    }

    /// When the connection was accepted.
    pub fn accepted(&self) -> Instant {
        self.accepted
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    fn is_head_request(&self) -> bool {
        self.request_seen == self.request_start.len() && &self.request_start == b"HEAD "
    }

    /// Takes `buf` into the head being collected; once the head is whole,
    /// queues it (reshaped where it is a bare error) into `out`.
    fn collect(&mut self, buf: &[u8]) {
        let head_request = self.is_head_request();
        let Some(head) = self.head.as_mut() else {
            self.out.extend_from_slice(buf);
            return;
        };
        head.extend_from_slice(buf);
        loop {
            let Some(head) = self.head.as_mut() else {
                return;
            };
            let Some(end) = find(head, b"\r\n\r\n") else {
                if head.len() > MAX_HEAD {
                    self.out.append(head);
                    self.head = None;
                }
                return;
            };
            let rest = head.split_off(end + 4);
            let whole = std::mem::replace(head, rest);
            match status(&whole) {
                // `100 Continue`: the final head is still to come.
                Some(100..=199) => self.out.extend_from_slice(&whole),
                Some(code) if code >= 400 && !has_content_type(&whole) => {
                    // A bare error has no body; whatever follows is dropped.
                    self.out
                        .extend_from_slice(&reshape(&whole, code, head_request));
                    self.head = None;
                    self.ending = Some(Ending {
                        shut: false,
                        until: Box::pin(tokio::time::sleep(LINGER)),
                    });
                    return;
                }
                _ => {
                    self.out.extend_from_slice(&whole);
                    if let Some(rest) = self.head.take() {
                        self.out.extend_from_slice(&rest);
                    }
                    return;
                }
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AdminIo<T> {
    /// After a bare error: shuts the write side, then reads and discards
    /// until the client's EOF, an error or the end of [`LINGER`].
    fn poll_ending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(ending) = self.ending.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        if !ending.shut {
            ready!(Pin::new(&mut self.inner).poll_shutdown(cx))?;
            ending.shut = true;
        }
        let mut scratch = [0u8; 4096];
        loop {
            if ending.until.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match ready!(Pin::new(&mut self.inner).poll_read(cx, &mut buf)) {
                Ok(()) if !buf.filled().is_empty() => {}
                // EOF, or a client that reset: nothing more to wait for.
                _ => return Poll::Ready(Ok(())),
            }
        }
    }

    /// Writes what `out` holds.
    fn poll_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.out.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.out.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for AdminIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let fresh = &buf.filled()[before..];
        let want = this.request_start.len() - this.request_seen;
        let take = want.min(fresh.len());
        this.request_start[this.request_seen..this.request_seen + take]
            .copy_from_slice(&fresh[..take]);
        this.request_seen += take;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for AdminIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_out(cx))?;
        if this.head.is_none() {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        this.collect(buf);
        // Written where the socket takes it now; the rest at the next
        // write or flush.
        if let Poll::Ready(Err(err)) = this.poll_out(cx) {
            return Poll::Ready(Err(err));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_out(cx))?;
        ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        // actix-http may drop the socket right after this flush.
        this.poll_ending(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // A head cut short is passed on as it is.
        if let Some(head) = this.head.take() {
            this.out.extend_from_slice(&head);
        }
        ready!(this.poll_out(cx))?;
        if this.ending.is_some() {
            return this.poll_ending(cx);
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The status code of a response head.
fn status(head: &[u8]) -> Option<u16> {
    let code = head.get(9..12)?;
    (head.starts_with(b"HTTP/1.") && code.iter().all(u8::is_ascii_digit))
        .then(|| std::str::from_utf8(code).ok()?.parse().ok())
        .flatten()
}

fn header_name(line: &[u8]) -> &[u8] {
    line.split(|&b| b == b':').next().unwrap_or_default()
}

fn has_content_type(head: &[u8]) -> bool {
    head.split(|&b| b == b'\n')
        .any(|line| header_name(line).eq_ignore_ascii_case(b"content-type"))
}

/// The code and message a bare error of `status` is answered with.
pub fn bare_error(status: u16) -> (&'static str, &'static str) {
    match status {
        400 => ("bad_request", "the request is not valid HTTP/1.1"),
        408 => (
            "request_timeout",
            "the request did not arrive whole within 10 s",
        ),
        413 => ("payload_too_large", "the body is larger than 1 MiB"),
        431 => (
            "headers_too_large",
            "the request line and headers are too large",
        ),
        500..=599 => ("internal", "internal error"),
        _ => ("bad_request", "the request was refused"),
    }
}

/// The head of a bare error with the JSON body of its status: the status
/// line and headers kept, except the ones that describe the body and the
/// connection, which is closed after it.
fn reshape(head: &[u8], status: u16, head_request: bool) -> Vec<u8> {
    let (code, message) = bare_error(status);
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    let mut out = Vec::with_capacity(head.len() + body.len() + 96);
    let lines = head[..head.len() - 4].split(|&b| b == b'\n');
    for (i, line) in lines.enumerate() {
        let name = header_name(line);
        let dropped = [
            "content-length",
            "content-type",
            "connection",
            "transfer-encoding",
        ]
        .iter()
        .any(|d| name.eq_ignore_ascii_case(d.as_bytes()));
        if i > 0 && dropped {
            continue;
        }
        out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"content-type: application/json\r\n");
    out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    out.extend_from_slice(b"connection: close\r\n\r\n");
    if !head_request {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, duplex};

    use super::*;

    /// What the peer reads after `writes` went through an `AdminIo` whose
    /// peer first sent `request`.
    fn through(request: &[u8], writes: &[&[u8]]) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let (near, mut far) = duplex(1 << 20);
            let mut io = AdminIo::new(near);
            far.write_all(request).await.expect("request");
            far.shutdown().await.expect("client EOF");
            let mut buf = vec![0; request.len()];
            io.read_exact(&mut buf).await.expect("read");
            for chunk in writes {
                io.write_all(chunk).await.expect("write");
            }
            io.flush().await.expect("flush");
            io.shutdown().await.expect("shutdown");
            drop(io);
            let mut seen = Vec::new();
            far.read_to_end(&mut seen).await.expect("read back");
            String::from_utf8(seen).expect("utf-8")
        })
    }

    const BARE_400: &[u8] =
        b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\ndate: x\r\n\r\n";

    #[test]
    fn bare_errors_get_the_json_shape() {
        let seen = through(b"GARBAGE\r\n\r\n", &[BARE_400]);
        let (head, body) = seen.split_once("\r\n\r\n").expect("a head");
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{seen}");
        assert!(head.contains("date: x"), "{seen}");
        assert!(head.contains("content-type: application/json"), "{seen}");
        assert!(head.contains("connection: close"), "{seen}");
        assert!(!head.contains("content-length: 0"), "{seen}");
        let json: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(json["error"]["code"], "bad_request");
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }

    #[test]
    fn a_head_request_gets_the_head_only() {
        let timeout = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n";
        let seen = through(b"HEAD /x HTTP/1.1\r\n", &[timeout]);
        assert!(seen.starts_with("HTTP/1.1 408 "), "{seen}");
        assert!(seen.ends_with("connection: close\r\n\r\n"), "{seen}");
    }

    #[test]
    fn heads_split_anywhere_are_still_found() {
        for cut in 1..BARE_400.len() {
            let (a, b) = BARE_400.split_at(cut);
            let seen = through(b"GET / HTTP/1.1\r\n", &[a, b]);
            assert!(
                seen.contains(r#""code":"bad_request""#),
                "cut {cut}: {seen}"
            );
        }
    }

    #[test]
    fn answers_with_a_type_pass_untouched() {
        let answer = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        let continued: &[u8] =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}";
        for writes in [
            vec![&answer[..]],
            vec![&answer[..10], &answer[10..]],
            vec![&ok[..]],
            vec![continued],
        ] {
            let expected: Vec<u8> = writes.concat();
            let seen = through(b"POST / HTTP/1.1\r\n", &writes);
            assert_eq!(seen.as_bytes(), expected.as_slice());
        }
    }

    #[test]
    fn a_bare_error_lingers_until_the_client_is_done() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let (near, mut far) = duplex(1 << 16);
            let mut io = AdminIo::new(near);
            far.write_all(b"GARBAGE").await.expect("request");
            io.write_all(BARE_400).await.expect("write");
            let flushed = tokio::spawn(async move {
                let started = Instant::now();
                io.flush().await.expect("flush");
                started.elapsed()
            });
            let mut answer = vec![0; 64];
            far.read_exact(&mut answer).await.expect("the answer");
            // The client still sends; that is read and thrown away.
            far.write_all(&[b'x'; 50_000]).await.expect("more input");
            far.shutdown().await.expect("client EOF");
            let took = flushed.await.expect("flush task");
            assert!(took < LINGER, "{took:?}");
            let mut rest = Vec::new();
            far.read_to_end(&mut rest).await.expect("EOF");
        });
    }

    #[test]
    fn statuses() {
        assert_eq!(status(b"HTTP/1.1 431 Too Large\r\n\r\n"), Some(431));
        assert_eq!(status(b"HTTP/1.0 200 OK\r\n\r\n"), Some(200));
        assert_eq!(status(b"HTTP/2 200\r\n\r\n"), None);
        assert_eq!(status(b"junk"), None);
        assert_eq!(bare_error(431).0, "headers_too_large");
        assert_eq!(bare_error(408).0, "request_timeout");
    }
}
