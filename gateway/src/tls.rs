//! TLS for the client and admin listeners (contract section 11): each
//! listener's certificate chain and key, read from PEM files, and served
//! through a resolver that SIGHUP reloads.
//!
//! Each listener has one `ServerConfig` for its whole life (TLS 1.3 and 1.2
//! only, ring as the crypto provider); what changes on a reload is the
//! certificate its resolver hands to the next handshake. A connection keeps
//! the session it was set up with, so open connections are untouched. A
//! file that does not load leaves the old certificate in place, and the
//! error is logged. The TLS protocol itself is in `conn_actor::transport::tls`.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use anyhow::{Context as _, bail};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, version};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::signal::unix::{Signal, SignalKind, signal};

/// Where a listener's certificate chain and key are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, the end-entity certificate first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// One listener's certificate, replaced on reload.
pub struct Certificate {
    /// The listener, for log lines: `client` or `admin`.
    listener: &'static str,
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl Certificate {
    /// Reads the files; an error names the file that did not load.
    pub fn load(listener: &'static str, files: TlsFiles) -> anyhow::Result<Arc<Self>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = read(&files, &provider)
            .with_context(|| format!("cannot load the {listener} listener's TLS certificate"))?;
        Ok(Arc::new(Self {
            listener,
            files,
            provider,
            current: RwLock::new(Arc::new(key)),
        }))
    }

    /// Reads the files again; on success the next handshake gets the new
    /// certificate, on failure the old one stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let key = read(&self.files, &self.provider)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
        Ok(())
    }

    /// A TLS 1.3 and 1.2 server configuration that serves this certificate,
    /// whichever it is at each handshake.
    pub fn server_config(self: &Arc<Self>, alpn: &[&[u8]]) -> anyhow::Result<Arc<ServerConfig>> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&version::TLS13, &version::TLS12])
            .context("the TLS provider lacks TLS 1.2 or 1.3")?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        // Lets a TLS 1.3 connection's record layer pass from rustls to the
        // transport after the handshake (conn-actor's `records.rs`), which
        // drops its keys while idle. The secrets never leave the process.
        config.enable_secret_extraction = true;
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("listener", &self.listener)
            .field("files", &self.files)
            .finish()
    }
}

/// A chain and a key that belong together, or which file is wrong.
fn read(files: &TlsFiles, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let cert = files.cert.display();
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|err| anyhow::anyhow!("{cert}: {err}"))?;
    if chain.is_empty() {
        bail!("{cert}: no PEM certificate in it");
    }
    let key_path = files.key.display();
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|err| anyhow::anyhow!("{key_path}: {err}"))?;
    CertifiedKey::from_der(chain, key, provider)
        .map_err(|err| anyhow::anyhow!("{key_path} with {cert}: {err}"))
}

/// The SIGHUP handler, installed before `READY` so that an early SIGHUP
/// does not end the process.
pub struct Reloads {
    hangup: Signal,
    certificates: Vec<Arc<Certificate>>,
}

impl Reloads {
    /// Installs the handler for these certificates (none: SIGHUP is only
    /// logged).
    pub fn install(certificates: Vec<Arc<Certificate>>) -> std::io::Result<Self> {
        Ok(Self {
            hangup: signal(SignalKind::hangup())?,
            certificates,
        })
    }

    /// Reloads every certificate on each SIGHUP, for the life of the process.
    pub async fn run(mut self) {
        while self.hangup.recv().await.is_some() {
            tracing::info!(
                certificates = self.certificates.len(),
                "SIGHUP: reloading TLS certificates"
            );
            for cert in &self.certificates {
                match cert.reload() {
                    Ok(()) => tracing::info!(
                        listener = cert.listener,
                        file = %cert.files.cert.display(),
                        "TLS certificate reloaded"
                    ),
                    Err(err) => tracing::error!(
                        listener = cert.listener,
                        error = format!("{err:#}"),
                        "TLS certificate not reloaded; the previous one stays in use"
                    ),
                }
            }
        }
    }
}
