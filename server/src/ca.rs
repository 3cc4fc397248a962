//! The local CA: an ECDSA P-256 root created on first start and kept in the database (the
//! server writes nothing to disk), which signs agents' CSRs.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use sqlx::postgres::PgPool;
use time::OffsetDateTime;

const CA_COMMON_NAME: &str = "certctl local CA";
const CA_VALIDITY_DAYS: i64 = 3650;

/// Why the CA could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// Database access failed.
    #[error("reading or storing the CA in the database failed")]
    Database(#[from] sqlx::Error),
    /// Generating or parsing CA material failed.
    #[error("the CA stored in the database is unusable: {0}")]
    Material(#[source] rcgen::Error),
}

/// Why a CSR was refused; the message is returned to the agent as the `invalid_csr` reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    /// Not PEM or not a PKCS#10 request.
    #[error("csr_pem is not a PEM-encoded PKCS#10 certificate request")]
    NotACsr,
    /// The self-signature does not verify.
    #[error("the CSR's signature does not verify (was it signed with the key it carries?)")]
    BadSignature,
    /// A key or signature algorithm we do not sign for.
    #[error("the CSR uses an unsupported key or signature algorithm (use ECDSA P-256)")]
    UnsupportedAlgorithm,
    /// The CSR's key is not ECDSA P-256 (read from the key itself, not its signature).
    #[error("the CSR carries a {found} key signed with {signature}; only ECDSA P-256 keys signed with ecdsa-with-SHA256 are issued")]
    UnsupportedKey {
        /// The key type found, e.g. `EC secp384r1` or `RSA`.
        found: String,
        /// The signature algorithm found.
        signature: String,
    },
    /// An extension other than SAN / key usage / EKU / basic constraints.
    #[error("the CSR requests an unsupported extension (only subjectAltName is honoured)")]
    UnsupportedExtension,
    /// The CN differs from the job's.
    #[error("the CSR's common name {found:?} does not match the job's {expected:?}")]
    CommonNameMismatch {
        /// The job's CN.
        expected: String,
        /// The CSR's CN (empty when absent).
        found: String,
    },
    /// The SAN set differs from the job's.
    #[error("the CSR's subjectAltNames {found:?} do not match the job's {expected:?}")]
    SansMismatch {
        /// The job's SANs.
        expected: Vec<String>,
        /// The CSR's SANs.
        found: Vec<String>,
    },
    /// The configured validity cannot be represented (the configuration bounds it).
    #[error("the configured certificate validity is out of range")]
    ValidityOutOfRange,
    /// A SAN of a type other than DNS or IP.
    #[error("the CSR carries a subjectAltName that is neither a DNS name nor an IP address")]
    UnsupportedSan,
}

/// A certificate the CA issued.
#[derive(Debug, Clone)]
pub struct Issued {
    /// PEM of the leaf certificate.
    pub certificate_pem: String,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

/// The CA, ready to sign.
pub struct LocalCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalCa").finish_non_exhaustive()
    }
}

fn generate_ca() -> Result<(String, String), rcgen::Error> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, CA_COMMON_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(CA_VALIDITY_DAYS);
    params.serial_number = Some(random_serial().0);
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn random_serial() -> (SerialNumber, String) {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    // Positive and minimal in DER: top bit clear, first byte non-zero.
    bytes[0] = (bytes[0] & 0x7f).max(1);
    let hex = bytes.iter().fold(String::with_capacity(32), |mut out, b| {
        use std::fmt::Write;
        let _ = write!(out, "{b:02x}");
        out
    });
    (SerialNumber::from_slice(&bytes), hex)
}

fn san_to_string(san: &SanType) -> Result<String, CsrError> {
    match san {
        SanType::DnsName(name) => Ok(name.as_str().to_owned()),
        SanType::IpAddress(ip) => Ok(ip.to_string()),
        _ => Err(CsrError::UnsupportedSan),
    }
}

impl LocalCa {
    /// Loads the CA from the database, creating it if this is the first start. Concurrent
    /// replicas race safely: the first insert wins and everyone loads the winner.
    ///
    /// # Errors
    /// Database failures or unusable stored material.
    pub async fn load_or_create(pool: &PgPool) -> Result<Self, CaError> {
        let existing: Option<(String, String)> =
            sqlx::query_as("SELECT cert_pem, key_pem FROM ca WHERE id = 1").fetch_optional(pool).await?;
        let (cert_pem, key_pem) = match existing {
            Some(found) => found,
            None => {
                let (cert_pem, key_pem) = generate_ca().map_err(CaError::Material)?;
                sqlx::query("INSERT INTO ca (id, cert_pem, key_pem) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING")
                    .bind(&cert_pem)
                    .bind(&key_pem)
                    .execute(pool)
                    .await?;
                sqlx::query_as("SELECT cert_pem, key_pem FROM ca WHERE id = 1").fetch_one(pool).await?
            }
        };
        Self::from_pem(&cert_pem, &key_pem).map_err(CaError::Material)
    }

