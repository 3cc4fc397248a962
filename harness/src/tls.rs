//! A throwaway certificate authority and server certificate made in Rust
//! (rcgen), shaped as the `kubernetes.io/tls` Secret a chart's
//! `existingSecret` expects: `tls.crt`, `tls.key`, `ca.crt`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};

/// Errors generating certificates.
#[derive(Debug, thiserror::Error)]
#[error("cannot generate the test {what}: {source}")]
pub struct TlsError {
    what: &'static str,
    #[source]
    source: rcgen::Error,
}

/// PEM material for one server.
///
/// # Example
/// ```
/// let m = certctl_harness::tls::TlsMaterial::self_signed("test CA", &["c-certctl-server", "c-certctl-server.ns.svc"]).unwrap();
/// assert!(m.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
/// assert!(m.key_pem.contains("PRIVATE KEY"));
/// let secret = m.secret("c-tls");
/// assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
/// assert!(secret.data.unwrap().contains_key("ca.crt"));
/// ```
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    /// The CA certificate (what clients trust).
    pub ca_pem: String,
    /// The server certificate.
    pub cert_pem: String,
    /// The server's private key (PKCS#8).
    pub key_pem: String,
}

impl TlsMaterial {
    /// A new ECDSA P-256 CA named `ca_name` and a server certificate for
    /// `dns_names` (first one also the CN), valid for TLS server auth.
    ///
    /// # Errors
    /// [`TlsError`] if rcgen refuses a name.
    ///
    /// # Example
    /// ```
    /// let m = certctl_harness::tls::TlsMaterial::self_signed("ca", &["localhost"]).unwrap();
    /// assert_ne!(m.ca_pem, m.cert_pem);
    /// ```
    pub fn self_signed(ca_name: &str, dns_names: &[&str]) -> Result<Self, TlsError> {
        let err = |what| move |source| TlsError { what, source };
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err("CA parameters"))?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, ca_name);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca_key = KeyPair::generate().map_err(err("CA key"))?;
        let issuer = CertifiedIssuer::self_signed(ca, ca_key).map_err(err("CA certificate"))?;

        let names: Vec<String> = dns_names.iter().map(|s| s.to_string()).collect();
        let mut leaf = CertificateParams::new(names).map_err(err("server parameters"))?;
        leaf.distinguished_name.push(DnType::CommonName, dns_names.first().copied().unwrap_or("server"));
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().map_err(err("server key"))?;
        let cert = leaf.signed_by(&key, &issuer).map_err(err("server certificate"))?;
        Ok(Self { ca_pem: issuer.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// The DNS names a chart Service `<fullname>` is reached by inside the
    /// cluster: short, namespaced, `.svc` and the full cluster domain.
    ///
    /// # Example
    /// ```
    /// let n = certctl_harness::tls::TlsMaterial::service_names("c-certctl-server", "ns");
    /// assert_eq!(n[2], "c-certctl-server.ns.svc");
    /// ```
    pub fn service_names(service: &str, namespace: &str) -> Vec<String> {
        vec![
            service.to_string(),
            format!("{service}.{namespace}"),
            format!("{service}.{namespace}.svc"),
            format!("{service}.{namespace}.svc.cluster.local"),
        ]
    }

    /// A `kubernetes.io/tls` Secret named `name` holding `tls.crt`,
    /// `tls.key` and `ca.crt`.
    ///
    /// # Example
    /// ```
    /// let s = certctl_harness::tls::TlsMaterial::self_signed("ca", &["x"]).unwrap().secret("x-tls");
    /// assert_eq!(s.metadata.name.as_deref(), Some("x-tls"));
    /// ```
    pub fn secret(&self, name: &str) -> Secret {
        let data: BTreeMap<String, ByteString> = [("tls.crt", &self.cert_pem), ("tls.key", &self.key_pem), ("ca.crt", &self.ca_pem)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect();
        Secret {
            metadata: kube::api::ObjectMeta { name: Some(name.to_string()), ..Default::default() },
            type_: Some("kubernetes.io/tls".into()),
            data: Some(data),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::pem::parse_x509_pem;

    #[test]
    fn server_certificate_verifies_against_the_ca_and_carries_the_names() {
        let m = TlsMaterial::self_signed("certctl test CA", &["svc", "svc.ns.svc"]).unwrap();
        let (_, ca_pem) = parse_x509_pem(m.ca_pem.as_bytes()).unwrap();
        let (_, leaf_pem) = parse_x509_pem(m.cert_pem.as_bytes()).unwrap();
        let ca = ca_pem.parse_x509().unwrap();
        let leaf = leaf_pem.parse_x509().unwrap();
        leaf.verify_signature(Some(ca.public_key())).expect("signed by the CA");
        assert!(ca.is_ca());
        let sans = leaf.subject_alternative_name().unwrap().unwrap();
        let names: Vec<String> = sans.value.general_names.iter().map(|n| n.to_string()).collect();
        assert!(names.iter().any(|n| n.contains("svc.ns.svc")), "{names:?}");
    }
}
