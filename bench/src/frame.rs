//! Client-side framing of the gateway protocol (contract section 2), written
//! independently of the gateway's own codec.
//!
//! `lines`: a frame is the bytes up to `\n`, a `\r` just before it dropped.
//! `length`: a 4-byte big-endian length, then that many bytes.
//! `websocket` (contract section 12, `--transport ws`): one WebSocket
//! message per frame, masked going out (RFC 6455 section 5.3); the
//! server's pings and pongs are skipped and its Close ends the stream.
//! tungstenite writes and parses the frame headers; its `WebSocket` is not
//! used, as it owns the stream and writes one message per call, where the
//! load generator batches many frames into one write from its own buffer.

use std::io::{self, Cursor};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

/// Frame format, both directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Framing {
    /// Frames end with `\n`.
    Lines,
    /// Frames start with a 4-byte big-endian length.
    Length,
    /// One WebSocket message per frame (chosen by `--transport ws`).
    #[value(skip)]
    #[serde(rename = "websocket")]
    WebSocket,
}

/// The mask of every client frame: fixed, as the load generator is not a
/// browser to be protected from cache poisoning, but not zero, so the
/// server really unmasks.
const MASK: [u8; 4] = [0x1d, 0x5c, 0xa7, 0x3e];

impl Framing {
    /// The name used on command lines and in results.
    pub fn as_str(self) -> &'static str {
        match self {
            Framing::Lines => "lines",
            Framing::Length => "length",
            Framing::WebSocket => "websocket",
        }
    }

    /// Appends one frame holding `parts` concatenated.
    pub fn encode_parts(self, parts: &[&[u8]], out: &mut BytesMut) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        match self {
            Framing::Lines => {
                out.reserve(len + 1);
                for p in parts {
                    out.put_slice(p);
                }
                out.put_u8(b'\n');
            }
            Framing::Length => {
                out.reserve(len + 4);
                out.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
                for p in parts {
                    out.put_slice(p);
                }
            }
            Framing::WebSocket => {
                // A whole binary message, masked.
                let header = client_header();
                out.reserve(header.len(len as u64) + len);
                // Writing into a BytesMut cannot fail.
                let _ = header.format(len as u64, &mut (&mut *out).writer());
                // Masked as it is copied in: tungstenite masks only a frame
                // it owns whole, which would cost a copy of the parts first.
                let mut i = 0;
                for p in parts {
                    for &b in *p {
                        out.put_u8(b ^ MASK[i % 4]);
                        i += 1;
                    }
                }
            }
        }
    }

    /// Appends one frame.
    pub fn encode(self, frame: &[u8], out: &mut BytesMut) {
        self.encode_parts(&[frame], out);
    }

    /// Bytes a frame of `len` bytes takes on the wire.
    pub fn wire_len(self, len: usize) -> usize {
        match self {
            Framing::Lines => len + 1,
            Framing::Length => len + 4,
            Framing::WebSocket => client_header().len(len as u64) + len,
        }
    }
}

/// The header of each client frame: a whole binary message, masked.
fn client_header() -> FrameHeader {
    FrameHeader {
        opcode: OpCode::Data(Data::Binary),
        mask: Some(MASK),
        ..FrameHeader::default()
    }
}