    /// Builds the CA from its PEM certificate and key.
    ///
    /// # Errors
    /// Unparsable certificate or key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, rcgen::Error> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(Self { cert_pem: cert_pem.to_owned(), issuer })
    }

    /// A fresh CA that lives only in memory (tests and benchmarks).
    ///
    /// # Errors
    /// Key generation failure.
    pub fn ephemeral() -> Result<Self, rcgen::Error> {
        let (cert, key) = generate_ca()?;
        Self::from_pem(&cert, &key)
    }

    /// The CA certificate in PEM, for clients to verify issued certificates.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Verifies `csr_pem` and, if its CN and SANs are exactly `common_name` and `sans`,
    /// issues a certificate valid for `validity`. The CSR's own extensions are not copied:
    /// the certificate carries only what the job asked for.
    ///
    /// # Errors
    /// A [`CsrError`] saying what is wrong with the request.
    pub fn sign_csr(&self, csr_pem: &str, common_name: &str, sans: &[String], validity: Duration) -> Result<Issued, CsrError> {
        require_p256_key(csr_pem)?;
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| match e {
            rcgen::Error::InvalidCertificationRequestSignature => CsrError::BadSignature,
            rcgen::Error::UnsupportedSignatureAlgorithm => CsrError::UnsupportedAlgorithm,
            rcgen::Error::UnsupportedExtension => CsrError::UnsupportedExtension,
            _ => CsrError::NotACsr,
        })?;
        let found_cn = csr.params.distinguished_name.get(&DnType::CommonName).map(dn_value_text).unwrap_or_default();
        if found_cn != common_name {
            return Err(CsrError::CommonNameMismatch { expected: common_name.to_owned(), found: found_cn });
        }
        let found: BTreeSet<String> = csr.params.subject_alt_names.iter().map(san_to_string).collect::<Result<_, _>>()?;
        let expected: BTreeSet<String> = sans.iter().cloned().collect();
        if found != expected {
            return Err(CsrError::SansMismatch { expected: expected.into_iter().collect(), found: found.into_iter().collect() });
        }

        let mut params = CertificateParams::new(sans.to_vec()).map_err(|_| CsrError::UnsupportedSan)?;
        params.distinguished_name.push(DnType::CommonName, common_name);
        // X.509 carries whole seconds; truncate so the stored times equal the certificate's.
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).expect("zero nanoseconds is valid");
        let not_before = now - time::Duration::minutes(1);
        // Configuration bounds the validity (config::MAX_CERTIFICATE_VALIDITY); never panic on it.
        let not_after = time::Duration::try_from(validity).ok().and_then(|d| now.checked_add(d)).ok_or(CsrError::ValidityOutOfRange)?;
        params.not_before = not_before;
        params.not_after = not_after;
        let (serial_number, serial) = random_serial();
        params.serial_number = Some(serial_number);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&csr.public_key, &self.issuer).map_err(|_| CsrError::UnsupportedAlgorithm)?;
        Ok(Issued { certificate_pem: cert.pem(), serial, not_before, not_after })
    }
}

/// Refuses a CSR whose public key is anything but an uncompressed ECDSA P-256 point, or whose
/// signature is not ecdsa-with-SHA256. rcgen infers the key type from the signature
/// algorithm, so without this a P-384 key signed with SHA-256 would be issued as "P-256".
fn require_p256_key(csr_pem: &str) -> Result<(), CsrError> {
    use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_SIG_ECDSA_WITH_SHA256};
    use x509_parser::prelude::{FromDer, X509CertificationRequest};
    let (_, pem) = x509_parser::pem::parse_x509_pem(csr_pem.as_bytes()).map_err(|_| CsrError::NotACsr)?;
    let (_, csr) = X509CertificationRequest::from_der(&pem.contents).map_err(|_| CsrError::NotACsr)?;
    let spki = &csr.certification_request_info.subject_pki;
    let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok());
    let point: &[u8] = spki.subject_public_key.data.as_ref();
    let is_p256 = spki.algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY
        && curve.as_ref() == Some(&OID_EC_P256)
        && point.len() == 65
        && point[0] == 0x04;
    if is_p256 && csr.signature_algorithm.algorithm == OID_SIG_ECDSA_WITH_SHA256 {
        return Ok(());
    }
    let found = match (&curve, spki.algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY) {
        (Some(c), true) if is_p256 || c != &OID_EC_P256 => format!("EC {}", oid_name(c)),
        (_, true) => "malformed EC".to_owned(),
        _ => oid_name(&spki.algorithm.algorithm),
    };
    Err(CsrError::UnsupportedKey { found, signature: oid_name(&csr.signature_algorithm.algorithm) })
}

