//! What a connection says of itself and of its close: the close reasons,
//! the last frame each close writes, and the snapshot the admin API shows.
//! What another thread can ask of a connection is `mailbox::Mail`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use crate::codec::body;
use crate::state::Counters;

/// What started a close. One definition, shared with the metrics: the
/// variant is the `reason` label of `gateway_connections_closed_total`,
/// and for a kick also the word after `KICK`.
pub use gateway_metrics::CloseReason;

/// The body of a close's last frame, built once: `KICK <reason> [message]`,
/// `BYE`, `ERR frame-too-large` or `ERR unauthorized`; none when the client
/// went away. Only a kick carries the message.
pub(crate) fn last_frame(reason: CloseReason, message: Option<&[u8]>) -> Option<Bytes> {
    use CloseReason::*;
    match reason {
        Quit => Some(Bytes::from_static(b"BYE")),
        FrameTooLarge => Some(Bytes::from_static(b"ERR frame-too-large")),
        Unauthorized => Some(Bytes::from_static(b"ERR unauthorized")),
        Client | Error => None,
        Replaced | Admin | Idle | Slow | Shutdown | Expired => {
            let word = reason.as_str().as_bytes();
            Some(match message {
                Some(message) => body(&[b"KICK ", word, b" ", message]),
                None => body(&[b"KICK ", word]),
            })
        }
    }
}

/// A connection as the admin API shows it.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The connection id.
    pub id: u64,
    /// The client's address.
    pub peer: SocketAddr,
    /// The user bound by `HELLO`.
    pub user: Option<Arc<str>>,
    /// Subscribed topics, in subscription order.
    pub topics: Vec<Arc<str>>,
    /// Whether a close was asked for.
    pub closing: bool,
    /// When it was accepted.
    pub connected_at: SystemTime,
    /// Traffic so far.
    pub counters: Counters,
    /// Output queued inside the gateway and not yet written.
    pub pending_bytes: usize,
    /// What carries it: `tcp` or `ws`.
    pub transport: gateway_metrics::Transport,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_frames() {
        let check = |reason: CloseReason, message: Option<&[u8]>, expected: Option<&[u8]>| {
            assert_eq!(
                last_frame(reason, message).as_deref(),
                expected,
                "{reason:?}"
            );
        };
        check(CloseReason::Quit, None, Some(b"BYE"));
        check(CloseReason::Replaced, None, Some(b"KICK replaced"));
        check(
            CloseReason::Admin,
            Some(b"go away now"),
            Some(b"KICK admin go away now"),
        );
        check(CloseReason::Admin, None, Some(b"KICK admin"));
        check(CloseReason::Shutdown, None, Some(b"KICK shutdown"));
        check(
            CloseReason::FrameTooLarge,
            None,
            Some(b"ERR frame-too-large"),
        );
        check(CloseReason::Idle, None, Some(b"KICK idle"));
        check(CloseReason::Slow, None, Some(b"KICK slow"));
        check(CloseReason::Expired, None, Some(b"KICK expired"));
        check(CloseReason::Unauthorized, None, Some(b"ERR unauthorized"));
        // Only a kick carries the message.
        check(CloseReason::Quit, Some(b"m"), Some(b"BYE"));
        check(
            CloseReason::FrameTooLarge,
            Some(b"m"),
            Some(b"ERR frame-too-large"),
        );
        check(CloseReason::Client, None, None);
        check(CloseReason::Error, None, None);
    }
}
