//! The WebSocket opening handshake on an accepted connection (contract
//! section 12), before it becomes a client connection.
//!
//! [`upgrade`] reads the HTTP request, lets
//! [`Policy`] decide, and writes the answer.
//! A refusal (404 another path, 403 an origin not allowed, 426 a plain
//! HTTP request, ...) is followed by the end of the write side and a
//! lingering read, so the answer is not lost to a reset. The whole
//! handshake, refusal included, is bounded by `--close-timeout`; a refused
//! or unfinished request never counts as a connection.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use ws_protocol::handshake::{Outcome, Policy};

/// Bytes read from the socket at a time during the handshake.
const CHUNK: usize = 2048;

/// Why a connection did not become a WebSocket.
#[derive(Debug, thiserror::Error)]
pub enum NotUpgraded {
    /// The request was answered with this HTTP status.
    #[error("refused with HTTP {0}")]
    Refused(u16),
    /// The request did not arrive whole in time.
    #[error("no whole request within the timeout")]
    TimedOut,
    /// The client went away or the socket failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Answers the upgrade request on `stream` within `timeout`. On success
/// returns the bytes that followed the request (frames of a client that
/// did not wait for the answer).
pub async fn upgrade<S>(
    stream: &mut S,
    policy: &Policy,
    timeout: Duration,
) -> Result<Vec<u8>, NotUpgraded>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let handshake = async {
        let mut request = Vec::new();
        let mut chunk = [0u8; CHUNK];
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(NotUpgraded::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            request.extend_from_slice(&chunk[..n]);
            match policy.respond(&request) {
                Outcome::Partial => {}
                Outcome::Upgrade { consumed, response } => {
                    stream.write_all(&response).await?;
                    // A new, exact allocation (none when nothing followed):
                    // the request's buffer is not kept for the connection.
                    return Ok(request.split_off(consumed));
                }
                Outcome::Refuse { status, response } => {
                    stream.write_all(&response).await?;
                    stream.shutdown().await?;
                    while stream.read(&mut chunk).await? > 0 {}
                    return Err(NotUpgraded::Refused(status));
                }
            }
        }
    };
    actix_rt::time::timeout(timeout, handshake)
        .await
        .unwrap_or(Err(NotUpgraded::TimedOut))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ws_protocol::handshake::Origins;

    const REQUEST: &[u8] = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

    fn policy() -> Policy {
        Policy::new("/ws", Origins::Any).expect("policy")
    }

    async fn answer(client: &mut tokio::io::DuplexStream) -> String {
        let mut out = Vec::new();
        let _ = client.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    #[actix_rt::test]
    async fn upgrades_and_keeps_what_followed_the_request() {
        let (mut client, mut server) = tokio::io::duplex(4096);
        let mut wire = REQUEST.to_vec();
        wire.extend_from_slice(b"\x81\x80early");
        client.write_all(&wire).await.expect("write");
        let early = upgrade(&mut server, &policy(), Duration::from_secs(5))
            .await
            .expect("upgraded");
        assert_eq!(early, b"\x81\x80early");
        drop(server);
        assert!(answer(&mut client).await.starts_with("HTTP/1.1 101 "));
    }

    #[actix_rt::test]
    async fn a_request_split_in_pieces_is_read_whole() {
        let (mut client, mut server) = tokio::io::duplex(4096);
        let writer = async {
            for piece in REQUEST.chunks(7) {
                client.write_all(piece).await.expect("write");
                tokio::task::yield_now().await;
            }
            client
        };
        let policy = policy();
        let (mut client, upgraded) = tokio::join!(
            writer,
            upgrade(&mut server, &policy, Duration::from_secs(5))
        );
        let early = upgraded.expect("upgraded");
        assert_eq!(early, b"");
        // Nothing of the request's buffer stays with the connection.
        assert_eq!(early.capacity(), 0);
        drop(server);
        assert!(answer(&mut client).await.starts_with("HTTP/1.1 101 "));
    }

    #[actix_rt::test]
    async fn a_refusal_is_answered_then_the_write_side_ends() {
        let (mut client, mut server) = tokio::io::duplex(4096);
        client
            .write_all(b"GET /elsewhere HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let policy = policy();
        let (refused, text) = tokio::join!(
            upgrade(&mut server, &policy, Duration::from_secs(5)),
            async {
                let text = answer(&mut client).await;
                drop(client);
                text
            }
        );
        assert!(
            matches!(refused, Err(NotUpgraded::Refused(404))),
            "{refused:?}"
        );
        assert!(text.starts_with("HTTP/1.1 404 "), "{text}");
    }

    #[actix_rt::test]
    async fn a_request_that_never_ends_times_out() {
        let (mut client, mut server) = tokio::io::duplex(4096);
        client
            .write_all(b"GET /ws HTTP/1.1\r\n")
            .await
            .expect("write");
        let result = upgrade(&mut server, &policy(), Duration::from_millis(50)).await;
        assert!(matches!(result, Err(NotUpgraded::TimedOut)), "{result:?}");
    }
}
