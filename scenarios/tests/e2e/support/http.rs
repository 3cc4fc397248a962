//! HTTPS clients that trust only the server's CA, TLS 1.3 only, with the
//! server's name pinned to a forwarded local address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use certctl_harness::scenario::StepResult;
use rustls_pki_types::pem::PemObject;

/// A client config trusting only `ca`, speaking only `versions`.
pub fn tls_config(ca: &str, versions: &[&'static rustls::SupportedProtocolVersion]) -> StepResult<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// An HTTPS client trusting only `ca`, TLS 1.3, `host` resolved to `addr`.
pub fn https_client(host: &str, addr: SocketAddr, ca: &str, timeout: Duration) -> StepResult<reqwest::Client> {
    let cfg = tls_config(ca, &[&rustls::version::TLS13])?;
    Ok(reqwest::Client::builder().use_preconfigured_tls(cfg).resolve(host, addr).timeout(timeout).build()?)
}
