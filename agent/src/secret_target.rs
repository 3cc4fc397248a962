//! The Kubernetes Secrets target: a certificate that names a Secret is kept there as a
//! `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`, `ca.crt`), written on issue and on
//! every renewal.
//!
//! The agent writes it, not the server: the private key is made here and never leaves the
//! agent except into the Secret the certificate's owner asked for (docs/agent.md, "Secret
//! targets"). Writes are server-side apply with the field manager [`FIELD_MANAGER`] and
//! without force, so a Secret whose fields another manager owns is reported, not taken over.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, Patch, PatchParams};

use crate::api::SecretTarget;
use crate::crypto::CertificateSummary;
use crate::store::Installed;

/// The field manager of every write.
pub const FIELD_MANAGER: &str = "certctl-agent";
/// Label: the certificate id.
pub const LABEL_CERTIFICATE: &str = "certctl.io/certificate-id";
/// Label: the serial in the Secret (hex).
pub const LABEL_SERIAL: &str = "certctl.io/serial";
/// Label: when the certificate in the Secret expires (Unix seconds, selectable with `<`/`>`
/// in tooling; the annotation of the same name has RFC 3339-like text).
pub const LABEL_NOT_AFTER: &str = "certctl.io/not-after";

impl SecretTarget {
    /// Kubernetes' name rules (the namespace and name go into API paths): a DNS-1123 label
    /// and a DNS-1123 subdomain.
    ///
    /// # Errors
    /// Which part is not a valid name.
    pub fn check(&self) -> Result<(), String> {
        let label = |s: &str| {
            !s.is_empty()
                && s.len() <= 63
                && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !s.starts_with('-')
                && !s.ends_with('-')
        };
        if !label(&self.namespace) {
            return Err(format!("namespace {:?} is not a DNS-1123 label", self.namespace));
        }
        if self.name.len() > 253 || !self.name.split('.').all(label) {
            return Err(format!("name {:?} is not a DNS-1123 subdomain", self.name));
        }
        Ok(())
    }
}

/// The Secret for a certificate's installed files.
pub fn tls_secret(target: &SecretTarget, certificate_id: &str, summary: &CertificateSummary, files: &Installed) -> Secret {
    let labels = BTreeMap::from([
        ("app.kubernetes.io/managed-by".to_owned(), FIELD_MANAGER.to_owned()),
        (LABEL_CERTIFICATE.to_owned(), certificate_id.to_owned()),
        (LABEL_SERIAL.to_owned(), summary.serial_hex()),
        (LABEL_NOT_AFTER.to_owned(), summary.not_after_unix.to_string()),
    ]);
    let annotations = BTreeMap::from([(LABEL_NOT_AFTER.to_owned(), summary.not_after.clone())]);
    let data = BTreeMap::from([
        // The local CA signs leaves directly: the chain is the leaf.
        ("tls.crt".to_owned(), ByteString(files.certificate_pem.clone().into_bytes())),
        ("tls.key".to_owned(), ByteString(files.key_pem.clone().into_bytes())),
        ("ca.crt".to_owned(), ByteString(files.ca_pem.clone().into_bytes())),
    ]);
    Secret {
        metadata: ObjectMeta {
            name: Some(target.name.clone()),
            namespace: Some(target.namespace.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

/// Why the Kubernetes client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Not in a pod, or no ServiceAccount token mounted.
    #[error(
        "CERTCTL_KUBERNETES_SECRETS_ENABLED needs the pod's ServiceAccount token and CA under \
         /var/run/secrets/kubernetes.io/serviceaccount (chart: kubernetesSecrets.enabled mounts them)"
    )]
    InCluster(#[source] kube::config::InClusterError),
    /// The client could not be built from that configuration.
    #[error("cannot build the Kubernetes client")]
    Build(#[source] kube::Error),
}

/// Why a Secret could not be written. Every kind is retried with backoff: an operator
/// may grant the namespace, remove the other manager or bring the API back meanwhile.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// RBAC refused the write.
    #[error(
        "the agent's ServiceAccount may not write Secrets in namespace {namespace} (HTTP 403; list it in \
         kubernetesSecrets.namespaces): {message}"
    )]
    Forbidden {
        /// The target namespace.
        namespace: String,
        /// The API server's words.
        message: String,
    },
    /// Another field manager owns fields of the Secret.
    #[error("Secret {namespace}/{name} has fields another manager owns; not overwritten (HTTP 409): {message}")]
    Conflict {
        /// The target namespace.
        namespace: String,
        /// The Secret.
        name: String,
        /// The API server's words (they name the manager).
        message: String,
    },
    /// The API server refused the object (e.g. an existing Secret of another type).
    #[error("the Kubernetes API refused Secret {namespace}/{name} (HTTP {code}): {message}")]
    Refused {
        /// The target namespace.
        namespace: String,
        /// The Secret.
        name: String,
        /// HTTP status.
        code: u16,
        /// The API server's words.
        message: String,
    },
    /// No answer, or a server-side failure.
    #[error("the Kubernetes API did not take the write")]
    Unavailable(#[source] kube::Error),
}

/// Writes Secrets through the pod's ServiceAccount.
#[derive(Clone)]
pub struct SecretWriter {
    client: kube::Client,
}

impl std::fmt::Debug for SecretWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretWriter").finish_non_exhaustive()
    }
}

