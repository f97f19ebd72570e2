//! TLS over a client's TCP stream (rustls, through tokio-rustls): the
//! handshake, bounded in time, that turns an accepted socket into a TLS
//! stream (a `Transport` through `Transport::from`).
//!
//! Which certificate is served, and reloading it, is the caller's business
//! (the `ServerConfig`'s certificate resolver); this module only runs the
//! protocol.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
pub use tokio_rustls::TlsAcceptor;
pub use tokio_rustls::rustls::ServerConfig;

/// A TLS stream over TCP, its handshake done.
pub type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

/// Why a TLS handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The client spoke something other than acceptable TLS, or went away.
    #[error("TLS handshake failed: {0}")]
    Failed(#[from] io::Error),
    /// The handshake took longer than it may.
    #[error("TLS handshake did not finish within {0:?}")]
    TimedOut(Duration),
}

/// Builds an acceptor for `config`.
pub fn acceptor(config: Arc<ServerConfig>) -> TlsAcceptor {
    TlsAcceptor::from(config)
}

/// Runs the server side of a handshake on `tcp`, for at most `within`.
pub async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    within: Duration,
) -> Result<TlsStream, HandshakeError> {
    match tokio::time::timeout(within, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(err)) => Err(HandshakeError::Failed(err)),
        Err(_) => Err(HandshakeError::TimedOut(within)),
    }
}
