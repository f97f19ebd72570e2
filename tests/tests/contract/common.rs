//! Small helpers shared by the contract tests: starting a gateway under a
//! given framing, building `MSG` frames and numbered payloads.

use gateway_tests::{Framing, Gateway};

/// Starts a gateway with `--framing` set and the given extra flags.
pub fn start(framing: Framing, flags: &[&str]) -> Gateway {
    let mut all = vec!["--framing", framing.flag()];
    all.extend_from_slice(flags);
    Gateway::start(&all)
}

/// The frame `MSG <topic> <payload>`.
pub fn msg(topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut frame = format!("MSG {topic} ").into_bytes();
    frame.extend_from_slice(payload);
    frame
}

/// The frame `PUB <topic> <payload>`.
pub fn publish(topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut frame = format!("PUB {topic} ").into_bytes();
    frame.extend_from_slice(payload);
    frame
}

/// A payload of exactly `size` bytes starting with a zero-padded sequence
/// number, so that its place in a stream can be checked.
pub fn numbered(seq: usize, size: usize) -> Vec<u8> {
    let mut payload = format!("{seq:010}:").into_bytes();
    let mut fill = b'a';
    while payload.len() < size {
        payload.push(fill);
        fill = if fill == b'z' { b'a' } else { fill + 1 };
    }
    payload.truncate(size.max(11));
    payload
}

/// The sequence number at the start of a [`numbered`] payload.
pub fn seq_of(payload: &[u8]) -> Option<usize> {
    std::str::from_utf8(payload.get(..10)?).ok()?.parse().ok()
}
