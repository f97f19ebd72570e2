//! Frame formats (contract section 2): `lines` (bytes up to `\n`, a `\r`
//! before it dropped) and `length` (a 4-byte big-endian length, then the
//! bytes). Payloads are bytes; nothing here assumes UTF-8.
//!
//! Decoding works on a borrowed slice so the connection can parse straight
//! out of a shared read buffer and copy only a trailing partial frame. It
//! refuses a frame as soon as it is known to exceed the limit, so no caller
//! ever buffers more than the limit.
//!
//! # Decoding a read
//!
//! One read may hold several frames and the start of another. The caller
//! decodes frames off the front of what it read until the codec says the
//! rest is incomplete, then keeps only that rest for the next read:
//!
//! ```
//! use conn_actor::{FrameCodec, Framing};
//!
//! # fn main() -> Result<(), conn_actor::codec::FrameError> {
//! let codec = FrameCodec::new(Framing::Lines, 64);
//! let mut read: &[u8] = b"PING\r\nSUB news\nPUB news hel";
//! let mut frames = Vec::new();
//! while let Some(decoded) = codec.decode_slice(read)? {
//!     frames.push(decoded.frame);
//!     read = &read[decoded.consumed..];
//! }
//! assert_eq!(frames, [&b"PING"[..], b"SUB news"]);
//! // An incomplete frame: keep it and read more.
//! assert_eq!(read, b"PUB news hel");
//! # Ok(())
//! # }
//! ```
//!
//! The same bytes arriving in any chunks, one byte at a time included, give
//! the same frames: the unit tests check that for every input.
//!
//! # Encoding
//!
//! Frames travel through the gateway unframed: a producer hands over a
//! frame's body (`MSG topic payload`) and only the connection's write path
//! wraps it, with [`FrameCodec::wrap`], in what its framing puts around a
//! body (a 4-byte length before it, or a `\n` after it). The body is never
//! copied for that: the wrap goes out as its own slices of the same
//! vectored write.
//!
//! ```
//! use conn_actor::codec;
//! use conn_actor::{FrameCodec, Framing};
//!
//! // Built once, shared by every connection it goes to.
//! let body = codec::body(&[b"MSG news ", b"hello"]);
//! let lines = FrameCodec::new(Framing::Lines, 64);
//! let wrap = lines.wrap(&body);
//! assert_eq!((wrap.head(), wrap.tail()), (&b""[..], &b"\n"[..]));
//! let length = FrameCodec::new(Framing::Length, 64);
//! let wrap = length.wrap(&body);
//! assert_eq!((wrap.head(), wrap.tail()), (&14u32.to_be_bytes()[..], &b""[..]));
//! assert_eq!(length.wire_len(&body), 4 + 14);
//! // A whole frame in one buffer, for a write outside a connection's queue.
//! assert_eq!(&length.encode(&[b"PONG"])[..], b"\x00\x00\x00\x04PONG");
//! ```

use bytes::{BufMut, Bytes, BytesMut};

/// The frame format, the same in both directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Frames end with `\n`.
    Lines,
    /// Frames start with a 4-byte big-endian length.
    Length,
}

/// A complete frame found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// The frame's own bytes, without delimiter or length prefix.
    pub frame: &'a [u8],
    /// How many buffer bytes the frame used, delimiter or prefix included.
    pub consumed: usize,
}

/// Why a buffer cannot be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The frame is longer than the limit.
    #[error("frame larger than {limit} bytes")]
    TooLarge {
        /// The limit in force.
        limit: usize,
    },
}

/// A frame body made of `parts` laid end to end, allocated once: what a
/// producer hands to a connection, unframed.
pub fn body(parts: &[&[u8]]) -> Bytes {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = BytesMut::with_capacity(len);
    for part in parts {
        out.put_slice(part);
    }
    out.freeze()
}

