//! HTTPS served by the portal itself: kubectl sends credentials over TLS
//! only, so the tenant API needs it even where no ingress stands in front.
//! The certificate and key are files (as cert-manager writes them into a
//! Secret volume) and are read again whenever either changes; a bad pair
//! keeps the last good one and says why.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How often the certificate files are looked at for changes.
const RELOAD_CHECK: Duration = Duration::from_secs(5);
/// A client that has not finished its handshake by then is dropped, so
/// slow handshakes cannot hold connections open.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the HTTP server to take them.
const ACCEPT_BACKLOG: usize = 256;

/// The certificate (chain) and key files to serve with.
#[derive(Debug, Clone)]
pub struct KeyPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl KeyPair {
    fn load(&self) -> anyhow::Result<CertifiedKey> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .with_context(|| format!("failed to read the certificate {}", self.cert.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("{} is not a PEM certificate chain", self.cert.display()))?;
        if chain.is_empty() {
            anyhow::bail!("{} holds no PEM certificate", self.cert.display());
        }
        let key = PrivateKeyDer::from_pem_file(&self.key).with_context(|| {
            format!(
                "failed to read a PEM private key (PKCS#8, PKCS#1 or SEC1) from {}",
                self.key.display()
            )
        })?;
        let provider = rustls::crypto::ring::default_provider();
        let certified = CertifiedKey::from_der(chain, key, &provider).with_context(|| {
            format!(
                "the key {} does not fit the certificate {}",
                self.key.display(),
                self.cert.display()
            )
        })?;
        Ok(certified)
    }

    /// What changes when either file is rewritten (or a Secret volume
    /// swaps its symlinks).
    fn stamp(&self) -> Option<(SystemTime, SystemTime, u64, u64)> {
        let cert = std::fs::metadata(&self.cert).ok()?;
        let key = std::fs::metadata(&self.key).ok()?;
        Some((
            cert.modified().ok()?,
            key.modified().ok()?,
            cert.len(),
            key.len(),
        ))
    }
}

/// Answers every handshake with the newest good certificate.
#[derive(Debug)]
struct Reloading {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// The TLS settings for `pair`, reloaded while the returned value lives.
pub fn server_config(pair: KeyPair) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let first = pair.load()?;
    let resolver = Arc::new(Reloading {
        current: RwLock::new(Arc::new(first)),
    });
    let weak = Arc::downgrade(&resolver);
    tokio::spawn(async move {
        let mut seen = pair.stamp();
        loop {
            tokio::time::sleep(RELOAD_CHECK).await;
            let Some(resolver) = weak.upgrade() else {
                return;
            };
            let stamp = pair.stamp();
            if stamp.is_none() || stamp == seen {
                continue;
            }
            match pair.load() {
                Ok(loaded) => {
                    *resolver
                        .current
                        .write()
                        .unwrap_or_else(PoisonError::into_inner) = Arc::new(loaded);
                    seen = stamp;
                    tracing::info!(cert = %pair.cert.display(), "loaded the renewed TLS certificate");
                }
                // A half-written pair is read again at the next check.
                Err(e) => tracing::warn!(
                    error = format!("{e:#}"),
                    "the TLS certificate files changed but cannot be used yet; still serving the previous certificate"
                ),
            }
        }
    });
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("the TLS provider offers no safe protocol version")?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A listener whose connections arrive with their TLS handshake done.
/// Handshakes run apart from the accept loop, so one slow client never
/// delays another's connection.
pub struct TlsListener {
    local: std::net::SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, std::net::SocketAddr)>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let (sender, ready) = mpsc::channel(ACCEPT_BACKLOG);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    () = sender.closed() => return,
                };
                let (socket, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors, usually: let some close.
                        tracing::warn!(error = %e, "failed to accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = socket.set_nodelay(true);
                let acceptor = acceptor.clone();
                let sender = sender.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
                        Ok(Ok(tls)) => {
                            let _ = sender.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "a TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%peer, "a TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { local, ready })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept loop only ends once this listener is gone.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// The certificate-authority-data of a kubeconfig: the PEM file, base64.
pub fn ca_data(path: &Path) -> anyhow::Result<String> {
    use base64::Engine;
    let pem = std::fs::read(path)
        .with_context(|| format!("failed to read the CA certificate {}", path.display()))?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .ok()
        .filter(|c| !c.is_empty());
    if certificates.is_none() {
        anyhow::bail!("{} holds no PEM certificate", path.display());
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(pem))
}
