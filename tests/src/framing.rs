//! The two wire framings of contract section 2, from the client's side.
//!
//! Encoding adds the `\n` or the 4-byte big-endian length; decoding returns a
//! frame's bytes exactly as the server sent them (a `\r` before the `\n` is
//! kept, so tests see precisely what was written).

/// The frame format, both directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// A frame is the bytes up to `\n`.
    Lines,
    /// A frame is a 4-byte big-endian length, then that many bytes.
    Length,
}

impl Framing {
    /// Both framings, for tests that run once under each.
    pub const ALL: [Framing; 2] = [Framing::Lines, Framing::Length];

    /// The value of `--framing`.
    pub fn flag(self) -> &'static str {
        match self {
            Framing::Lines => "lines",
            Framing::Length => "length",
        }
    }

    /// The wire bytes of one frame.
    pub fn encode(self, frame: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(frame.len() + 4);
        self.encode_into(frame, &mut out);
        out
    }

    /// Appends the wire bytes of one frame to `out`.
    pub fn encode_into(self, frame: &[u8], out: &mut Vec<u8>) {
        match self {
            Framing::Lines => {
                out.extend_from_slice(frame);
                out.push(b'\n');
            }
            Framing::Length => {
                let len = u32::try_from(frame.len()).expect("frame fits a u32 length");
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(frame);
            }
        }
    }

    /// The wire bytes of many frames, as one pipelined write.
    pub fn encode_all<I, F>(self, frames: I) -> Vec<u8>
    where
        I: IntoIterator<Item = F>,
        F: AsRef<[u8]>,
    {
        let mut out = Vec::new();
        for frame in frames {
            self.encode_into(frame.as_ref(), &mut out);
        }
        out
    }

    /// Splits the first complete frame off `buf`: its length on the wire and
    /// its bytes, or `None` while it is incomplete.
    pub fn decode(self, buf: &[u8]) -> Option<(usize, Vec<u8>)> {
        match self {
            Framing::Lines => {
                let end = buf.iter().position(|&b| b == b'\n')?;
                Some((end + 1, buf[..end].to_vec()))
            }
            Framing::Length => {
                let prefix: [u8; 4] = buf.get(..4)?.try_into().ok()?;
                let len = usize::try_from(u32::from_be_bytes(prefix)).ok()?;
                let body = buf.get(4..4 + len)?;
                Some((4 + len, body.to_vec()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Framing;

    fn check(framing: Framing, frames: &[&[u8]]) {
        let wire = framing.encode_all(frames.iter());
        let mut rest: &[u8] = &wire;
        for &frame in frames {
            let (used, got) = framing.decode(rest).expect("a whole frame");
            assert_eq!(got, frame);
            rest = &rest[used..];
        }
        assert!(rest.is_empty());
        // A frame cut anywhere short is not yet a frame.
        for cut in 0..wire.len().min(12) {
            if let Some((used, _)) = framing.decode(&wire[..cut]) {
                assert!(used <= cut);
            }
        }
    }

    #[test]
    fn round_trips() {
        check(Framing::Lines, &[b"PING", b"", b"PUB t a\rb", b"\r"]);
        check(Framing::Length, &[b"PING", b"", b"a\nb\r\n", &[0, 255, 10]]);
    }

    #[test]
    fn incomplete_frames_wait() {
        assert_eq!(Framing::Lines.decode(b"PING"), None);
        assert_eq!(Framing::Length.decode(&[0, 0, 0]), None);
        assert_eq!(Framing::Length.decode(&[0, 0, 0, 2, b'a']), None);
        assert_eq!(Framing::Length.decode(&[0, 0, 0, 0]), Some((4, Vec::new())));
        assert_eq!(Framing::Lines.decode(b"a\r\nb"), Some((3, b"a\r".to_vec())));
    }
}
