//! Server frames (RFC 6455 section 5.2): unmasked, never fragmented.
//!
//! A message is written as its [`Header`] followed by its payload, two
//! pieces of one vectored write, so a payload shared by many connections is
//! never copied. Control frames are small and built whole.

use bytes::Bytes;
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};

use crate::decode::Kind;

/// The longest header of an unmasked frame: 2 bytes and an 8-byte length.
pub const MAX_HEADER: usize = 10;

/// The header of one server frame; its payload follows it on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    bytes: [u8; MAX_HEADER],
    len: u8,
}

impl Header {
    /// The header's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl AsRef<[u8]> for Header {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// How the server sends `payload`: as text when it is valid UTF-8, else as
/// binary.
pub fn kind_of(payload: &[u8]) -> Kind {
    if std::str::from_utf8(payload).is_ok() {
        Kind::Text
    } else {
        Kind::Binary
    }
}

/// The header of a whole message of `len` bytes.
pub fn message_header(kind: Kind, len: usize) -> Header {
    let data = match kind {
        Kind::Text => Data::Text,
        Kind::Binary => Data::Binary,
    };
    header(OpCode::Data(data), len)
}

/// The wire length of the whole server frame at the start of `wire`, read
/// from its header; `None` when `wire` does not start with a complete
/// header.
pub fn frame_len(wire: &[u8]) -> Option<usize> {
    let mut cursor = std::io::Cursor::new(wire);
    let (_, payload) = FrameHeader::parse(&mut cursor).ok()??;
    usize::try_from(payload)
        .ok()?
        .checked_add(cursor.position() as usize)
}

/// The length of the header of a message of `len` bytes.
pub fn header_len(len: usize) -> usize {
    FrameHeader::default().len(len as u64)
}

fn header(opcode: OpCode, len: usize) -> Header {
    let frame = FrameHeader {
        is_final: true,
        opcode,
        mask: None,
        ..FrameHeader::default()
    };
    let mut bytes = [0; MAX_HEADER];
    let mut out = &mut bytes[..];
    frame
        .format(len as u64, &mut out)
        .expect("an unmasked header fits in MAX_HEADER bytes");
    let len = (MAX_HEADER - out.len()) as u8;
    Header { bytes, len }
}

fn control(control: Control, payload: &[u8]) -> Bytes {
    // A control payload is at most 125 bytes; the decoder never hands out
    // a longer ping.
    let payload = &payload[..payload.len().min(125)];
    let header = header(OpCode::Control(control), payload.len());
    [header.as_bytes(), payload].concat().into()
}

/// A ping carrying `payload` (at most 125 bytes are kept).
pub fn ping(payload: &[u8]) -> Bytes {
    control(Control::Ping, payload)
}

/// The pong answering a ping that carried `payload`.
pub fn pong(payload: &[u8]) -> Bytes {
    control(Control::Pong, payload)
}

/// A Close frame with a status code and no reason text.
pub fn close(code: CloseCode) -> Bytes {
    control(Control::Close, &u16::from(code).to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_headers_in_every_length_format() {
        let check = |kind, len, expected: &[u8]| {
            assert_eq!(message_header(kind, len).as_bytes(), expected, "{len}");
        };
        check(Kind::Text, 0, &[0x81, 0]);
        check(Kind::Text, 125, &[0x81, 125]);
        check(Kind::Binary, 126, &[0x82, 126, 0, 126]);
        check(Kind::Binary, 65535, &[0x82, 126, 0xff, 0xff]);
        check(Kind::Text, 65536, &[0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        for len in [0, 125, 126, 65535, 65536] {
            assert_eq!(
                header_len(len),
                message_header(Kind::Binary, len).as_bytes().len()
            );
        }
    }

    #[test]
    fn a_frame_length_is_read_back_from_its_header() {
        for len in [0, 125, 126, 65535, 65536] {
            let header = message_header(Kind::Text, len);
            let mut wire = header.as_bytes().to_vec();
            assert_eq!(frame_len(&wire), Some(header.as_bytes().len() + len));
            wire.pop();
            assert_eq!(frame_len(&wire), None, "{len}: a header cut short");
        }
        assert_eq!(frame_len(&[]), None);
    }

    #[test]
    fn text_only_when_utf8() {
        assert_eq!(kind_of(b"MSG news hello"), Kind::Text);
        assert_eq!(kind_of("MSG news héllo".as_bytes()), Kind::Text);
        assert_eq!(kind_of(b"MSG news \xff"), Kind::Binary);
        assert_eq!(kind_of(b"MSG news \xe2\x82"), Kind::Binary);
    }

    #[test]
    fn control_frames() {
        assert_eq!(&ping(b"")[..], &[0x89, 0]);
        assert_eq!(&pong(b"hi")[..], &[0x8A, 2, b'h', b'i']);
        assert_eq!(&close(CloseCode::Size)[..], &[0x88, 2, 0x03, 0xF1]);
        assert_eq!(&close(CloseCode::Library(4000))[..], &[0x88, 2, 0x0F, 0xA0]);
        assert_eq!(pong(&[0; 200]).len(), 2 + 125);
    }
}
