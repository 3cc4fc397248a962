//! The agent's TLS client configuration: TLS 1.3 only, trusting only the configured CA
//! bundle (never the system roots). Skipping verification is possible only when asked for.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Errors building the TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The bundle file could not be read.
    #[error("cannot read CA bundle {path} (CERTCTL_SERVER_CA_BUNDLE_PATH)")]
    Read {
        /// The bundle path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The bundle holds no usable certificate.
    #[error("CA bundle {path} (CERTCTL_SERVER_CA_BUNDLE_PATH) holds no usable PEM certificate: {reason}")]
    Empty {
        /// The bundle path.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// rustls refused the protocol setup.
    #[error("TLS setup failed")]
    Rustls(#[source] rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS 1.3 client config trusting only the certificates in the PEM bundle at `path`.
///
/// # Errors
/// [`TlsError`] if the bundle is unreadable or holds no valid certificate.
pub fn client_config_trusting(path: &Path) -> Result<ClientConfig, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })?;
    let empty = |reason: String| TlsError::Empty { path: path.to_owned(), reason };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| empty(format!("bad PEM: {e}")))?;
        roots.add(cert).map_err(|e| empty(format!("certificate rejected: {e}")))?;
    }
    if roots.is_empty() {
        return Err(empty("no CERTIFICATE blocks found".into()));
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Rustls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A TLS 1.3 client config that accepts any server certificate. Only for
/// `CERTCTL_INSECURE_SKIP_VERIFY=true`; the caller logs a warning.
///
/// # Errors
/// [`TlsError::Rustls`] if the protocol setup fails.
pub fn client_config_skipping_verification() -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Rustls)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts any certificate but still checks handshake signatures (so the peer holds the
/// key of the certificate it presented).
#[derive(Debug)]
struct AcceptAnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_with_a_ca_loads() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap();
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), ca.pem()).unwrap();
        client_config_trusting(tmp.path()).unwrap();
    }

    #[test]
    fn empty_or_missing_bundle_is_refused_with_the_variable_name() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), "not a certificate").unwrap();
        let err = client_config_trusting(tmp.path()).unwrap_err();
        assert!(err.to_string().contains("CERTCTL_SERVER_CA_BUNDLE_PATH"), "{err}");
        let err = client_config_trusting(Path::new("/nonexistent/ca.crt")).unwrap_err();
        assert!(matches!(err, TlsError::Read { .. }), "{err}");
    }

    #[test]
    fn skip_verify_config_builds() {
        client_config_skipping_verification().unwrap();
    }
}
