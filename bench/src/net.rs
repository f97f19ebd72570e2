//! Client sockets. Connections to a loopback target are bound to source
//! addresses spread over 127.0.0.0/8, so that tens of thousands of short
//! connections do not run out of ephemeral ports on one source address.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::net::{TcpSocket, TcpStream};

/// The name a TLS run asks for (and the server certificate must carry).
pub const TLS_SERVER_NAME: &str = "localhost";

/// A TLS client configuration trusting only the CA (or self-signed
/// certificate) in the PEM file `ca`.
pub fn tls_connector(ca: &std::path::Path) -> anyhow::Result<tokio_rustls::TlsConnector> {
    use anyhow::Context as _;
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).with_context(|| format!("{}", ca.display()))? {
        roots
            .add(cert.with_context(|| format!("{}", ca.display()))?)
            .context("a CA certificate")?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        config,
    )))
}

/// Round-robin over source addresses 127.0.0.2 ..= 127.0.0.254 and
/// 127.0.1.1 ..= 127.0.1.254 and so on, 8 blocks.
static NEXT_SOURCE: AtomicU32 = AtomicU32::new(0);

/// The next source address to bind for a connection to `target`, or `None`
/// when the target is not IPv4 loopback.
pub fn next_source(target: SocketAddr) -> Option<Ipv4Addr> {
    match target.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => {
            let n = NEXT_SOURCE.fetch_add(1, Ordering::Relaxed);
            let block = (n / 253) % 8;
            let host = 2 + n % 253;
            Some(Ipv4Addr::new(127, 0, block as u8, host as u8))
        }
        _ => None,
    }
}

/// Connects to `target`; with `spread`, from the next loopback source
/// address. Sets `TCP_NODELAY`.
pub async fn connect(target: SocketAddr, spread: bool) -> io::Result<TcpStream> {
    let source = if spread { next_source(target) } else { None };
    let stream = match source {
        Some(src) => {
            let sock = TcpSocket::new_v4()?;
            sock.bind(SocketAddr::new(IpAddr::V4(src), 0))?;
            sock.connect(target).await?
        }
        None => TcpStream::connect(target).await?,
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_stay_in_loopback() {
        let t: SocketAddr = "127.0.0.1:7000".parse().expect("addr");
        for _ in 0..5000 {
            let s = next_source(t).expect("loopback");
            assert!(s.is_loopback());
            assert_ne!(s.octets()[3], 0);
            assert_ne!(s.octets()[3], 255);
        }
        let remote: SocketAddr = "[::1]:7000".parse().expect("addr");
        assert!(next_source(remote).is_none());
    }
}
