//! Local key generation and CSR building. The private key is created here and only ever
//! written to the key directory; nothing in this crate sends it anywhere.

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PublicKeyData, PKCS_ECDSA_P256_SHA256};
use x509_parser::pem::parse_x509_pem;

/// Errors from key, CSR and certificate handling.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The ECDSA P-256 key could not be generated.
    #[error("generating an ECDSA P-256 key failed")]
    KeyGeneration(#[source] rcgen::Error),
    /// The CSR could not be built (for example a SAN that is not a valid DNS name or IP).
    #[error("building the CSR for CN {common_name:?} failed")]
    Csr {
        /// The CN requested.
        common_name: String,
        /// What rcgen refused.
        #[source]
        source: rcgen::Error,
    },
    /// The certificate returned by the server is not PEM X.509.
    #[error("the server returned a certificate that is not a PEM X.509 certificate: {0}")]
    BadCertificate(String),
    /// The certificate returned by the server is for a different key.
    #[error("the certificate returned by the server does not match the key generated for it")]
    KeyMismatch,
}

/// A freshly generated ECDSA P-256 key pair.
pub struct PrivateKey(KeyPair);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(ECDSA P-256, redacted)")
    }
}

impl PrivateKey {
    /// Generates a new ECDSA P-256 key.
    ///
    /// # Errors
    /// [`CryptoError::KeyGeneration`] if the system RNG fails.
    pub fn generate() -> Result<Self, CryptoError> {
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map(Self).map_err(CryptoError::KeyGeneration)
    }

    /// The key in PKCS#8 PEM, for writing to the key file.
    pub fn to_pem(&self) -> String {
        self.0.serialize_pem()
    }

    /// The DER SubjectPublicKeyInfo of the key.
    pub fn public_key_info(&self) -> Vec<u8> {
        self.0.subject_public_key_info()
    }

    /// Builds a PEM CSR signed by this key with subject CN `common_name` and the given SANs
    /// (DNS names, or IP addresses when they parse as one).
    ///
    /// # Errors
    /// [`CryptoError::Csr`] if a SAN is not a valid name or signing fails.
    pub fn csr_pem(&self, common_name: &str, sans: &[String]) -> Result<String, CryptoError> {
        let csr_error = |source| CryptoError::Csr { common_name: common_name.to_owned(), source };
        let mut params = CertificateParams::new(sans.to_vec()).map_err(csr_error)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.serialize_request(&self.0).and_then(|csr| csr.pem()).map_err(csr_error)
    }

    /// Checks that `certificate_pem` certifies this key, so a wrong certificate is never
    /// installed next to it.
    ///
    /// # Errors
    /// [`CryptoError::BadCertificate`] or [`CryptoError::KeyMismatch`].
    pub fn check_certificate(&self, certificate_pem: &str) -> Result<CertificateSummary, CryptoError> {
        let (summary, public_key) = parse_certificate(certificate_pem)?;
        if public_key != self.public_key_info() {
            return Err(CryptoError::KeyMismatch);
        }
        Ok(summary)
    }
}

/// Serial and expiry of a PEM certificate (one already installed next to its key).
///
/// # Errors
/// [`CryptoError::BadCertificate`].
pub fn summarize(certificate_pem: &str) -> Result<CertificateSummary, CryptoError> {
    parse_certificate(certificate_pem).map(|(summary, _)| summary)
}

fn parse_certificate(certificate_pem: &str) -> Result<(CertificateSummary, Vec<u8>), CryptoError> {
    let (_, pem) = parse_x509_pem(certificate_pem.as_bytes()).map_err(|e| CryptoError::BadCertificate(e.to_string()))?;
    let cert = pem.parse_x509().map_err(|e| CryptoError::BadCertificate(e.to_string()))?;
    let not_after = cert.validity().not_after;
    let summary =
        CertificateSummary { serial: cert.raw_serial_as_string(), not_after: not_after.to_string(), not_after_unix: not_after.timestamp() };
    Ok((summary, cert.public_key().raw.to_vec()))
}

/// What the agent logs about an installed certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSummary {
    /// Serial number, colon-separated hex.
    pub serial: String,
    /// Expiry, as x509-parser prints it.
    pub not_after: String,
    /// Expiry, seconds since the Unix epoch.
    pub not_after_unix: i64,
}

impl CertificateSummary {
    /// The serial as the server writes it: hex digits without separators.
    pub fn serial_hex(&self) -> String {
        self.serial.replace(':', "")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::certification_request::X509CertificationRequest;
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    use x509_parser::prelude::FromDer;

    #[test]
    fn key_is_p256_pkcs8_and_fresh_each_time() {
        let a = PrivateKey::generate().unwrap();
        let b = PrivateKey::generate().unwrap();
        assert!(a.to_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_ne!(a.to_pem(), b.to_pem());
        assert!(!format!("{a:?}").contains("BEGIN"), "Debug must not print the key");
    }

    #[test]
    fn csr_carries_cn_sans_and_a_valid_signature() {
        let key = PrivateKey::generate().unwrap();
        let sans = vec!["node-a".to_string(), "node-a.example".to_string(), "10.0.0.7".to_string()];
        let pem = key.csr_pem("node-a", &sans).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        assert_eq!(pem.label, "CERTIFICATE REQUEST");
        let (_, csr) = X509CertificationRequest::from_der(&pem.contents).unwrap();
        csr.verify_signature().expect("CSR self-signature verifies");
        let cn = csr.certification_request_info.subject.iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), "node-a");
        assert_eq!(csr.certification_request_info.subject_pki.raw, key.public_key_info().as_slice());
        let mut names = Vec::new();
        for ext in csr.requested_extensions().unwrap() {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                for n in &san.general_names {
                    match n {
                        GeneralName::DNSName(d) => names.push(d.to_string()),
                        GeneralName::IPAddress(ip) => names.push(format!("{ip:?}")),
                        other => panic!("unexpected SAN {other:?}"),
                    }
                }
            }
        }
        assert_eq!(names, vec!["node-a".to_string(), "node-a.example".to_string(), format!("{:?}", [10u8, 0, 0, 7].as_slice())]);
    }

    #[test]
    fn invalid_san_is_a_clear_error() {
        let key = PrivateKey::generate().unwrap();
        let err = key.csr_pem("x", &["b\u{fc}cher.example".to_string()]).unwrap_err();
        assert!(err.to_string().contains("building the CSR"), "{err}");
    }

    #[test]
    fn certificate_for_another_key_is_refused() {
        let ours = PrivateKey::generate().unwrap();
        let other = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = CertificateParams::new(vec!["x".to_string()]).unwrap().self_signed(&other).unwrap();
        assert!(matches!(ours.check_certificate(&cert.pem()), Err(CryptoError::KeyMismatch)));
        assert!(matches!(ours.check_certificate("not pem"), Err(CryptoError::BadCertificate(_))));
    }

    #[test]
    fn certificate_for_our_key_is_accepted() {
        let ours = PrivateKey::generate().unwrap();
        let cert = CertificateParams::new(vec!["x".to_string()]).unwrap().self_signed(&ours.0).unwrap();
        let summary = ours.check_certificate(&cert.pem()).unwrap();
        assert!(!summary.serial.is_empty());
    }
}
