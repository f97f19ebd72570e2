//! Small helpers shared by the contract tests: starting a gateway under a
//! given framing, over TCP or TLS, building `MSG` frames and numbered
//! payloads, and [`over_plain_and_tls!`], which runs one test body over each
//! transport.

use gateway_tests::tls::Pki;
use gateway_tests::{Framing, Gateway};

/// Runs one test body over a plain and a TLS listener, as ripgrep's
/// `rgtest!` runs one body in several set-ups, so that no transport can
/// skip a guarantee:
///
/// ```ignore
/// over_plain_and_tls! { tcp, tls;
///     /// What the test shows.
///     fn name(pki) { let gw = start_over(pki, Framing::Lines, &[]); ... }
/// }
/// ```
///
/// makes the tests `name::tcp`, where `pki` is `None`, and `name::tls`, where
/// it is `Some(&Pki)` with a CA of its own. The two case names say which
/// listener the body starts (`ws, wss` for the WebSocket listener).
macro_rules! over_plain_and_tls {
    ($plain:ident, $tls:ident; $(#[$doc:meta])* fn $name:ident($pki:ident) $body:block) => {
        $(#[$doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[test]
            fn $plain() {
                let $pki: Option<&gateway_tests::tls::Pki> = None;
                $body
            }

            #[test]
            fn $tls() {
                let pki = gateway_tests::tls::Pki::new(concat!(stringify!($name), " CA"));
                let $pki = Some(&pki);
                $body
            }
        }
    };
}

/// Starts a gateway with `--framing` set and the given extra flags.
pub fn start(framing: Framing, flags: &[&str]) -> Gateway {
    start_over(None, framing, flags)
}

/// Like [`start`], with the client listener speaking TLS with `pki`'s
/// certificate when one is given: then the gateway's `connect` speaks TLS.
pub fn start_over(pki: Option<&Pki>, framing: Framing, flags: &[&str]) -> Gateway {
    let tls = pki.map(Pki::client_flags).unwrap_or_default();
    let mut all = vec!["--framing", framing.flag()];
    all.extend(tls.iter().map(String::as_str));
    all.extend_from_slice(flags);
    let mut gw = Gateway::start(&all);
    if let Some(pki) = pki {
        gw.use_tls(pki.client());
    }
    gw
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
