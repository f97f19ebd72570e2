//! Every message a connection actor takes. Its mailbox is the only way in,
//! so these are all the ways another thread can affect a connection; they
//! are handled in the order they entered the mailbox.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use actix::Message;
use bytes::Bytes;

use crate::codec::FrameCodec;
use crate::state::Counters;

/// What started a close; the `reason` label of
/// `gateway_connections_closed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client's EOF or reset came first.
    Client,
    /// The client sent `QUIT`.
    Quit,
    /// Another connection said `HELLO` with the same user.
    Replaced,
    /// The admin API asked.
    Admin,
    /// No frame for `--idle-timeout`.
    Idle,
    /// Queued output passed `--max-pending-bytes`.
    Slow,
    /// The gateway is draining.
    Shutdown,
    /// A frame over `--max-frame-bytes`.
    FrameTooLarge,
    /// The socket failed.
    Error,
}

impl CloseReason {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Quit => "quit",
            Self::Replaced => "replaced",
            Self::Admin => "admin",
            Self::Idle => "idle",
            Self::Slow => "slow",
            Self::Shutdown => "shutdown",
            Self::FrameTooLarge => "frame_too_large",
            Self::Error => "error",
        }
    }

    /// The reasons a `KICK` names, by their wire word.
    pub fn from_kick_word(word: &str) -> Option<Self> {
        [
            Self::Replaced,
            Self::Admin,
            Self::Idle,
            Self::Slow,
            Self::Shutdown,
        ]
        .into_iter()
        .find(|r| r.label() == word)
    }

    /// Whether the last frame is a `KICK <reason>`.
    fn is_kick(self) -> bool {
        Self::from_kick_word(self.label()).is_some()
    }

    /// The last frame, encoded once: `KICK <reason> [message]`, `BYE` or
    /// `ERR frame-too-large`; none when the client went away.
    pub fn last_frame(self, codec: &FrameCodec, message: Option<&[u8]>) -> Option<Bytes> {
        let head: &[&[u8]] = match self {
            Self::Quit => &[b"BYE"],
            Self::FrameTooLarge => &[b"ERR frame-too-large"],
            Self::Client | Self::Error => return None,
            kick => {
                debug_assert!(kick.is_kick());
                &[b"KICK ", kick.label().as_bytes()]
            }
        };
        Some(match message.filter(|_| self.is_kick()) {
            Some(message) => codec.encode(&[head[0], head[1], b" ", message]),
            None => codec.encode(head),
        })
    }
}

/// Write an already framed message (`MSG` or `PUSH`) to the client.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver(pub Bytes);

/// Close gracefully: everything queued before this is written first, the
/// `KICK` is the last frame, and what comes after is dropped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close {
    /// What asked for the close.
    pub reason: CloseReason,
    /// The text after `KICK <reason>`, for closes the admin API asks for.
    pub message: Option<Bytes>,
}

/// Ask for a snapshot of the connection (contract section 7, CONN).
#[derive(Message)]
#[rtype(result = "ConnInfo")]
pub struct Inspect;

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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Framing;

    #[test]
    fn last_frames() {
        let lines = FrameCodec::new(Framing::Lines, 64);
        let check = |reason: CloseReason, message: Option<&[u8]>, expected: Option<&[u8]>| {
            let expected = expected.map(|frame| [frame, b"\n"].concat());
            assert_eq!(
                reason.last_frame(&lines, message).as_deref(),
                expected.as_deref(),
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
        check(CloseReason::Client, None, None);
        check(CloseReason::Error, None, None);
        let length = FrameCodec::new(Framing::Length, 64);
        assert_eq!(
            CloseReason::Quit.last_frame(&length, None).as_deref(),
            Some(&b"\x00\x00\x00\x03BYE"[..])
        );
    }

    #[test]
    fn kick_words() {
        assert_eq!(
            CloseReason::from_kick_word("admin"),
            Some(CloseReason::Admin)
        );
        assert_eq!(CloseReason::from_kick_word("quit"), None);
        assert_eq!(CloseReason::from_kick_word("frame_too_large"), None);
    }
}
