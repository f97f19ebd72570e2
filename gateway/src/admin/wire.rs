//! The admin listener's byte stream, between the socket and actix-http.
//!
//! **One request at a time.** Connections are kept alive (HTTP/1.1), and a
//! client may pipeline. [`AdminIo`] hands the HTTP layer the bytes of one
//! request (where it ends is `RequestFramer`'s business, in `framer.rs`) and holds what
//! follows until that request's answer head is written. If that answer
//! carries `Connection: close`, what follows is never handed over: the HTTP
//! layer reads EOF, so nothing after a close is read or acted on (RFC 9112
//! section 9.6), which actix-http, reading ahead, would not promise. An
//! answer that comes before its request is whole (a 413, say) gets
//! `Connection: close` added, since where the next request would start is
//! then unknown.
//!
//! **Time.** Each request must arrive whole within [`REQUEST_TIMEOUT`] of
//! its first byte. The head is timed here: past the bound, `AdminIo` writes
//! a 408 itself and ends the connection (actix-http only times a
//! connection's first request). The body is timed where it is read
//! (`body.rs`), from the same instant, which [`RequestClock`] shares with
//! the handlers. A connection with no request under way is closed after
//! [`IDLE_TIMEOUT`].
//!
//! **Error bodies.** actix-http answers some requests itself, before any
//! handler runs: 400 for a request it cannot parse, 431 for headers too
//! large. Those answers have an empty body, and every error must be in the
//! API's JSON shape. `AdminIo` watches the answer heads written to the
//! socket and gives such a bare error (an error status without a
//! `Content-Type`) the JSON body its status calls for. Every answer of the
//! API itself carries a `Content-Type`, so nothing else is touched.
//!
//! **Closing.** An answer that ends the connection is followed by a shut
//! write side and a read that discards the client's input until its EOF or
//! for at most [`LINGER`], so that input the client sent after it does not
//! make the kernel answer with a reset that can destroy the answer before
//! the client reads it (the graceful close of the client protocol, in
//! small).
//!
//! It buffers at most one read of input beyond the current request, and of
//! the answer only its head (at most [`MAX_HEAD`] bytes) until it is whole.

use std::cell::Cell;
use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::framer::RequestFramer;

/// The longest answer head held back to be inspected; a longer one is
/// passed on as it is (actix-http writes far shorter ones).
pub const MAX_HEAD: usize = 16 * 1024;

/// How long the client's input is still read after an answer that ends
/// the connection.
pub const LINGER: Duration = Duration::from_secs(1);

/// The bound on one whole request, head and body, from its first byte.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection with no request under way stays open.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A held buffer with more room than this is freed once emptied.
const HELD_KEPT: usize = 8 * 1024;

/// When the request being received on a connection began: its first
/// byte's arrival. Shared between the connection's [`AdminIo`] and its
/// handlers (as connection data), so the body is timed from the same
/// instant as the head.
#[derive(Debug, Clone)]
pub struct RequestClock(Rc<Cell<Instant>>);

impl RequestClock {
    /// When the current request must have arrived whole.
    pub fn deadline(&self) -> Instant {
        self.0.get() + REQUEST_TIMEOUT
    }
}

/// What the HTTP layer may read next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    /// The current request's bytes, as they come.
    Request,
    /// Nothing: the current request was handed over whole and its answer
    /// head is not written yet.
    AwaitingAnswer,
    /// EOF: the connection ends (a close answer, a timeout, the client's
    /// EOF once everything before it was handed over).
    Closed,
}

/// A connection's stream as the HTTP layer sees it: one request at a
/// time, timed, and bare errors in the JSON shape.
pub struct AdminIo<T> {
    inner: T,
    clock: RequestClock,
    /// Read from the socket, not yet handed over: the front `release`
    /// bytes belong to the current request, the rest to the next.
    held: Vec<u8>,
    release: usize,
    framer: RequestFramer,
    input: Input,
    /// The client's EOF was read.
    inner_eof: bool,
    /// The head bound of the request under way, or the idle bound.
    timer: Pin<Box<Sleep>>,
    /// Bytes owed to `inner` before anything else is written.
    out: Vec<u8>,
    written: usize,
    /// The answer head collected so far; `None` while an answer's body
    /// passes straight through.
    head: Option<Vec<u8>>,
    /// While `head` is `None`: the bytes of the answer's body still to
    /// come, or `None` for everything to the end of the connection.
    body_left: Option<u64>,
    /// Set once the connection is to end after what `out` holds.
    ending: Option<Ending>,
    /// What the HTTP layer writes is dropped: an answer of ours (a 408)
    /// took its place.
    discard_writes: bool,
}

