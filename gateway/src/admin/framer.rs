//! Where one HTTP/1.1 request ends in the bytes a client sends.
//!
//! The admin listener keeps connections alive, and a client may send its
//! next request before the answer to the last one (pipelining). RFC 9112
//! section 9.6 says that after an answer carrying `Connection: close`
//! nothing more is read or acted on; actix-http reads ahead and would act on
//! a pipelined request it already holds. So [`AdminIo`](super::wire::AdminIo)
//! hands the HTTP layer one request at a time, and this is how it knows
//! where a request ends: the head (parsed with `httparse`), then a body of
//! `Content-Length` bytes or a chunked body.
//!
//! It does not validate: a request whose framing it cannot tell (a head it
//! cannot parse or too large, both `Content-Length` and `Transfer-Encoding`,
//! a length that does not parse, a chunk size that overflows) is *opaque*:
//! every byte that follows belongs to it, and the HTTP layer, which refuses
//! such a request, closes the connection after its answer. A request that
//! breaks the chunked syntax inside a chunk is refused the same way by the
//! HTTP layer, so a boundary found here is never acted on wrongly.

/// The longest request head looked at; a longer one is opaque (the HTTP
/// layer answers 431 and closes).
const MAX_HEAD: usize = 64 * 1024;
/// The longest chunk-size or trailer line looked at.
const MAX_LINE: usize = 8 * 1024;
/// Headers a head may have to be framed (actix-http takes at most 96).
const MAX_HEADERS: usize = 128;

/// The request being received.
#[derive(Debug, Default)]
pub struct RequestFramer {
    part: Part,
    /// The head so far (only while in [`Part::Head`]).
    head: Vec<u8>,
    head_request: bool,
    /// The client asked for the connection to end after this request.
    last: bool,
    /// Heads parsed, for the test that holds it to one per request.
    #[cfg(test)]
    parses: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Collecting the head.
    #[default]
    Head,
    /// This many body bytes still to come.
    Body(u64),
    /// A chunk-size line, this long so far.
    ChunkSize {
        line: usize,
        size: Option<u64>,
        in_ext: bool,
    },
    /// This many bytes of chunk data and its CRLF still to come.
    ChunkData(u64),
    /// A trailer line, this long so far (the empty one ends the body).
    Trailer { line: usize },
    /// The request is whole.
    Done,
    /// Framing unknown: everything that follows belongs to this request.
    Opaque,
}

impl RequestFramer {
    /// Takes bytes of the current request from the front of `bytes`;
    /// returns how many belong to it (all of them until it is whole).
    pub fn feed(&mut self, bytes: &[u8]) -> usize {
        let mut used = 0;
        while used < bytes.len() {
            let rest = &bytes[used..];
            match self.part {
                Part::Done => break,
                Part::Opaque => return bytes.len(),
                Part::Head => used += self.feed_head(rest),
                Part::Body(left) => {
                    let take = left.min(rest.len() as u64);
                    used += take as usize;
                    self.part = match left - take {
                        0 => Part::Done,
                        left => Part::Body(left),
                    };
                }
                Part::ChunkData(left) => {
                    let take = left.min(rest.len() as u64);
                    used += take as usize;
                    self.part = match left - take {
                        0 => Part::ChunkSize {
                            line: 0,
                            size: None,
                            in_ext: false,
                        },
                        left => Part::ChunkData(left),
                    };
                }
                Part::ChunkSize { .. } | Part::Trailer { .. } => {
                    let byte = rest[0];
                    used += 1;
                    self.feed_chunk_line(byte);
                }
            }
        }
        used
    }

    /// Whether the request is whole.
    pub fn is_done(&self) -> bool {
        self.part == Part::Done
    }

    /// Whether the request's head is whole (or will never be told).
    pub fn head_is_done(&self) -> bool {
        !matches!(self.part, Part::Head)
    }

    /// Whether the request is a `HEAD`, whose answer has no body.
    pub fn is_head_request(&self) -> bool {
        self.head_request
    }

    /// Whether the client asked for the connection to end after this
    /// request: `Connection: close`, or HTTP/1.0 without `keep-alive`.
    pub fn is_last(&self) -> bool {
        self.last
    }

    /// Whether nothing of a request has been seen yet.
    pub fn is_fresh(&self) -> bool {
        self.part == Part::Head && self.head.is_empty()
    }