/// Reads frames from a byte stream, buffering at most about `max_frame` bytes
/// of one frame.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    framing: Framing,
    max_frame: usize,
    /// How far `buf` was already searched for `\n`.
    scanned: usize,
    /// The server's WebSocket Close was read: the stream is over.
    closed: bool,
    /// Most bytes one read may take (`--read-buffer`); `None` reads into
    /// whatever room the buffer has, at least 4 KiB.
    chunk: Option<usize>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps `inner`; frames longer than `max_frame` are refused.
    pub fn new(inner: R, framing: Framing, max_frame: usize) -> Self {
        Self::with_buffered(inner, framing, max_frame, &[])
    }

    /// Like [`FrameReader::new`], with bytes already read from `inner`.
    pub fn with_buffered(inner: R, framing: Framing, max_frame: usize, read: &[u8]) -> Self {
        let mut buf = BytesMut::with_capacity(16 * 1024);
        buf.extend_from_slice(read);
        Self {
            inner,
            buf,
            framing,
            max_frame,
            scanned: 0,
            closed: false,
            chunk: None,
        }
    }

    /// Limits each read to `chunk` bytes (at least 1), as a client with a
    /// read buffer of that size would read: a smaller buffer takes what the
    /// server sent in more reads.
    pub fn set_read_chunk(&mut self, chunk: usize) {
        self.chunk = Some(chunk.max(1));
    }

    /// The wrapped reader.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Bytes buffered and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Reads once from the stream into the buffer; 0 means EOF.
    pub async fn fill(&mut self) -> io::Result<usize> {
        match self.chunk {
            None => {
                if self.buf.capacity() - self.buf.len() < 4096 {
                    self.buf.reserve(16 * 1024);
                }
                self.inner.read_buf(&mut self.buf).await
            }
            Some(chunk) => {
                self.buf.reserve(chunk);
                self.inner.read_buf(&mut (&mut self.buf).limit(chunk)).await
            }
        }
    }

    /// Takes one complete frame out of the buffer, without reading; `Err`
    /// for a frame over the limit or a WebSocket header that breaks RFC 6455.
    pub fn try_frame(&mut self) -> io::Result<Option<Bytes>> {
        match self.framing {
            Framing::Lines => {
                let start = self.scanned;
                match memchr(b'\n', &self.buf[start..]) {
                    Some(i) => {
                        let end = start + i;
                        self.scanned = 0;
                        let mut line = self.buf.split_to(end + 1);
                        line.truncate(end);
                        if line.last() == Some(&b'\r') {
                            line.truncate(end - 1);
                        }
                        if line.len() > self.max_frame {
                            return Err(too_large());
                        }
                        Ok(Some(line.freeze()))
                    }
                    None => {
                        self.scanned = self.buf.len();
                        // A trailing `\r` may still be dropped, so allow one byte more.
                        if self.buf.len() > self.max_frame + 1 {
                            return Err(too_large());
                        }
                        Ok(None)
                    }
                }
            }
            Framing::Length => {
                if self.buf.len() < 4 {
                    return Ok(None);
                }
                let mut head = [0u8; 4];
                head.copy_from_slice(&self.buf[..4]);
                let len = u32::from_be_bytes(head) as usize;
                if len > self.max_frame {
                    return Err(too_large());
                }
                if self.buf.len() < 4 + len {
                    self.buf.reserve(4 + len - self.buf.len());
                    return Ok(None);
                }
                self.buf.advance(4);
                Ok(Some(self.buf.split_to(len).freeze()))
            }
            Framing::WebSocket => loop {
                let mut cursor = Cursor::new(&self.buf[..]);
                let parsed = FrameHeader::parse(&mut cursor)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                let Some((header, len)) = parsed else {
                    return Ok(None);
                };
                let head = cursor.position() as usize;
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                if len > self.max_frame {
                    return Err(too_large());
                }
                if self.buf.len() < head + len {
                    self.buf.reserve(head + len - self.buf.len());
                    return Ok(None);
                }
                self.buf.advance(head);
                let payload = self.buf.split_to(len).freeze();
                match header.opcode {
                    // The server's Close: nothing follows.
                    OpCode::Control(Control::Close) => {
                        self.closed = true;
                        self.buf.clear();
                        return Ok(None);
                    }
                    // Pings and pongs: not frames of the protocol.
                    OpCode::Control(_) => continue,
                    OpCode::Data(_) => return Ok(Some(payload)),
                }
            },
        }
    }

    /// The next frame, reading as needed; `None` at a clean EOF.
    pub async fn next_frame(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            if let Some(f) = self.try_frame()? {
                return Ok(Some(f));
            }
            if self.closed {
                return Ok(None);
            }
            if self.fill().await? == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "EOF inside a frame",
                ));
            }
        }
    }
}

/// The error of a frame over the limit given to [`FrameReader::new`].
fn too_large() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "frame too large")
}

/// Position of `needle` in `hay`.
pub fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn frames(framing: Framing, wire: &[u8]) -> Vec<Vec<u8>> {
        let mut r = FrameReader::new(wire, framing, 16);
        let mut out = Vec::new();
        while let Ok(Some(f)) = r.next_frame().await {
            out.push(f.to_vec());
        }
        out
    }

    #[tokio::test]
    async fn a_read_chunk_limits_each_read() {
        let wire: &[u8] = b"PING a\nPING b\n";
        let mut r = FrameReader::new(wire, Framing::Lines, 16);
        r.set_read_chunk(3);
        assert_eq!(r.fill().await.ok(), Some(3));
        assert_eq!(r.buffered(), 3);
        let mut got = Vec::new();
        while let Ok(Some(f)) = r.next_frame().await {
            got.push(f.to_vec());
        }
        assert_eq!(got, vec![b"PING a".to_vec(), b"PING b".to_vec()]);
    }

    #[tokio::test]
    async fn lines_drop_cr() {
        let got = frames(Framing::Lines, b"PING\r\nPONG a b\n\n").await;
        assert_eq!(got, vec![b"PING".to_vec(), b"PONG a b".to_vec(), vec![]]);
    }

    #[tokio::test]
    async fn length_prefixed_roundtrip() {
        let mut out = BytesMut::new();
        Framing::Length.encode(b"HELLO x", &mut out);
        Framing::Length.encode(b"", &mut out);
        let got = frames(Framing::Length, &out).await;
        assert_eq!(got, vec![b"HELLO x".to_vec(), vec![]]);
    }

    #[tokio::test]
    async fn websocket_frames_skip_pings_and_end_at_close() {
        let wire = [
            &[0x81, 4][..],
            b"PONG",
            &[0x89, 0],
            &[0x82, 126, 0, 3],
            b"a\xffb",
            &[0x88, 2, 0x03, 0xe8],
            &[0x81, 1, b'x'],
        ]
        .concat();
        let got = frames(Framing::WebSocket, &wire).await;
        assert_eq!(got, vec![b"PONG".to_vec(), b"a\xffb".to_vec()]);
        let mut out = BytesMut::new();
        Framing::WebSocket.encode(b"PING", &mut out);
        assert_eq!(out.len(), Framing::WebSocket.wire_len(4));
        let unmasked: Vec<u8> = out[6..]
            .iter()
            .zip(MASK.iter().cycle())
            .map(|(b, m)| b ^ m)
            .collect();
        assert_eq!(
            (&out[..2], unmasked.as_slice()),
            (&[0x82, 0x84][..], &b"PING"[..])
        );
    }

    #[tokio::test]
    async fn refuses_large_frames() {
        let mut r = FrameReader::new(&b"0123456789abcdefXYZ\n"[..], Framing::Lines, 16);
        assert!(r.next_frame().await.is_err());
        let mut out = BytesMut::new();
        Framing::Length.encode(&[0u8; 17], &mut out);
        let mut r = FrameReader::new(&out[..], Framing::Length, 16);
        assert!(r.next_frame().await.is_err());
    }
}