/// The close after an answer that ends the connection.
struct Ending {
    /// Begin at the next flush: the whole answer is in `out` (a reshaped
    /// bare error or our 408), rather than at the HTTP layer's shutdown.
    at_flush: bool,
    shut: bool,
    until: Option<Pin<Box<Sleep>>>,
}

impl Ending {
    fn new(at_flush: bool) -> Self {
        Self {
            at_flush,
            shut: false,
            until: None,
        }
    }
}

impl<T> AdminIo<T> {
    /// Wraps a freshly accepted stream.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            clock: RequestClock(Rc::new(Cell::new(Instant::now()))),
            held: Vec::new(),
            release: 0,
            framer: RequestFramer::default(),
            input: Input::Request,
            inner_eof: false,
            timer: Box::pin(tokio::time::sleep(IDLE_TIMEOUT)),
            out: Vec::new(),
            written: 0,
            head: Some(Vec::new()),
            body_left: None,
            ending: None,
            discard_writes: false,
        }
    }

    /// The clock of this connection's requests, for its handlers.
    pub fn clock(&self) -> RequestClock {
        self.clock.clone()
    }

    /// Takes freshly read bytes (already in `held`, after `release` and
    /// whatever the framer has seen) into the current request.
    fn frame_held(&mut self) {
        if self.input != Input::Request || self.release == self.held.len() {
            return;
        }
        self.begin_request();
        self.release += self.framer.feed(&self.held[self.release..]);
    }

    /// Before the framer is fed: at a request's first byte, its bound
    /// starts.
    fn begin_request(&mut self) {
        if self.framer.is_fresh() {
            let now = Instant::now();
            self.clock.0.set(now);
            self.timer.as_mut().reset(now + REQUEST_TIMEOUT);
        }
    }

    /// The answer to the current request began (its final head): the next
    /// request's bytes may go to the HTTP layer, unless this one ends the
    /// connection.
    fn answered(&mut self, closes: bool) {
        if closes {
            self.input = Input::Closed;
            self.held = Vec::new();
            self.release = 0;
            return;
        }
        // Whatever of the current request was not handed over (none, as
        // the answer keeps the connection) goes.
        self.held.drain(..self.release);
        self.release = 0;
        self.framer.reset();
        self.input = Input::Request;
        self.timer.as_mut().reset(Instant::now() + IDLE_TIMEOUT);
        self.frame_held();
    }

    /// Takes `buf` into the head being collected; once the head is whole,
    /// queues it (reshaped where it is a bare error) into `out`, with the
    /// answer's body as far as it came.
    fn collect(&mut self, buf: &[u8]) {
        let Some(head) = self.head.as_mut() else {
            self.out.extend_from_slice(buf);
            return;
        };
        head.extend_from_slice(buf);
        while let Some(head) = self.head.as_mut() {
            let Some(end) = find(head, b"\r\n\r\n") else {
                if head.len() > MAX_HEAD {
                    // Not an answer this can read: passed on, and the
                    // connection ends after it.
                    self.out.append(head);
                    self.head = None;
                    self.body_left = None;
                    self.answered(true);
                }
                return;
            };
            let rest = head.split_off(end + 4);
            let whole = std::mem::take(head);
            let head_request = self.framer.is_head_request();
            let code = status(&whole);
            match code {
                // `100 Continue`: the final head is still to come.
                Some(100..=199) => {
                    self.out.extend_from_slice(&whole);
                    self.head = Some(rest);
                    continue;
                }
                Some(code) if code >= 400 && !has_content_type(&whole) => {
                    // A bare error has no body; whatever follows is dropped.
                    self.out
                        .extend_from_slice(&reshape(&whole, code, head_request));
                    self.head = None;
                    self.discard_writes = true;
                    self.ending = Some(Ending::new(true));
                    self.answered(true);
                    return;
                }
                _ => {}
            }
            let body = if head_request || matches!(code, Some(204 | 304)) {
                Some(0)
            } else {
                content_length(&whole)
            };
            // An answer whose end this cannot tell, or that came before its
            // request was whole, ends the connection.
            let closes = body.is_none()
                || !self.framer.is_done()
                || self.framer.is_last()
                || closes_connection(&whole);
            if closes && !closes_connection(&whole) {
                self.out.extend_from_slice(&with_close(&whole));
            } else {
                self.out.extend_from_slice(&whole);
            }
            if closes {
                self.ending.get_or_insert(Ending::new(false));
            }
            self.answered(closes);
            self.head = None;
            self.body_left = body;
            let after = self.pass_body(&rest);
            if !after.is_empty() {
                self.head = Some(after.to_vec());
            }
        }
    }

    /// Queues what of `bytes` is the current answer's body; returns what
    /// follows it (the next answer).
    fn pass_body<'b>(&mut self, bytes: &'b [u8]) -> &'b [u8] {
        let take = match self.body_left {
            None => bytes.len(),
            Some(left) => left.min(bytes.len() as u64) as usize,
        };
        self.out.extend_from_slice(&bytes[..take]);
        self.body_passed(take);
        &bytes[take..]
    }

    /// Counts `n` bytes of the answer's body as passed on; after its last
    /// one, the next answer starts with a head.
    fn body_passed(&mut self, n: usize) {
        if let Some(left) = self.body_left.as_mut() {
            *left -= n as u64;
            if *left == 0 && self.head.is_none() {
                self.head = Some(Vec::new());
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AdminIo<T> {
    /// After an answer that ends the connection: shuts the write side,
    /// then reads and discards until the client's EOF, an error or the end
    /// of [`LINGER`].
    fn poll_ending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(ending) = self.ending.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        if !ending.shut {
            ready!(Pin::new(&mut self.inner).poll_shutdown(cx))?;
            ending.shut = true;
        }
        if self.inner_eof {
            return Poll::Ready(Ok(()));
        }
        let until = ending
            .until
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(LINGER)));
        let mut scratch = [0u8; 4096];
        loop {
            if until.as_mut().poll(cx).is_ready() {
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

    /// The bound ran out: with no request under way the connection just
    /// ends; a request whose head is not whole gets 408 from here.
    fn timed_out(&mut self, cx: &mut Context<'_>) {
        let head_pending = !self.framer.is_fresh() && !self.framer.head_is_done();
        // Only between two answers: never inside one the HTTP layer writes.
        if head_pending && self.head.as_ref().is_some_and(Vec::is_empty) {
            let answer = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n";
            self.out.extend_from_slice(&reshape(answer, 408, false));
            self.ending = Some(Ending::new(true));
            self.discard_writes = true;
            // Written now where the socket takes it: the HTTP layer, told
            // EOF, may not write again.
            let _ = self.poll_out(cx);
        }
        self.input = Input::Closed;
        self.held = Vec::new();
        self.release = 0;
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for AdminIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match this.input {
                // EOF.
                Input::Closed => return Poll::Ready(Ok(())),
                // Woken when the answer's head is written.
                Input::AwaitingAnswer => return Poll::Pending,
                Input::Request => {}
            }
            let timing = this.framer.is_fresh() || !this.framer.head_is_done();
            if timing && this.timer.as_mut().poll(cx).is_ready() {
                this.timed_out(cx);
                continue;
            }
            if this.release > 0 {
                let n = this.release.min(buf.remaining());
                buf.put_slice(&this.held[..n]);
                this.held.drain(..n);
                this.release -= n;
                if this.held.is_empty() && this.held.capacity() > HELD_KEPT {
                    this.held = Vec::new();
                }
                return Poll::Ready(Ok(()));
            }
            if this.framer.is_done() {
                this.input = Input::AwaitingAnswer;
                continue;
            }
            if this.inner_eof {
                this.input = Input::Closed;
                continue;
            }
            // `held` is empty here. The read goes straight into the HTTP
            // layer's buffer, and what of it belongs to the next request
            // is taken back out into `held`: a request's bytes are copied
            // once less, and what is held is still at most one read.
            if buf.remaining() == 0 {
                // Not EOF: a caller with no room learns nothing from a read.
                return Poll::Ready(Ok(()));
            }
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            let fresh = &buf.filled()[before..];
            if fresh.is_empty() {
                this.inner_eof = true;
                continue;
            }
            this.begin_request();
            let used = this.framer.feed(fresh);
            if used < fresh.len() {
                this.held.extend_from_slice(&fresh[used..]);
                buf.set_filled(before + used);
            }
            if used > 0 {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for AdminIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.discard_writes {
            return Poll::Ready(Ok(buf.len()));
        }
        ready!(this.poll_out(cx))?;
        if this.head.is_none() {
            // An answer's body, straight through, up to its end.
            let body = match this.body_left {
                None => buf,
                Some(left) => &buf[..(left.min(buf.len() as u64) as usize)],
            };
            let n = ready!(Pin::new(&mut this.inner).poll_write(cx, body))?;
            this.body_passed(n);
            return Poll::Ready(Ok(n));
        }
        let input = this.input;
        this.collect(buf);
        if this.input != input {
            // The next request (or the EOF) may be read now.
            cx.waker().wake_by_ref();
        }
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
        if this.ending.as_ref().is_some_and(|e| e.at_flush) {
            // actix-http may drop the socket right after this flush.
            return this.poll_ending(cx);
        }
        Poll::Ready(Ok(()))
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

/// The `Content-Length` of an answer head, if it has one.
fn content_length(head: &[u8]) -> Option<u64> {
    head.split(|&b| b == b'\n').find_map(|line| {
        let (name, value) = split_header(line)?;
        name.eq_ignore_ascii_case(b"content-length")
            .then(|| std::str::from_utf8(value).ok()?.trim().parse().ok())
            .flatten()
    })
}

/// Whether an answer head ends the connection: `Connection: close`, or
/// HTTP/1.0 without `keep-alive`.
fn closes_connection(head: &[u8]) -> bool {
    let tokens = |want: &str| {
        head.split(|&b| b == b'\n').any(|line| {
            split_header(line).is_some_and(|(name, value)| {
                name.eq_ignore_ascii_case(b"connection")
                    && value
                        .split(|&b| b == b',')
                        .any(|t| t.trim_ascii().eq_ignore_ascii_case(want.as_bytes()))
            })
        })
    };
    tokens("close") || (head.starts_with(b"HTTP/1.0") && !tokens("keep-alive"))
}

/// An answer head with `Connection: close` in place of any `Connection`.
fn with_close(head: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.len() + 20);
    for line in head[..head.len() - 4].split(|&b| b == b'\n') {
        if split_header(line).is_some_and(|(name, _)| name.eq_ignore_ascii_case(b"connection")) {
            continue;
        }
        out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"connection: close\r\n\r\n");
    out
}

/// A header line's name and value.
fn split_header(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = line.iter().position(|&b| b == b':')?;
    let value = &line[colon + 1..];
    Some((&line[..colon], value.strip_suffix(b"\r").unwrap_or(value)))
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
        runtime().block_on(async {
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
            let seen = through(b"POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n", &writes);
            assert_eq!(seen.as_bytes(), expected.as_slice());
        }
    }

    #[test]
    fn an_answer_before_its_request_is_whole_closes_the_connection() {
        let answer = b"HTTP/1.1 413 Payload Too Large\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        let seen = through(b"POST / HTTP/1.1\r\ncontent-length: 10\r\n\r\n{", &[answer]);
        assert!(seen.contains("connection: close\r\n"), "{seen}");
        assert!(seen.ends_with("\r\n\r\n{}"), "{seen}");
    }

    const GET: &[u8] = b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n";
    const KEEP: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
    const CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";

    /// Whether a read of `io` gives something (or EOF) before `within`.
    async fn readable(
        io: &mut AdminIo<tokio::io::DuplexStream>,
        within: Duration,
    ) -> Option<Vec<u8>> {
        let mut buf = vec![0; 4096];
        let n = tokio::time::timeout(within, io.read(&mut buf))
            .await
            .ok()?
            .expect("read");
        buf.truncate(n);
        Some(buf)
    }

    /// A stream whose client sent three `GET`s at once, the first of them
    /// read already.
    async fn three_pipelined_gets() -> (AdminIo<tokio::io::DuplexStream>, tokio::io::DuplexStream) {
        let (near, mut far) = duplex(1 << 16);
        let mut io = AdminIo::new(near);
        far.write_all(&[GET, GET, GET].concat())
            .await
            .expect("requests");
        let first = readable(&mut io, Duration::from_millis(50)).await;
        assert_eq!(first.as_deref(), Some(GET));
        (io, far)
    }

    #[test]
    fn pipelined_requests_are_handed_over_one_answer_at_a_time() {
        runtime().block_on(async {
            let (mut io, mut far) = three_pipelined_gets().await;
            let short = Duration::from_millis(50);
            // The second waits for the first one's answer.
            assert_eq!(readable(&mut io, short).await, None);
            // An answer written in pieces: its head lets the next one go.
            io.write_all(&KEEP[..10]).await.expect("write");
            assert_eq!(readable(&mut io, short).await, None);
            io.write_all(&KEEP[10..]).await.expect("write");
            assert_eq!(readable(&mut io, short).await.as_deref(), Some(GET));
            // An answer that closes: the third is never handed over.
            io.write_all(CLOSE).await.expect("write");
            assert_eq!(readable(&mut io, short).await.as_deref(), Some(&b""[..]));
            io.shutdown().await.expect("shutdown");
            drop(io);
            let mut seen = Vec::new();
            far.read_to_end(&mut seen).await.expect("read back");
            assert_eq!(seen, [KEEP, CLOSE].concat());
        });
    }

    #[test]
    fn two_answers_in_one_write_are_each_looked_at() {
        runtime().block_on(async {
            let (mut io, _far) = three_pipelined_gets().await;
            let short = Duration::from_millis(50);
            // A body that looks like a head is passed as a body.
            io.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n\r\n\r\n")
                .await
                .expect("write");
            assert_eq!(readable(&mut io, short).await.as_deref(), Some(GET));
            // The end of one answer's body and the next answer in one
            // write: the second head is seen, and it closes.
            let body_at = KEEP.len() - 2;
            io.write_all(&KEEP[..body_at]).await.expect("write");
            assert_eq!(readable(&mut io, short).await.as_deref(), Some(GET));
            io.write_all(&[&KEEP[body_at..], CLOSE].concat())
                .await
                .expect("write");
            assert_eq!(readable(&mut io, short).await.as_deref(), Some(&b""[..]));
        });
    }

    #[test]
    fn a_bare_error_lingers_until_the_client_is_done() {
        runtime().block_on(async {
            let (near, mut far) = duplex(1 << 16);
            let mut io = AdminIo::new(near);
            far.write_all(b"GARBAGE").await.expect("request");
            io.write_all(BARE_400).await.expect("write");
            let flushed = async move {
                let started = Instant::now();
                io.flush().await.expect("flush");
                started.elapsed()
            };
            let client = async move {
                let mut answer = vec![0; 64];
                far.read_exact(&mut answer).await.expect("the answer");
                // The client still sends; that is read and thrown away.
                far.write_all(&[b'x'; 50_000]).await.expect("more input");
                far.shutdown().await.expect("client EOF");
                far
            };
            let (took, mut far) = tokio::join!(flushed, client);
            assert!(took < LINGER, "{took:?}");
            let mut rest = Vec::new();
            far.read_to_end(&mut rest).await.expect("EOF");
        });
    }

    /// A runtime for one test.
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    }

    /// Runs `test` on a runtime whose clock only moves when told to.
    fn paused(test: impl std::future::Future<Output = ()>) {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime")
            .block_on(test);
    }

    #[test]
    fn a_connection_with_no_request_under_way_ends_after_a_minute() {
        paused(async {
            let (near, mut far) = duplex(1 << 16);
            let mut io = AdminIo::new(near);
            far.write_all(GET).await.expect("request");
            assert_eq!(readable(&mut io, LINGER).await.as_deref(), Some(GET));
            io.write_all(KEEP).await.expect("answer");
            // Idle: nothing for just under the bound, then EOF.
            assert_eq!(readable(&mut io, IDLE_TIMEOUT - LINGER).await, None);
            assert_eq!(
                readable(&mut io, LINGER * 2).await.as_deref(),
                Some(&b""[..])
            );
        });
    }

    #[test]
    fn a_head_not_whole_ten_seconds_after_its_first_byte_gets_408() {
        paused(async {
            let (near, mut far) = duplex(1 << 16);
            let mut io = AdminIo::new(near);
            far.write_all(GET).await.expect("request");
            assert_eq!(readable(&mut io, LINGER).await.as_deref(), Some(GET));
            io.write_all(KEEP).await.expect("answer");
            // A while idle, then a head that stalls.
            tokio::time::sleep(Duration::from_secs(30)).await;
            far.write_all(b"GET /b HTTP/1.1\r\nho")
                .await
                .expect("request");
            let started = tokio::time::Instant::now();
            assert!(readable(&mut io, LINGER).await.is_some());
            let eof = readable(&mut io, REQUEST_TIMEOUT).await;
            assert_eq!(eof.as_deref(), Some(&b""[..]));
            assert_eq!(started.elapsed(), REQUEST_TIMEOUT);
            // What the HTTP layer says now is dropped; the 408 went out.
            io.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await
                .expect("write");
            far.shutdown().await.expect("client EOF");
            io.shutdown().await.expect("shutdown");
            drop(io);
            let mut seen = Vec::new();
            far.read_to_end(&mut seen).await.expect("read back");
            let seen = String::from_utf8(seen).expect("utf-8");
            let second = seen.strip_prefix(std::str::from_utf8(KEEP).expect("utf-8"));
            let second = second.expect("the first answer first");
            assert!(second.starts_with("HTTP/1.1 408 "), "{seen}");
            assert!(second.contains(r#""code":"request_timeout""#), "{seen}");
            assert!(!second.contains("400"), "{seen}");
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