    /// Gets ready for the next request.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    fn feed_head(&mut self, rest: &[u8]) -> usize {
        let before = self.head.len();
        // Only the head is taken in: a body that came in the same read is
        // neither copied nor scanned here (it was both, at 16 KiB a push).
        // Empty lines before the request line end nothing (a server ignores
        // them, RFC 9112 section 2.2), so the search starts after them:
        // else each would be taken for the end and the head parsed again,
        // once per blank line, quadratic in the head's length.
        let blank = |b: &u8| matches!(b, b'\r' | b'\n');
        let (held, from) = match self.head.iter().all(blank) {
            true => (
                &[][..],
                rest.iter().position(|b| !blank(b)).unwrap_or(rest.len()),
            ),
            false => (&self.head[before.saturating_sub(2)..], 0),
        };
        let end = head_end(held, &rest[from..]).map(|end| from + end);
        let take = end.unwrap_or(rest.len()).min(MAX_HEAD + 1 - before);
        self.head.extend_from_slice(&rest[..take]);
        // Known from the first bytes, for an answer to a head cut short.
        self.head_request = self.head.starts_with(b"HEAD ");
        // Parsed only once an empty line ended it, so a head dribbled a
        // byte at a time costs a scan, not a parse per byte.
        if end.is_none_or(|end| end > take) {
            if self.head.len() <= MAX_HEAD {
                return take;
            }
            self.part = Part::Opaque;
            self.head = Vec::new();
            return rest.len();
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        #[cfg(test)]
        {
            self.parses += 1;
        }
        match request.parse(&self.head) {
            Ok(httparse::Status::Complete(len)) => {
                self.last = asks_to_close(request.version, request.headers);
                self.part = body_of(request.headers);
                self.head = Vec::new();
                // What followed the head in this feed is looked at again.
                len - before
            }
            Ok(httparse::Status::Partial) if self.head.len() <= MAX_HEAD => take,
            // Unparseable or too large: the HTTP layer refuses it.
            _ => {
                self.part = Part::Opaque;
                self.head = Vec::new();
                rest.len()
            }
        }
    }

    fn feed_chunk_line(&mut self, byte: u8) {
        match &mut self.part {
            Part::ChunkSize { line, size, in_ext } => {
                *line += 1;
                if *line > MAX_LINE {
                    self.part = Part::Opaque;
                } else if byte == b'\n' {
                    self.part = match *size {
                        Some(0) => Part::Trailer { line: 0 },
                        // The data, then its CRLF.
                        Some(n) => n.checked_add(2).map_or(Part::Opaque, Part::ChunkData),
                        None => Part::Opaque,
                    };
                } else if *in_ext || byte == b'\r' {
                } else if byte == b';' || byte == b' ' || byte == b'\t' {
                    *in_ext = true;
                } else if let Some(digit) = (byte as char).to_digit(16) {
                    let next = size
                        .unwrap_or(0)
                        .checked_mul(16)
                        .and_then(|n| n.checked_add(u64::from(digit)));
                    match next {
                        Some(n) => *size = Some(n),
                        None => self.part = Part::Opaque,
                    }
                } else {
                    self.part = Part::Opaque;
                }
            }
            Part::Trailer { line } => {
                if byte == b'\n' {
                    self.part = if *line == 0 {
                        Part::Done
                    } else {
                        Part::Trailer { line: 0 }
                    };
                } else if byte != b'\r' {
                    *line += 1;
                    if *line > MAX_LINE {
                        self.part = Part::Opaque;
                    }
                }
            }
            _ => {}
        }
    }
}

/// Where in `rest` the first empty line ends (just past its `\n`), the
/// end of a head; `held` is what came just before `rest` (the last two
/// bytes of the head so far are enough to see an empty line cut in two).
fn head_end(held: &[u8], rest: &[u8]) -> Option<usize> {
    let byte_before = |i: usize, back: usize| match i.checked_sub(back) {
        Some(at) => rest.get(at).copied(),
        None => held
            .len()
            .checked_sub(back - i)
            .and_then(|at| held.get(at).copied()),
    };
    memchr::memchr_iter(b'\n', rest)
        .find(|&i| {
            byte_before(i, 1) == Some(b'\n')
                || (byte_before(i, 1) == Some(b'\r') && byte_before(i, 2) == Some(b'\n'))
        })
        .map(|i| i + 1)
}