/// Decoder and encoder for one framing and limit; `Copy`, so every
/// connection holds its own.
#[derive(Clone, Copy, Debug)]
pub struct FrameCodec {
    framing: Framing,
    max_frame: usize,
    /// Each body goes out as one unmasked WebSocket message (text when it
    /// is UTF-8, else binary) whatever `framing` says; input is then the
    /// WebSocket decoder's, never [`FrameCodec::decode_slice`]'s.
    websocket: bool,
}

const LEN_PREFIX: usize = 4;

/// Most bytes a framing puts around one body, before and after it.
pub const MAX_WRAP: usize = 10;

/// What a framing puts around one body: `head`, the body, then `tail`.
/// Computed on the stack for each write; a queue holds bodies only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wrap {
    bytes: [u8; MAX_WRAP],
    head: u8,
    tail: u8,
}

impl Wrap {
    /// Nothing around the body.
    pub const NONE: Wrap = Wrap {
        bytes: [0; MAX_WRAP],
        head: 0,
        tail: 0,
    };

    /// A wrap of `head` before the body and `tail` after it; together at
    /// most [`MAX_WRAP`] bytes.
    pub fn new(head: &[u8], tail: &[u8]) -> Wrap {
        assert!(head.len() + tail.len() <= MAX_WRAP, "wrap too long");
        let mut bytes = [0; MAX_WRAP];
        bytes[..head.len()].copy_from_slice(head);
        bytes[head.len()..head.len() + tail.len()].copy_from_slice(tail);
        Wrap {
            bytes,
            head: head.len() as u8,
            tail: tail.len() as u8,
        }
    }

    /// The bytes before the body.
    pub fn head(&self) -> &[u8] {
        &self.bytes[..usize::from(self.head)]
    }

    /// The bytes after the body.
    pub fn tail(&self) -> &[u8] {
        let head = usize::from(self.head);
        &self.bytes[head..head + usize::from(self.tail)]
    }

    /// Head and tail together.
    pub fn len(&self) -> usize {
        usize::from(self.head) + usize::from(self.tail)
    }

    /// Whether the body goes out bare.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl FrameCodec {
    /// A codec refusing client frames over `max_frame` bytes.
    pub const fn new(framing: Framing, max_frame: usize) -> Self {
        Self {
            framing,
            max_frame,
            websocket: false,
        }
    }

    /// The codec of a WebSocket connection (contract section 12): one
    /// message per frame, `--framing` aside.
    pub const fn websocket(max_frame: usize) -> Self {
        Self {
            framing: Framing::Length,
            max_frame,
            websocket: true,
        }
    }

    /// The framing this codec speaks.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Whether a frame ending in `payload` reaches a client of this codec
    /// as sent: under `lines` it may hold no `\n` (it would split the
    /// frame) and may not end in `\r` (the client would drop it).
    pub fn carries(&self, payload: &[u8]) -> bool {
        match (self.websocket, self.framing) {
            (false, Framing::Lines) => !payload.contains(&b'\n') && payload.last() != Some(&b'\r'),
            _ => true,
        }
    }

