//! TLS for the black-box tests (contract section 11): a throwaway CA and a
//! server certificate for `localhost` and `127.0.0.1`, made with rcgen in
//! the test and written as PEM files for the gateway's flags, and a rustls
//! client that trusts that CA and nothing else.
//!
//! [`TlsWire`] is the client stream the protocol and WebSocket clients
//! read through: the server's end counts as an EOF only when
//! `close_notify` came first.
//!
//! [`Pki::install`] copies one PKI's certificate and key over another's
//! files, for the tests of a SIGHUP reload; the files live in a directory
//! of their own that is removed on drop.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::ServerName;
use rustls::{
    ClientConfig, ClientConnection, RootCertStore, StreamOwned, SupportedProtocolVersion,
};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::FRAME_TIMEOUT;
use crate::http::{self, Response};

/// The name the server certificate is issued for, and the SNI clients send.
pub const SERVER_NAME: &str = "localhost";

/// A CA and a server certificate it signed, as files.
pub struct Pki {
    dir: PathBuf,
    /// PEM certificate chain (the server certificate, then the CA).
    pub cert: PathBuf,
    /// PEM private key of the server certificate.
    pub key: PathBuf,
    ca: rustls::pki_types::CertificateDer<'static>,
    /// The CA certificate as PEM, for outside clients (`openssl -CAfile`).
    pub ca_file: PathBuf,
}

impl Pki {
    /// A new CA (named `ca_name`) and a server certificate signed by it.
    pub fn new(ca_name: &str) -> Pki {
        let dir = crate::scratch::fresh_dir("tls");

        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, ca_name);
        let ca_key = KeyPair::generate().expect("CA key");
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA certificate");

        let mut params =
            CertificateParams::new(vec![SERVER_NAME.to_string(), "127.0.0.1".to_string()])
                .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, SERVER_NAME);
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &ca).expect("server certificate");

        let pki = Pki {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            ca_file: dir.join("ca.pem"),
            ca: ca.der().clone(),
            dir,
        };
        write(&pki.cert, format!("{}{}", cert.pem(), ca.pem()).as_bytes());
        write(&pki.key, key.serialize_pem().as_bytes());
        write(&pki.ca_file, ca.pem().as_bytes());
        pki
    }

    /// `--tls-cert FILE --tls-key FILE`.
    pub fn client_flags(&self) -> Vec<String> {
        self.flags("--tls-cert", "--tls-key")
    }

    /// `--admin-tls-cert FILE --admin-tls-key FILE`.
    pub fn admin_flags(&self) -> Vec<String> {
        self.flags("--admin-tls-cert", "--admin-tls-key")
    }

    fn flags(&self, cert: &str, key: &str) -> Vec<String> {
        vec![cert.into(), path(&self.cert), key.into(), path(&self.key)]
    }

    /// Copies `other`'s certificate and key over this one's files.
    pub fn install(&self, other: &Pki) {
        for (from, to) in [(&other.cert, &self.cert), (&other.key, &self.key)] {
            let bytes = std::fs::read(from).expect("read a PEM file");
            write(to, &bytes);
        }
    }

    /// A rustls client trusting only this CA, offering TLS 1.3 and 1.2.
    pub fn client(&self) -> ClientTls {
        self.client_with(&[&rustls::version::TLS13, &rustls::version::TLS12])
    }

    /// A rustls client trusting only this CA, offering only `versions`.
    pub fn client_with(&self, versions: &[&'static SupportedProtocolVersion]) -> ClientTls {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).expect("trust the test CA");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        ClientTls(Arc::new(config))
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write(to: &Path, bytes: &[u8]) {
    // Written aside and renamed, so a reload never reads half a file.
    let aside = to.with_extension("new");
    std::fs::write(&aside, bytes).unwrap_or_else(|e| panic!("write {}: {e}", aside.display()));
    std::fs::rename(&aside, to).unwrap_or_else(|e| panic!("rename to {}: {e}", to.display()));
}

fn path(p: &Path) -> String {
    p.to_str().expect("a UTF-8 temporary path").to_string()
}

/// A TLS client stream over blocking TCP.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// A client configuration for the gateway's listeners.
#[derive(Clone)]
pub struct ClientTls(Arc<ClientConfig>);

impl ClientTls {
    /// Runs a TLS handshake over `tcp`, to completion or failure.
    pub fn handshake(&self, tcp: TcpStream) -> std::io::Result<TlsStream> {
        let name = ServerName::try_from(SERVER_NAME).expect("a valid server name");
        let conn = ClientConnection::new(self.0.clone(), name).map_err(std::io::Error::other)?;
        let mut stream = StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(stream)
    }

    /// Connects to `addr` and completes the handshake.
    pub fn connect(&self, addr: SocketAddr) -> std::io::Result<TlsStream> {
        let tcp = TcpStream::connect_timeout(&addr, FRAME_TIMEOUT)?;
        tcp.set_read_timeout(Some(FRAME_TIMEOUT))?;
        tcp.set_write_timeout(Some(FRAME_TIMEOUT))?;
        tcp.set_nodelay(true)?;
        self.handshake(tcp)
    }

    /// One HTTPS request on the admin listener, as [`http::try_request`].
    pub fn request(
        &self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Response, String> {
        let mut stream = self.connect(addr).map_err(|e| format!("TLS: {e}"))?;
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        if let Some(body) = body {
            req.push_str("Content-Type: application/json\r\n");
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut wire = req.into_bytes();
        wire.extend_from_slice(body.unwrap_or_default());
        stream.write_all(&wire).map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .map_err(|e| format!("reading the response: {e}"))?;
        http::parse(&raw)
    }
}

/// A client's TLS stream that reports the server's end as EOF only once
/// `close_notify` has come and the TCP stream has ended right after it;
/// an EOF without `close_notify`, or bytes after it, is an error.
pub struct TlsWire(TlsStream);

impl TlsWire {
    /// Wraps a stream whose handshake is done.
    pub fn new(stream: TlsStream) -> TlsWire {
        TlsWire(stream)
    }

    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        &self.0.sock
    }

    /// Ends this side's writing: `close_notify`, then a FIN.
    pub fn end_writing(&mut self) -> io::Result<()> {
        self.0.conn.send_close_notify();
        self.0.flush()?;
        self.0.sock.shutdown(Shutdown::Write)
    }
}

impl Read for TlsWire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.read(buf) {
            Ok(0) => {
                // close_notify: nothing may follow but the TCP EOF.
                let mut after = [0u8; 64];
                match self.0.sock.read(&mut after)? {
                    0 => Ok(0),
                    n => Err(io::Error::other(format!(
                        "{n} bytes on the socket after close_notify"
                    ))),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(io::Error::other(
                "the server ended the TCP stream without close_notify",
            )),
            other => other,
        }
    }
}

impl Write for TlsWire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}
