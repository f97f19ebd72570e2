//! Black-box test harness for the `gateway` binary.
//!
//! Everything here talks to the gateway from outside: it starts the real
//! binary as a child process ([`Gateway`]), speaks the client protocol over
//! plain blocking TCP sockets ([`Client`]) and WebSocket ([`ws::WsClient`], on
//! `tungstenite`), drives a real browser ([`browser`]), and reads the admin listener over
//! HTTP/1.1 written here, to see every byte it sends ([`http`], [`Metrics`];
//! other servers through `ureq`). It deliberately links none of
//! the gateway's own crates, so the tests hold the binary to the contract and
//! not to its internals.

pub mod binary;
pub mod browser;
pub mod client;
pub mod framing;
pub mod gateway;
pub mod http;
pub mod metrics;
pub mod nats;
pub mod poll;
pub mod prometheus;
pub mod proxy;
pub mod scratch;
pub mod tls;
pub mod writer;
pub mod ws;

pub use client::{Client, End, Event};
pub use framing::Framing;
pub use gateway::{Exited, Gateway};
pub use metrics::Metrics;

use std::time::Duration;

/// How long a test waits for one expected frame before it fails.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(5);

/// Shows bytes as text where they are printable, escaped where not.
pub fn show(bytes: &[u8]) -> String {
    const LIMIT: usize = 200;
    let mut out = String::new();
    for &b in bytes.iter().take(LIMIT) {
        out.extend(std::ascii::escape_default(b).map(char::from));
    }
    if bytes.len() > LIMIT {
        out.push_str(&format!("... ({} bytes in all)", bytes.len()));
    }
    out
}
