//! Client frames in, messages and control events out (RFC 6455 section 5).
//!
//! [`Decoder::decode`] takes the bytes of one read, in a mutable buffer so
//! payloads are unmasked where they lie: a message whose frame arrived whole
//! in one read is handed out from the read buffer without a copy. Only a
//! header split across reads (at most 14 bytes, kept inline), a fragmented
//! or split message, and a split control frame are copied into the
//! decoder, and their buffers are freed once the message is handed out, so
//! a decoder between messages holds no heap memory.
//!
//! The message limit counts the whole message (every fragment) and is
//! applied as soon as a frame header announces that the message will pass
//! it: nothing over the limit is ever buffered. Past it, data frames are
//! skipped (their lengths are known, so the stream stays in step) and
//! control frames still come out, so the client's Close is still seen.
//! Anything that breaks the protocol ends decoding with the status code to
//! fail the connection with.

use std::io::Cursor;
use std::mem;

use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};

use crate::mask::unmask;

/// The longest frame header: 2 bytes, an 8-byte length and a 4-byte mask.
const MAX_HEADER: usize = 14;
/// The longest control frame payload.
const MAX_CONTROL: u64 = 125;

/// Whether a data message is text or binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A text message: valid UTF-8.
    Text,
    /// A binary message: any bytes.
    Binary,
}

/// What the client's frames amount to, in the order they arrived.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A whole data message, unmasked and reassembled; a text message has
    /// been checked to be UTF-8.
    Message {
        /// Text or binary.
        kind: Kind,
        /// The message's payload.
        data: &'a [u8],
    },
    /// A ping, to be answered with a pong carrying `data`.
    Ping(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
    /// The client's Close frame, with its status code when it gave one.
    Close(Option<CloseCode>),
    /// A data message passed the limit: the connection should close with
    /// [`CloseCode::Size`] (1009). From here on data frames are skipped.
    TooLarge,
    /// The client broke the protocol: the connection should be failed with
    /// this code ([`CloseCode::Protocol`], or [`CloseCode::Invalid`] for
    /// text that is not UTF-8). Nothing more is decoded.
    Failed(CloseCode),
}

/// What the payload of the frame being read is for.
#[derive(Debug, Clone, Copy)]
enum Payload {
    /// Part of the data message being read; `fin` ends it.
    Data { fin: bool },
    /// A control frame's payload.
    Control(Control),
    /// Data nobody will read: passed the limit, or discarded.
    Skip,
}

/// The frame whose payload is being read.
#[derive(Debug, Clone, Copy)]
struct Frame {
    payload: Payload,
    mask: [u8; 4],
    /// Payload bytes still to come.
    remaining: u64,
    /// Payload bytes already read (the mask's phase).
    offset: u64,
}

/// The decoding state of one connection.
#[derive(Debug)]
pub struct Decoder {
    max_message: usize,
    /// The start of a header split across reads.
    head: [u8; MAX_HEADER],
    head_len: u8,
    frame: Option<Frame>,
    /// The kind of the data message whose fragments are arriving.
    message_kind: Option<Kind>,
    /// Fragments (or pieces) of that message read so far.
    message: Vec<u8>,
    /// The start of a control frame split across reads.
    control: Vec<u8>,
    /// Data frames are skipped rather than read.
    skip_data: bool,
    /// A protocol error ended decoding.
    failed: bool,
}