/// Readable names of the key types, curves and signature algorithms CSRs commonly carry.
fn oid_name(oid: &x509_parser::der_parser::oid::Oid<'_>) -> String {
    let id = oid.to_id_string();
    let name = match id.as_str() {
        "1.2.840.113549.1.1.1" => "RSA",
        "1.3.101.112" => "Ed25519",
        "1.3.101.113" => "Ed448",
        "1.2.840.10045.3.1.7" => "P-256",
        "1.3.132.0.34" => "P-384",
        "1.3.132.0.35" => "P-521",
        "1.3.132.0.10" => "secp256k1",
        "1.2.840.10045.4.3.2" => "ecdsa-with-SHA256",
        "1.2.840.10045.4.3.3" => "ecdsa-with-SHA384",
        "1.2.840.10045.4.3.4" => "ecdsa-with-SHA512",
        "1.2.840.113549.1.1.11" => "sha256WithRSAEncryption",
        "1.2.840.113549.1.1.12" => "sha384WithRSAEncryption",
        "1.2.840.113549.1.1.10" => "RSASSA-PSS",
        _ => return id,
    };
    name.to_owned()
}

fn dn_value_text(value: &rcgen::DnValue) -> String {
    match value {
        rcgen::DnValue::Utf8String(s) => s.clone(),
        rcgen::DnValue::PrintableString(s) => s.as_str().to_owned(),
        rcgen::DnValue::Ia5String(s) => s.as_str().to_owned(),
        rcgen::DnValue::TeletexString(s) => s.as_str().to_owned(),
        // BMP/Universal strings (and future kinds) are not produced by common CSR tools; an
        // empty CN then fails the match with a clear reason.
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    fn csr(cn: &str, sans: &[&str]) -> String {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn issued_certificate_verifies_against_the_ca() {
        let ca = LocalCa::ephemeral().unwrap();
        let issued = ca
            .sign_csr(&csr("node-a", &["node-a", "10.0.0.7"]), "node-a", &names(&["node-a", "10.0.0.7"]), Duration::from_secs(3600))
            .unwrap();
        let (_, ca_pem) = parse_x509_pem(ca.cert_pem().as_bytes()).unwrap();
        let ca_cert = ca_pem.parse_x509().unwrap();
        let (_, leaf_pem) = parse_x509_pem(issued.certificate_pem.as_bytes()).unwrap();
        let leaf = leaf_pem.parse_x509().unwrap();
        leaf.verify_signature(Some(ca_cert.public_key())).expect("leaf signed by the CA");
        assert_eq!(leaf.issuer(), ca_cert.subject());
        assert_eq!(leaf.raw_serial_as_string().replace(':', ""), issued.serial);
        assert_eq!(leaf.validity().not_after.timestamp(), issued.not_after.unix_timestamp());
        assert!(!leaf.is_ca());
    }

    #[test]
    fn mismatched_names_and_garbage_are_refused_with_a_reason() {
        let ca = LocalCa::ephemeral().unwrap();
        let d = Duration::from_secs(60);
        let err = ca.sign_csr(&csr("evil", &["node-a"]), "node-a", &names(&["node-a"]), d).unwrap_err();
        assert!(matches!(err, CsrError::CommonNameMismatch { .. }), "{err}");
        let err = ca.sign_csr(&csr("node-a", &["node-a", "bank.example"]), "node-a", &names(&["node-a"]), d).unwrap_err();
        assert!(matches!(err, CsrError::SansMismatch { .. }), "{err}");
        assert_eq!(ca.sign_csr("not a csr", "node-a", &names(&["node-a"]), d).unwrap_err(), CsrError::NotACsr);
        // A CSR whose signed content was altered after signing: the CN now says node-b.
        let (_, pem) = parse_x509_pem(csr("node-a", &["node-a"]).as_bytes()).unwrap();
        let mut der = pem.contents;
        let at = der.windows(6).position(|w| w == b"node-a").unwrap();
        der[at + 5] = b'b';
        let tampered = format!("-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n", base64_encode(&der));
        let err = ca.sign_csr(&tampered, "node-b", &names(&["node-a"]), d).unwrap_err();
        assert_eq!(err, CsrError::BadSignature);
    }

    fn base64_encode(data: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}