impl SecretWriter {
    /// A writer from the in-cluster configuration. Must run inside a Tokio runtime.
    ///
    /// # Errors
    /// [`ClientError`] outside a pod with a mounted token.
    pub fn in_cluster() -> Result<Self, ClientError> {
        let config = kube::Config::incluster().map_err(ClientError::InCluster)?;
        Ok(Self { client: kube::Client::try_from(config).map_err(ClientError::Build)? })
    }

    /// Applies `secret` (one PATCH; create-or-update).
    ///
    /// # Errors
    /// [`WriteError`], classified by the API server's answer.
    pub async fn write(&self, target: &SecretTarget, secret: &Secret) -> Result<(), WriteError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &target.namespace);
        match api.patch(&target.name, &PatchParams::apply(FIELD_MANAGER), &Patch::Apply(secret)).await {
            Ok(_) => Ok(()),
            Err(e) => Err(classify(target, e)),
        }
    }
}

fn classify(target: &SecretTarget, e: kube::Error) -> WriteError {
    let (namespace, name) = (target.namespace.clone(), target.name.clone());
    match e {
        kube::Error::Api(status) => {
            let message = status.message.clone();
            match status.code {
                403 => WriteError::Forbidden { namespace, message },
                409 => WriteError::Conflict { namespace, name, message },
                code @ 400..=499 => WriteError::Refused { namespace, name, code, message },
                _ => WriteError::Unavailable(kube::Error::Api(status)),
            }
        }
        other => WriteError::Unavailable(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> Installed {
        Installed { key_pem: "KEY".into(), certificate_pem: "LEAF".into(), ca_pem: "CA".into() }
    }

    #[test]
    fn the_secret_is_kubernetes_tls_labelled_with_certificate_serial_and_expiry() {
        let target = SecretTarget { namespace: "apps".into(), name: "web-tls".into() };
        let summary =
            CertificateSummary { serial: "0a:1b".into(), not_after: "Mar  1 00:00:00 2027 +00:00".into(), not_after_unix: 1_803_945_600 };
        let secret = tls_secret(&target, "c-1", &summary, &files());
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        assert_eq!((secret.metadata.namespace.as_deref(), secret.metadata.name.as_deref()), (Some("apps"), Some("web-tls")));
        let labels = secret.metadata.labels.unwrap();
        assert_eq!(labels[LABEL_CERTIFICATE], "c-1");
        assert_eq!(labels[LABEL_SERIAL], "0a1b");
        assert_eq!(labels[LABEL_NOT_AFTER], "1803945600");
        let data = secret.data.unwrap();
        let text = |k: &str| String::from_utf8(data[k].0.clone()).unwrap();
        assert_eq!((text("tls.crt"), text("tls.key"), text("ca.crt")), ("LEAF".into(), "KEY".into(), "CA".into()));
    }

    #[test]
    fn targets_from_the_server_must_be_kubernetes_names() {
        let t = |ns: &str, name: &str| SecretTarget { namespace: ns.into(), name: name.into() };
        assert!(t("apps", "web.example-tls").check().is_ok());
        for (ns, name) in [("../x", "a"), ("apps", "a/b"), ("Apps", "a"), ("apps", ""), ("apps", "a..b")] {
            assert!(t(ns, name).check().is_err(), "{ns}/{name}");
        }
    }

    #[test]
    fn api_answers_become_named_failures() {
        let target = SecretTarget { namespace: "apps".into(), name: "web-tls".into() };
        let answer = |code: u16, message: &str| kube::Error::Api(kube::core::Status::failure(message, "").with_code(code).boxed());
        let forbidden = classify(&target, answer(403, "secrets \"web-tls\" is forbidden"));
        assert!(forbidden.to_string().contains("may not write Secrets in namespace apps"), "{forbidden}");
        let conflict = classify(&target, answer(409, "Apply failed with 1 conflict: conflict with \"kubectl\""));
        assert!(conflict.to_string().contains("another manager") && conflict.to_string().contains("kubectl"), "{conflict}");
        assert!(matches!(classify(&target, answer(422, "field is immutable")), WriteError::Refused { code: 422, .. }));
        assert!(matches!(classify(&target, answer(503, "unavailable")), WriteError::Unavailable(_)));
    }
}