impl Decoder {
    /// A decoder refusing messages over `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        Self {
            max_message,
            head: [0; MAX_HEADER],
            head_len: 0,
            frame: None,
            message_kind: None,
            message: Vec::new(),
            control: Vec::new(),
            skip_data: false,
            failed: false,
        }
    }

    /// Decodes the bytes of one read, unmasking them in place, and reports
    /// each event to `on` as soon as it is complete. Whatever part of a
    /// frame is left at the end is kept for the next call.
    pub fn decode(&mut self, input: &mut [u8], mut on: impl FnMut(Event<'_>)) {
        let mut pos = 0;
        while !self.failed {
            let Some(frame) = self.frame else {
                if pos == input.len() {
                    break;
                }
                match self.read_header(&input[pos..]) {
                    Ok(Some((used, header, len))) => {
                        pos += used;
                        self.start_frame(&header, len, &mut on);
                    }
                    // The rest of the input is the start of a header.
                    Ok(None) => break,
                    Err(code) => self.fail(code, &mut on),
                }
                continue;
            };
            let available = (input.len() - pos) as u64;
            if available == 0 && frame.remaining > 0 {
                break;
            }
            let n = frame.remaining.min(available) as usize;
            let chunk = &mut input[pos..pos + n];
            pos += n;
            self.read_payload(frame, chunk, &mut on);
        }
    }

    /// From now on data frames are skipped without being buffered (the
    /// connection no longer acts on messages); control frames still come.
    pub fn discard_data(&mut self) {
        self.skip_data = true;
        self.message_kind = None;
        self.message = Vec::new();
        if let Some(frame) = &mut self.frame
            && matches!(frame.payload, Payload::Data { .. })
        {
            frame.payload = Payload::Skip;
        }
    }

    /// Whether a protocol error ended decoding.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Whether nothing of a frame is held: between frames, with no partly
    /// read message and no error.
    pub fn is_pristine(&self) -> bool {
        self.head_len == 0
            && self.frame.is_none()
            && self.message_kind.is_none()
            && self.message.is_empty()
            && self.control.is_empty()
            && !self.skip_data
            && !self.failed
    }

    /// Forgets everything of the previous connection and frees its buffers.
    pub fn reset(&mut self) {
        *self = Self::new(self.max_message);
    }

    /// Parses a header from what is carried over plus `rest`; returns the
    /// bytes of `rest` it used, or `None` when `rest` was all taken in and
    /// the header is still incomplete.
    fn read_header(&mut self, rest: &[u8]) -> Result<Option<(usize, FrameHeader, u64)>, CloseCode> {
        let carried = usize::from(self.head_len);
        let take = rest.len().min(MAX_HEADER - carried);
        let mut buf = self.head;
        buf[carried..carried + take].copy_from_slice(&rest[..take]);
        let mut cursor = Cursor::new(&buf[..carried + take]);
        match FrameHeader::parse(&mut cursor) {
            Ok(Some((header, len))) => {
                let used = cursor.position() as usize - carried;
                self.head_len = 0;
                Ok(Some((used, header, len)))
            }
            Ok(None) => {
                // Fewer than MAX_HEADER bytes, so `rest` is used up.
                self.head = buf;
                self.head_len = (carried + take) as u8;
                Ok(None)
            }
            Err(_) => Err(CloseCode::Protocol),
        }
    }

    fn start_frame(&mut self, header: &FrameHeader, len: u64, on: &mut impl FnMut(Event<'_>)) {
        if header.rsv1 || header.rsv2 || header.rsv3 {
            // No extension was negotiated.
            return self.fail(CloseCode::Protocol, on);
        }
        let Some(mask) = header.mask else {
            // Every client frame is masked.
            return self.fail(CloseCode::Protocol, on);
        };
        let payload = match header.opcode {
            OpCode::Control(control @ (Control::Close | Control::Ping | Control::Pong)) => {
                if !header.is_final || len > MAX_CONTROL {
                    return self.fail(CloseCode::Protocol, on);
                }
                Payload::Control(control)
            }
            OpCode::Control(Control::Reserved(_)) | OpCode::Data(Data::Reserved(_)) => {
                return self.fail(CloseCode::Protocol, on);
            }
            OpCode::Data(_) if self.skip_data => Payload::Skip,
            OpCode::Data(data) => {
                let opens = match data {
                    Data::Text => Some(Kind::Text),
                    Data::Binary => Some(Kind::Binary),
                    _ => None,
                };
                match (opens, self.message_kind) {
                    // A new message while another is unfinished, or a
                    // continuation of nothing.
                    (Some(_), Some(_)) | (None, None) => {
                        return self.fail(CloseCode::Protocol, on);
                    }
                    (Some(kind), None) => self.message_kind = Some(kind),
                    (None, Some(_)) => {}
                }
                let total = (self.message.len() as u64).saturating_add(len);
                if total > self.max_message as u64 {
                    self.discard_data();
                    on(Event::TooLarge);
                    Payload::Skip
                } else {
                    Payload::Data {
                        fin: header.is_final,
                    }
                }
            }
        };
        self.frame = Some(Frame {
            payload,
            mask,
            remaining: len,
            offset: 0,
        });
    }

    fn read_payload(&mut self, mut frame: Frame, chunk: &mut [u8], on: &mut impl FnMut(Event<'_>)) {
        let done = frame.remaining == chunk.len() as u64;
        if !matches!(frame.payload, Payload::Skip) {
            unmask(chunk, frame.mask, frame.offset);
        }
        frame.remaining -= chunk.len() as u64;
        frame.offset += chunk.len() as u64;
        self.frame = (!done).then_some(frame);
        match frame.payload {
            Payload::Skip => {}
            Payload::Data { fin } => {
                let last = done && fin;
                if last && self.message.is_empty() {
                    // The whole message is here: hand it out in place.
                    let kind = self.message_kind.take();
                    self.deliver(kind, chunk, on);
                } else {
                    self.message.extend_from_slice(chunk);
                    if last {
                        let message = mem::take(&mut self.message);
                        let kind = self.message_kind.take();
                        self.deliver(kind, &message, on);
                    }
                }
            }
            Payload::Control(control) => {
                if done && self.control.is_empty() {
                    self.control_event(control, chunk, on);
                } else {
                    self.control.extend_from_slice(chunk);
                    if done {
                        let data = mem::take(&mut self.control);
                        self.control_event(control, &data, on);
                    }
                }
            }
        }
    }

    fn deliver(&mut self, kind: Option<Kind>, data: &[u8], on: &mut impl FnMut(Event<'_>)) {
        let kind = kind.unwrap_or(Kind::Binary);
        if kind == Kind::Text && std::str::from_utf8(data).is_err() {
            return self.fail(CloseCode::Invalid, on);
        }
        on(Event::Message { kind, data });
    }

    fn control_event(&mut self, control: Control, data: &[u8], on: &mut impl FnMut(Event<'_>)) {
        match control {
            Control::Ping => on(Event::Ping(data)),
            Control::Pong => on(Event::Pong(data)),
            Control::Close => match data {
                [] => on(Event::Close(None)),
                [_] => self.fail(CloseCode::Protocol, on),
                [hi, lo, reason @ ..] => {
                    let code = CloseCode::from(u16::from_be_bytes([*hi, *lo]));
                    if !code.is_allowed() {
                        self.fail(CloseCode::Protocol, on);
                    } else if std::str::from_utf8(reason).is_err() {
                        self.fail(CloseCode::Invalid, on);
                    } else {
                        on(Event::Close(Some(code)));
                    }
                }
            },
            Control::Reserved(_) => self.fail(CloseCode::Protocol, on),
        }
    }

    fn fail(&mut self, code: CloseCode, on: &mut impl FnMut(Event<'_>)) {
        let max_message = self.max_message;
        *self = Self::new(max_message);
        self.failed = true;
        on(Event::Failed(code));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIN: u8 = 0x80;
    const TEXT: u8 = 0x1;
    const BINARY: u8 = 0x2;
    const CONTINUE: u8 = 0x0;
    const CLOSE: u8 = 0x8;
    const PING: u8 = 0x9;
    const PONG: u8 = 0xA;
    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// A client frame, written out by hand from RFC 6455 section 5.2.
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        framed(first, payload, Some(MASK))
    }

    fn framed(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let masked = if mask.is_some() { 0x80 } else { 0 };
        let mut out = vec![first];
        match payload.len() {
            n @ 0..=125 => out.push(masked | n as u8),
            n @ 126..=65535 => {
                out.push(masked | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(masked | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match mask {
            Some(mask) => {
                out.extend_from_slice(&mask);
                out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
            }
            None => out.extend_from_slice(payload),
        }
        out
    }

    /// An event, owned, for comparing.
    #[derive(Debug, PartialEq, Eq)]
    enum Ev {
        Text(Vec<u8>),
        Binary(Vec<u8>),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Option<u16>),
        TooLarge,
        Failed(u16),
    }

    fn own(event: Event<'_>) -> Ev {
        match event {
            Event::Message {
                kind: Kind::Text,
                data,
            } => Ev::Text(data.to_vec()),
            Event::Message {
                kind: Kind::Binary,
                data,
            } => Ev::Binary(data.to_vec()),
            Event::Ping(data) => Ev::Ping(data.to_vec()),
            Event::Pong(data) => Ev::Pong(data.to_vec()),
            Event::Close(code) => Ev::Close(code.map(u16::from)),
            Event::TooLarge => Ev::TooLarge,
            Event::Failed(code) => Ev::Failed(code.into()),
        }
    }

    /// Feeds `input` whole and in every chunk size up to 17 bytes, and
    /// checks each way gives `expected` and leaves nothing half-read.
    fn check(max: usize, input: &[u8], expected: &[Ev]) {
        for chunk in std::iter::once(input.len().max(1)).chain(1..=17) {
            let mut decoder = Decoder::new(max);
            let mut events = Vec::new();
            let mut copy = input.to_vec();
            for piece in copy.chunks_mut(chunk) {
                decoder.decode(piece, |e| events.push(own(e)));
            }
            assert_eq!(events, expected, "chunks of {chunk}");
            assert!(decoder.frame.is_none(), "chunks of {chunk}");
            assert_eq!(decoder.head_len, 0, "chunks of {chunk}");
            assert_eq!(decoder.message.capacity(), 0, "chunks of {chunk}");
            assert_eq!(decoder.control.capacity(), 0, "chunks of {chunk}");
        }
    }

    fn cat(frames: &[Vec<u8>]) -> Vec<u8> {
        frames.concat()
    }

    #[test]
    fn text_and_binary_messages() {
        check(
            64,
            &frame(FIN | TEXT, b"HELLO alice"),
            &[Ev::Text(b"HELLO alice".to_vec())],
        );
        check(
            64,
            &frame(FIN | BINARY, b"PUB t \xff\xfe"),
            &[Ev::Binary(b"PUB t \xff\xfe".to_vec())],
        );
        check(64, &frame(FIN | TEXT, b""), &[Ev::Text(Vec::new())]);
    }

    #[test]
    fn every_length_format() {
        for len in [125, 126, 65535, 65536, 70000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            check(
                100_000,
                &frame(FIN | BINARY, &payload),
                &[Ev::Binary(payload.clone())],
            );
        }
    }

    #[test]
    fn fragments_are_joined_with_control_frames_between() {
        let input = cat(&[
            frame(TEXT, b"PUB news "),
            frame(FIN | PING, b"are you there"),
            frame(CONTINUE, b""),
            frame(FIN | CONTINUE, b"hello"),
            frame(FIN | BINARY, b"PING"),
        ]);
        check(
            64,
            &input,
            &[
                Ev::Ping(b"are you there".to_vec()),
                Ev::Text(b"PUB news hello".to_vec()),
                Ev::Binary(b"PING".to_vec()),
            ],
        );
    }

    #[test]
    fn the_limit_counts_the_whole_message() {
        check(
            10,
            &frame(FIN | BINARY, &[b'x'; 10]),
            &[Ev::Binary(vec![b'x'; 10])],
        );
        check(10, &frame(FIN | BINARY, &[b'x'; 11]), &[Ev::TooLarge]);
        // The second fragment's header is where the limit is known passed;
        // data after it is skipped, control frames still come.
        let input = cat(&[
            frame(BINARY, &[b'x'; 6]),
            frame(FIN | CONTINUE, &[b'x'; 5]),
            frame(FIN | PING, b"p"),
            frame(FIN | TEXT, b"QUIT"),
            frame(FIN | CLOSE, &1000u16.to_be_bytes()),
        ]);
        check(
            10,
            &input,
            &[Ev::TooLarge, Ev::Ping(b"p".to_vec()), Ev::Close(Some(1000))],
        );
    }

    #[test]
    fn a_huge_announced_length_is_refused_at_once() {
        let mut input = vec![FIN | BINARY, 0x80 | 127];
        input.extend_from_slice(&u64::MAX.to_be_bytes());
        input.extend_from_slice(&MASK);
        let mut decoder = Decoder::new(1 << 20);
        let mut events = Vec::new();
        decoder.decode(&mut input, |e| events.push(own(e)));
        assert_eq!(events, [Ev::TooLarge]);
    }

    #[test]
    fn pings_pongs_and_closes() {
        check(64, &frame(FIN | PING, b""), &[Ev::Ping(Vec::new())]);
        check(64, &frame(FIN | PONG, b"x"), &[Ev::Pong(b"x".to_vec())]);
        check(64, &frame(FIN | CLOSE, b""), &[Ev::Close(None)]);
        let mut payload = 1001u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"going away");
        check(64, &frame(FIN | CLOSE, &payload), &[Ev::Close(Some(1001))]);
        check(
            64,
            &frame(FIN | CLOSE, &4000u16.to_be_bytes()),
            &[Ev::Close(Some(4000))],
        );
        // A control frame may carry up to 125 bytes, more than the limit.
        check(
            8,
            &frame(FIN | PING, &[b'p'; 125]),
            &[Ev::Ping(vec![b'p'; 125])],
        );
    }

    #[test]
    fn protocol_errors_fail_the_connection() {
        let protocol = |input: Vec<u8>| {
            let input = cat(&[input, frame(FIN | TEXT, b"PING")]);
            check(64, &input, &[Ev::Failed(1002)]);
        };
        protocol(framed(FIN | TEXT, b"unmasked", None));
        protocol(frame(FIN | 0x40 | TEXT, b"rsv1"));
        protocol(frame(FIN | 0x3, b"reserved opcode"));
        protocol(frame(FIN | 0xB, b"reserved control"));
        protocol(frame(PING, b"fragmented ping"));
        protocol(frame(FIN | PING, &[0; 126]));
        protocol(frame(FIN | CONTINUE, b"continues nothing"));
        protocol(cat(&[frame(TEXT, b"a"), frame(FIN | TEXT, b"b")]));
        protocol(frame(FIN | CLOSE, b"x"));
        protocol(frame(FIN | CLOSE, &1005u16.to_be_bytes()));
        protocol(frame(FIN | CLOSE, &999u16.to_be_bytes()));
        check(64, &frame(FIN | TEXT, b"\xff"), &[Ev::Failed(1007)]);
        check(
            64,
            &cat(&[frame(TEXT, b"\xe2\x82"), frame(FIN | CONTINUE, b"\xac")]),
            &[Ev::Text("€".into())],
        );
        check(
            64,
            &cat(&[frame(TEXT, b"\xe2\x82"), frame(FIN | CONTINUE, b"x")]),
            &[Ev::Failed(1007)],
        );
        let mut bad_reason = 1000u16.to_be_bytes().to_vec();
        bad_reason.push(0xff);
        check(64, &frame(FIN | CLOSE, &bad_reason), &[Ev::Failed(1007)]);
    }

    #[test]
    fn discarded_data_is_skipped_but_control_frames_come() {
        let mut decoder = Decoder::new(64);
        let mut events = Vec::new();
        let mut first = frame(BINARY, b"half a mess");
        decoder.decode(&mut first, |e| events.push(own(e)));
        decoder.discard_data();
        let mut rest = cat(&[
            frame(FIN | CONTINUE, b"age"),
            frame(FIN | TEXT, b"QUIT"),
            frame(FIN | PONG, b""),
            frame(FIN | CLOSE, &1000u16.to_be_bytes()),
        ]);
        decoder.decode(&mut rest, |e| events.push(own(e)));
        assert_eq!(events, [Ev::Pong(Vec::new()), Ev::Close(Some(1000))]);
    }

    #[test]
    fn reset_forgets_a_half_read_frame() {
        let mut decoder = Decoder::new(64);
        let mut input = frame(FIN | TEXT, b"HELLO alice");
        decoder.decode(&mut input[..7], |_| {});
        assert!(!decoder.is_pristine());
        decoder.reset();
        assert!(decoder.is_pristine());
        let mut events = Vec::new();
        let mut next = frame(FIN | TEXT, b"PING");
        decoder.decode(&mut next, |e| events.push(own(e)));
        assert_eq!(events, [Ev::Text(b"PING".to_vec())]);
    }
}