    /// The first complete frame of `buf`, `Ok(None)` while it is incomplete
    /// and still within the limit.
    ///
    /// A buffer can be in one of three situations:
    ///
    /// ```
    /// use conn_actor::codec::{Decoded, FrameError};
    /// use conn_actor::{FrameCodec, Framing};
    ///
    /// let codec = FrameCodec::new(Framing::Length, 5);
    /// // A whole frame at the front: its bytes, and how much it used.
    /// assert_eq!(
    ///     codec.decode_slice(b"\x00\x00\x00\x02hi\x00"),
    ///     Ok(Some(Decoded { frame: b"hi", consumed: 6 }))
    /// );
    /// // Not whole yet, and within the limit: wait for more.
    /// assert_eq!(codec.decode_slice(b"\x00\x00\x00\x05hel"), Ok(None));
    /// // Over the limit: refused as soon as that is known, here from the
    /// // length prefix alone.
    /// assert_eq!(
    ///     codec.decode_slice(b"\x00\x00\x00\x06"),
    ///     Err(FrameError::TooLarge { limit: 5 })
    /// );
    /// ```
    ///
    /// Under `lines`, a `\r` before the `\n` is dropped, and a line is
    /// refused once it has passed the limit without a `\n`:
    ///
    /// ```
    /// use conn_actor::{FrameCodec, Framing};
    ///
    /// let codec = FrameCodec::new(Framing::Lines, 5);
    /// let decoded = codec.decode_slice(b"QUIT\r\n").ok().flatten();
    /// assert_eq!(decoded.map(|d| (d.frame, d.consumed)), Some((&b"QUIT"[..], 6)));
    /// assert!(codec.decode_slice(b"123456").is_err());
    /// ```
    pub fn decode_slice<'a>(&self, buf: &'a [u8]) -> Result<Option<Decoded<'a>>, FrameError> {
        match self.framing {
            Framing::Lines => self.decode_line(buf),
            Framing::Length => self.decode_length(buf),
        }
    }

    fn decode_line<'a>(&self, buf: &'a [u8]) -> Result<Option<Decoded<'a>>, FrameError> {
        let too_large = Err(FrameError::TooLarge {
            limit: self.max_frame,
        });
        // A frame of `max_frame` bytes may be followed by `\r\n`: never look
        // further than that for the newline.
        let window = &buf[..buf.len().min(self.max_frame + 2)];
        // Vectorised: a byte-at-a-time search was the largest user-space
        // item of a pipelined echo's profile.
        match memchr::memchr(b'\n', window) {
            Some(newline) => {
                let mut frame = &buf[..newline];
                if let Some(stripped) = frame.strip_suffix(b"\r") {
                    frame = stripped;
                }
                if frame.len() > self.max_frame {
                    return too_large;
                }
                Ok(Some(Decoded {
                    frame,
                    consumed: newline + 1,
                }))
            }
            None if buf.len() > self.max_frame + 1 => too_large,
            // `max_frame + 1` bytes are fine only while the last one is a `\r`
            // that the awaited `\n` will drop.
            None if buf.len() == self.max_frame + 1 && buf[self.max_frame] != b'\r' => too_large,
            None => Ok(None),
        }
    }

    fn decode_length<'a>(&self, buf: &'a [u8]) -> Result<Option<Decoded<'a>>, FrameError> {
        let Some(prefix) = buf.first_chunk::<LEN_PREFIX>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*prefix) as usize;
        if len > self.max_frame {
            return Err(FrameError::TooLarge {
                limit: self.max_frame,
            });
        }
        let end = LEN_PREFIX + len;
        Ok(buf.get(LEN_PREFIX..end).map(|frame| Decoded {
            frame,
            consumed: end,
        }))
    }

    /// What this framing puts around `body` on the wire. Under `lines` the
    /// body holds no `\n` (the admin API and the parser refuse those).
    pub fn wrap(&self, body: &[u8]) -> Wrap {
        if self.websocket {
            let kind = ws_protocol::encode::kind_of(body);
            return Wrap::new(
                ws_protocol::encode::message_header(kind, body.len()).as_bytes(),
                &[],
            );
        }
        match self.framing {
            Framing::Lines => Wrap::new(&[], b"\n"),
            Framing::Length => Wrap::new(&(body.len() as u32).to_be_bytes(), &[]),
        }
    }

    /// Bytes `body` takes on the wire, wrap included.
    pub fn wire_len(&self, body: &[u8]) -> usize {
        if self.websocket {
            return body.len() + ws_protocol::encode::header_len(body.len());
        }
        body.len()
            + match self.framing {
                Framing::Lines => 1,
                Framing::Length => LEN_PREFIX,
            }
    }

    /// Encodes one whole frame made of `parts` laid end to end, allocating
    /// once: for a write outside a connection's queue (a refusal).
    /// Under `lines` the caller guarantees no part holds a `\n`.
    pub fn encode(&self, parts: &[&[u8]]) -> Bytes {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut out = BytesMut::with_capacity(len + MAX_WRAP);
        self.encode_onto(parts, &mut out);
        out.freeze()
    }

    /// The wire length of the frame at the start of `wire`, which holds
    /// whole frames of this codec's own making (a run of replies); `None`
    /// when it does not start with one.
    pub fn frame_len(&self, wire: &[u8]) -> Option<usize> {
        if self.websocket {
            return ws_protocol::encode::frame_len(wire).filter(|&len| len <= wire.len());
        }
        match self.framing {
            Framing::Lines => memchr::memchr(b'\n', wire).map(|newline| newline + 1),
            Framing::Length => {
                let prefix = wire.first_chunk::<LEN_PREFIX>()?;
                let len = LEN_PREFIX + u32::from_be_bytes(*prefix) as usize;
                (len <= wire.len()).then_some(len)
            }
        }
    }

    /// Appends one whole frame made of `parts` laid end to end to `out`
    /// (what [`Self::encode`] returns); returns its wire length. Under
    /// `lines` the caller guarantees no part holds a `\n`.
    pub fn encode_onto(&self, parts: &[&[u8]], out: &mut BytesMut) -> usize {
        let start = out.len();
        if self.websocket {
            // The header depends on the whole body (text when it is UTF-8):
            // lay the body down, then move it behind its header.
            for part in parts {
                out.put_slice(part);
            }
            let wrap = self.wrap(&out[start..]);
            out.put_slice(wrap.head());
            out[start..].rotate_right(wrap.head().len());
        } else {
            let len: usize = parts.iter().map(|p| p.len()).sum();
            self.encode_into(parts, len, out);
        }
        out.len() - start
    }

    fn encode_into(&self, parts: &[&[u8]], len: usize, out: &mut BytesMut) {
        if self.framing == Framing::Length {
            out.put_u32(len as u32);
        }
        for part in parts {
            out.put_slice(part);
        }
        if self.framing == Framing::Lines {
            out.put_u8(b'\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` to the codec in chunks of `chunk` bytes, as reads
    /// would deliver it, and collects the frames, or the error that stopped
    /// decoding.
    fn decode_all(codec: FrameCodec, input: &[u8], chunk: usize) -> Result<Vec<Vec<u8>>, String> {
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            buf.extend_from_slice(piece);
            loop {
                match codec.decode_slice(&buf) {
                    Ok(Some(decoded)) => {
                        let consumed = decoded.consumed;
                        frames.push(decoded.frame.to_vec());
                        bytes::Buf::advance(&mut buf, consumed);
                    }
                    Ok(None) => break,
                    Err(e) => return Err(e.to_string()),
                }
            }
        }
        Ok(frames)
    }

    fn check(codec: FrameCodec, input: &[u8], expected: Result<Vec<&[u8]>, &str>) {
        let expected = expected
            .map(|v| v.into_iter().map(<[u8]>::to_vec).collect::<Vec<_>>())
            .map_err(str::to_string);
        for chunk in [1, 2, 3, 7, input.len().max(1)] {
            assert_eq!(
                decode_all(codec, input, chunk),
                expected,
                "input {input:?} in chunks of {chunk}"
            );
        }
    }

    const LINES: FrameCodec = FrameCodec::new(Framing::Lines, 5);
    const LENGTH: FrameCodec = FrameCodec::new(Framing::Length, 5);

    #[test]
    fn lines_split_on_newline_and_drop_one_cr() {
        check(
            LINES,
            b"PING\nab\r\n\n\r\nx\r\r\n",
            Ok(vec![b"PING", b"ab", b"", b"", b"x\r"]),
        );
        check(LINES, b"a\rb\n", Ok(vec![b"a\rb"]));
        check(LINES, b"\x00\xff\n", Ok(vec![b"\x00\xff"]));
    }

    #[test]
    fn lines_limit_counts_the_frame_without_its_delimiter() {
        check(LINES, b"12345\n", Ok(vec![b"12345"]));
        check(LINES, b"12345\r\n", Ok(vec![b"12345"]));
        check(LINES, b"123456\n", Err("frame larger than 5 bytes"));
        check(LINES, b"12345\r\r\n", Err("frame larger than 5 bytes"));
    }

    #[test]
    fn lines_refuse_as_soon_as_the_limit_is_passed() {
        assert_eq!(LINES.decode_slice(b"12345"), Ok(None));
        assert_eq!(LINES.decode_slice(b"12345\r"), Ok(None));
        assert!(LINES.decode_slice(b"123456").is_err());
        assert!(LINES.decode_slice(b"1234567").is_err());
    }

    #[test]
    fn length_frames_round_trip_any_bytes() {
        let mut input = Vec::new();
        for frame in [&b""[..], b"\n\r\x00", b"12345"] {
            input.extend_from_slice(&(frame.len() as u32).to_be_bytes());
            input.extend_from_slice(frame);
        }
        check(LENGTH, &input, Ok(vec![b"", b"\n\r\x00", b"12345"]));
    }

    #[test]
    fn length_prefix_over_the_limit_is_refused_before_the_body() {
        assert!(LENGTH.decode_slice(&6u32.to_be_bytes()).is_err());
        assert!(LENGTH.decode_slice(&u32::MAX.to_be_bytes()).is_err());
        assert_eq!(LENGTH.decode_slice(&5u32.to_be_bytes()), Ok(None));
        assert_eq!(LENGTH.decode_slice(&[0, 0]), Ok(None));
    }

    #[test]
    fn wraps_match_whole_frames() {
        for codec in [LINES, LENGTH, FrameCodec::websocket(64)] {
            for body in [&b""[..], b"MSG t x", &[b'y'; 300]] {
                let wrap = codec.wrap(body);
                let wire = [wrap.head(), body, wrap.tail()].concat();
                assert_eq!(wire, codec.encode(&[body]).to_vec());
                assert_eq!(codec.wire_len(body), wire.len());
            }
        }
        assert_eq!(LENGTH.wrap(b"abc").head(), &[0, 0, 0, 3]);
        assert!(Wrap::NONE.is_empty());
        let ws = FrameCodec::websocket(64);
        assert_eq!(ws.wrap(b"PONG").head(), &[0x81, 4]);
        assert_eq!(ws.wrap(b"MSG t \xff").head(), &[0x82, 7]);
        assert_eq!(ws.wrap(&[b'y'; 300]).head(), &[0x81, 126, 1, 44]);
    }

    #[test]
    fn encode_adds_the_delimiter_or_prefix() {
        assert_eq!(&LINES.encode(&[b"MSG t", b" ", b"x y"])[..], b"MSG t x y\n");
        for codec in [LINES, LENGTH, FrameCodec::websocket(64)] {
            for parts in [
                &[&b"PONG "[..], b"\xc3", b"\xa9"][..],
                &[b"PONG ", b"\xff"],
                &[],
            ] {
                let mut out = BytesMut::from(&b"before"[..]);
                let len = codec.encode_onto(parts, &mut out);
                // What the wrap of the whole body makes of it: the header
                // of a WebSocket message depends on all its parts at once.
                let body = parts.concat();
                let wrap = codec.wrap(&body);
                let whole = [wrap.head(), &body, wrap.tail()].concat();
                assert_eq!(len, whole.len());
                assert_eq!(&out[..6], b"before");
                assert_eq!(&out[6..], &whole[..], "{codec:?} {parts:?}");
                assert_eq!(codec.frame_len(&out[6..]), Some(len));
                out.extend_from_slice(&whole);
                assert_eq!(codec.frame_len(&out[6..]), Some(len), "the first of two");
                assert_eq!(
                    codec.frame_len(&whole[..len - 1]),
                    None,
                    "{codec:?} cut short"
                );
            }
        }
        assert_eq!(&LENGTH.encode(&[b"PONG"])[..], b"\x00\x00\x00\x04PONG");
        assert_eq!(&LENGTH.encode(&[b"\n"])[..], b"\x00\x00\x00\x01\n");
    }
}
