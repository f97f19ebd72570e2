//! Client-side framing of the gateway protocol (contract section 2), written
//! independently of the gateway's own codec.
//!
//! `lines`: a frame is the bytes up to `\n`, a `\r` just before it dropped.
//! `length`: a 4-byte big-endian length, then that many bytes.

use std::io;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Frame format, both directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Framing {
    /// Frames end with `\n`.
    Lines,
    /// Frames start with a 4-byte big-endian length.
    Length,
}

impl Framing {
    /// The name used on command lines and in results.
    pub fn as_str(self) -> &'static str {
        match self {
            Framing::Lines => "lines",
            Framing::Length => "length",
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
        }
    }
}

/// A frame that broke the limit given to [`FrameReader::new`].
#[derive(Debug)]
pub struct FrameTooLarge;

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
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps `inner`; frames longer than `max_frame` are refused.
    pub fn new(inner: R, framing: Framing, max_frame: usize) -> Self {
        Self {
            inner,
            buf: BytesMut::with_capacity(16 * 1024),
            framing,
            max_frame,
            scanned: 0,
        }
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
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(16 * 1024);
        }
        self.inner.read_buf(&mut self.buf).await
    }

    /// Takes one complete frame out of the buffer, without reading.
    pub fn try_frame(&mut self) -> Result<Option<Bytes>, FrameTooLarge> {
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
                            return Err(FrameTooLarge);
                        }
                        Ok(Some(line.freeze()))
                    }
                    None => {
                        self.scanned = self.buf.len();
                        // A trailing `\r` may still be dropped, so allow one byte more.
                        if self.buf.len() > self.max_frame + 1 {
                            return Err(FrameTooLarge);
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
                    return Err(FrameTooLarge);
                }
                if self.buf.len() < 4 + len {
                    self.buf.reserve(4 + len - self.buf.len());
                    return Ok(None);
                }
                self.buf.advance(4);
                Ok(Some(self.buf.split_to(len).freeze()))
            }
        }
    }

    /// The next frame, reading as needed; `None` at a clean EOF.
    pub async fn next_frame(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            if let Some(f) = self.try_frame().map_err(too_large)? {
                return Ok(Some(f));
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

/// Turns [`FrameTooLarge`] into an I/O error.
pub fn too_large(_: FrameTooLarge) -> io::Error {
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
    async fn refuses_large_frames() {
        let mut r = FrameReader::new(&b"0123456789abcdefXYZ\n"[..], Framing::Lines, 16);
        assert!(r.next_frame().await.is_err());
        let mut out = BytesMut::new();
        Framing::Length.encode(&[0u8; 17], &mut out);
        let mut r = FrameReader::new(&out[..], Framing::Length, 16);
        assert!(r.next_frame().await.is_err());
    }
}
