//! TLS: the certificate pair is loaded and checked up front, served with TLS 1.3 only, and
//! re-read on SIGHUP. A reload that fails keeps the pair already being served.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

/// Why a certificate pair could not be loaded. Messages name the variable holding the path.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {var}={}: {source}", path.display())]
    Read {
        /// The variable naming the file.
        var: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The certificate file holds no PEM certificate.
    #[error("CERTCTL_SERVER_TLS_CERT_PATH={} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no usable PEM private key.
    #[error("CERTCTL_SERVER_TLS_KEY_PATH={} holds no PEM private key (expected PKCS#8, PKCS#1 or SEC1 PEM)", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The key is of a kind rustls cannot sign with.
    #[error("CERTCTL_SERVER_TLS_KEY_PATH={}: unsupported private key: {source}", path.display())]
    UnsupportedKey {
        /// The file.
        path: PathBuf,
        /// rustls' complaint.
        #[source]
        source: rustls::Error,
    },
    /// Certificate and key are not a pair.
    #[error("CERTCTL_SERVER_TLS_CERT_PATH={} and CERTCTL_SERVER_TLS_KEY_PATH={} do not match: the key is not the certificate's key ({source})", cert.display(), key.display())]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls' complaint.
        #[source]
        source: rustls::Error,
    },
}

/// The crypto provider used everywhere in the server.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn read(var: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { var, path: path.to_owned(), source })
}

/// Loads a PEM certificate chain and private key and checks that they belong together.
///
/// # Errors
/// Unreadable files, no certificate, no key, an unsupported key, or a mismatched pair.
pub fn load_certified_key(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_pem = read("CERTCTL_SERVER_TLS_CERT_PATH", cert_path)?;
    let key_pem = read("CERTCTL_SERVER_TLS_KEY_PATH", key_path)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem).filter_map(Result::ok).collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: cert_path.to_owned() });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey { path: key_path.to_owned() })?;
    let signing_key =
        provider().key_provider.load_private_key(key).map_err(|source| TlsError::UnsupportedKey { path: key_path.to_owned(), source })?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().map_err(|source| TlsError::Mismatch { cert: cert_path.to_owned(), key: key_path.to_owned(), source })?;
    Ok(certified)
}

/// Serves the current certificate pair and swaps it on [`ReloadableCert::reload`].
pub struct ReloadableCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// The bytes of both files as last loaded (or last refused), so a poll
    /// reloads only on change and a broken pair is reported once.
    seen: std::sync::Mutex<Vec<u8>>,
}

impl fmt::Debug for ReloadableCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadableCert").field("cert_path", &self.cert_path).field("key_path", &self.key_path).finish_non_exhaustive()
    }
}

impl ReloadableCert {
    /// Loads the pair once; the server refuses to start if this fails.
    ///
    /// # Errors
    /// See [`load_certified_key`].
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let seen = file_bytes(cert_path, key_path);
        let key = load_certified_key(cert_path, key_path)?;
        Ok(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            current: RwLock::new(Arc::new(key)),
            seen: std::sync::Mutex::new(seen),
        })
    }

    /// Reloads when either file's bytes differ from what was last seen;
    /// `Ok(false)` when nothing changed. A changed pair that does not load is
    /// an error once, then ignored until the files change again.
    ///
    /// # Errors
    /// See [`load_certified_key`].
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = file_bytes(&self.cert_path, &self.key_path);
        if *self.seen.lock().unwrap_or_else(|e| e.into_inner()) == now {
            return Ok(false);
        }
        self.reload().map(|()| true)
    }

    /// Re-reads both files. On success the new pair is served to new handshakes; on failure
    /// the pair already being served is kept and the error returned.
    ///
    /// # Errors
    /// See [`load_certified_key`].
    pub fn reload(&self) -> Result<(), TlsError> {
        // Recorded first, so the file poll does not load the same pair again.
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = file_bytes(&self.cert_path, &self.key_path);
        let key = load_certified_key(&self.cert_path, &self.key_path)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
        Ok(())
    }

    fn current(&self) -> Arc<CertifiedKey> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Both files' contents, concatenated (unreadable files count as empty: the
/// reload that follows names the problem).
fn file_bytes(cert_path: &Path, key_path: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(cert_path).unwrap_or_default();
    bytes.push(0);
    bytes.extend(std::fs::read(key_path).unwrap_or_default());
    bytes
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// A rustls server configuration that speaks TLS 1.3 only, offering h2 and http/1.1.
pub fn server_config(cert: Arc<ReloadableCert>) -> Arc<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("the ring provider supports TLS 1.3")
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}
