//! TLS termination with rustls when a certificate and key are configured:
//! HTTP/2 or HTTP/1.1 by ALPN, and the files are watched so a renewed
//! certificate is served to new connections without a restart. A renewal
//! that does not load is refused; the current certificate keeps serving.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    pub fn load(&self) -> Result<ServerConfig, String> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .map_err(|e| format!("cannot read {}: {e}", self.cert.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: {e}", self.cert.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no certificate", self.cert.display()));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| format!("{}: {e}", self.key.display()))?;
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .map_err(|e| format!("the certificate and key do not make a TLS identity: {e}"))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// The acceptor in use, replaced whole when the files change.
#[derive(Clone)]
pub struct Tls {
    files: TlsFiles,
    current: Arc<RwLock<TlsAcceptor>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

impl Tls {
    pub fn new(files: TlsFiles) -> Result<Self, String> {
        let acceptor = TlsAcceptor::from(Arc::new(files.load()?));
        Ok(Self {
            files,
            current: Arc::new(RwLock::new(acceptor)),
        })
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reloads when the certificate or key file changes.
    pub async fn watch(&self, every: Duration) {
        let read = |files: &TlsFiles| {
            (
                std::fs::read(&files.cert).ok(),
                std::fs::read(&files.key).ok(),
            )
        };
        let mut seen = read(&self.files);
        loop {
            tokio::time::sleep(every).await;
            let now = read(&self.files);
            if now == seen {
                continue;
            }
            seen = now;
            match self.files.load() {
                Ok(config) => {
                    let acceptor = TlsAcceptor::from(Arc::new(config));
                    match self.current.write() {
                        Ok(mut guard) => *guard = acceptor,
                        Err(poisoned) => *poisoned.into_inner() = acceptor,
                    }
                    tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                }
                Err(error) => {
                    tracing::error!(%error, "new TLS certificate refused; the current one keeps serving")
                }
            }
        }
    }
}