/// Whether a request of this version with these headers ends its
/// connection (RFC 9112 section 9.3).
fn asks_to_close(version: Option<u8>, headers: &[httparse::Header<'_>]) -> bool {
    let says = |token: &str| {
        headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("connection")
                && h.value
                    .split(|&b| b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    };
    says("close") || (version == Some(0) && !says("keep-alive"))
}

/// How the body of a request with these headers is framed (RFC 9112
/// section 6.3, refusing what a smuggler would send).
fn body_of(headers: &[httparse::Header<'_>]) -> Part {
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut encoded = false;
    for header in headers {
        if header.name.eq_ignore_ascii_case("content-length") {
            let Some(value) = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
            else {
                return Part::Opaque;
            };
            if length.is_some_and(|l| l != value) {
                return Part::Opaque;
            }
            length = Some(value);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            encoded = true;
            let Ok(value) = std::str::from_utf8(header.value) else {
                return Part::Opaque;
            };
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        }
    }
    match (length, encoded) {
        (Some(_), true) => Part::Opaque,
        (None, true) if chunked => Part::ChunkSize {
            line: 0,
            size: None,
            in_ext: false,
        },
        (None, true) => Part::Opaque,
        (Some(0) | None, false) => Part::Done,
        (Some(n), false) => Part::Body(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` in pieces of `step` bytes; returns how many bytes made
    /// the first request, or `None` when it is not whole.
    fn first_request(wire: &[u8], step: usize) -> Option<usize> {
        let mut framer = RequestFramer::default();
        let mut used = 0;
        for piece in wire.chunks(step) {
            let took = framer.feed(piece);
            used += took;
            if framer.is_done() {
                return Some(used);
            }
            assert_eq!(took, piece.len(), "a request not whole took only part");
        }
        None
    }

    const GET: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    const POST: &[u8] =
        b"POST /api/v1/broadcast HTTP/1.1\r\nContent-Length: 13\r\n\r\n{\"data\":\"hi\"}";
    const CHUNKED: &[u8] = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n";
    /// Bare `\n` line ends, and a body that holds an empty line of its own.
    const BARE_LF: &[u8] = b"POST /y HTTP/1.1\nContent-Length: 6\n\nab\n\ncd";
    /// An empty line before the request line, which a server ignores.
    const LEADING_BLANK: &[u8] = b"\r\nPOST /z HTTP/1.1\r\nContent-Length: 4\r\n\r\n\r\n\r\n";

    #[test]
    fn each_request_ends_where_it_should_in_pieces_of_any_size() {
        for request in [GET, POST, CHUNKED, BARE_LF, LEADING_BLANK] {
            let wire = [request, GET].concat();
            for step in 1..=wire.len() {
                assert_eq!(
                    first_request(&wire, step),
                    Some(request.len()),
                    "step {step}: {}",
                    String::from_utf8_lossy(request)
                );
            }
        }
    }

    #[test]
    fn blank_lines_before_a_request_cost_no_parse_each() {
        let blank = b"\r\n\n".repeat(4000);
        let wire = [&blank[..], GET].concat();
        for step in [7, 4096, wire.len()] {
            let mut framer = RequestFramer::default();
            let mut used = 0;
            for piece in wire.chunks(step) {
                used += framer.feed(piece);
                // The request's clock runs from its first blank byte.
                assert!(!framer.is_fresh(), "step {step}");
            }
            assert!(framer.is_done());
            assert_eq!(used, wire.len(), "step {step}");
            assert_eq!(framer.parses, 1, "step {step}");
        }
    }

    #[test]
    fn a_partial_request_is_not_whole() {
        for request in [GET, POST, CHUNKED] {
            let cut = &request[..request.len() - 1];
            assert_eq!(first_request(cut, 7), None);
        }
    }

    #[test]
    fn the_head_is_told_apart_from_the_body() {
        let mut framer = RequestFramer::default();
        assert!(framer.is_fresh());
        framer.feed(&POST[..20]);
        assert!(!framer.is_fresh() && !framer.head_is_done());
        framer.feed(&POST[20..POST.len() - 3]);
        assert!(framer.head_is_done() && !framer.is_done());
        framer.feed(&POST[POST.len() - 3..]);
        assert!(framer.is_done());
        framer.reset();
        framer.feed(b"HEAD / HTTP/1.1\r\n\r\n");
        assert!(framer.is_done() && framer.is_head_request() && !framer.is_last());
        for last in [
            &b"GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n"[..],
            b"GET / HTTP/1.0\r\n\r\n",
        ] {
            framer.reset();
            framer.feed(last);
            assert!(framer.is_last(), "{}", String::from_utf8_lossy(last));
        }
        framer.reset();
        framer.feed(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(!framer.is_last());
    }

    #[test]
    fn what_a_smuggler_sends_is_opaque() {
        for head in [
            &b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
            b"GARBAGE\0\r\n\r\n",
        ] {
            let mut framer = RequestFramer::default();
            let wire = [head, GET].concat();
            assert_eq!(
                framer.feed(&wire),
                wire.len(),
                "{}",
                String::from_utf8_lossy(head)
            );
            assert!(!framer.is_done());
            assert!(framer.head_is_done());
        }
    }

    #[test]
    fn a_head_too_large_is_opaque() {
        let mut framer = RequestFramer::default();
        let huge = vec![b'a'; MAX_HEAD + 10];
        framer.feed(b"GET / HTTP/1.1\r\nX: ");
        assert_eq!(framer.feed(&huge), huge.len());
        assert!(framer.head_is_done() && !framer.is_done());
    }
}
