//! Kubernetes Secret targets: the namespaces this server lets a certificate name
//! (`CERTCTL_KUBERNETES_SECRETS_NAMESPACES`), and Kubernetes' own shape rules for a
//! target's namespace and Secret name. The agent that holds the key writes the Secret;
//! the server decides only where a certificate may ask to be written.

/// The variable that turns targets on by listing their namespaces.
pub const NAMESPACES_VAR: &str = "CERTCTL_KUBERNETES_SECRETS_NAMESPACES";

/// A DNS-1123 label (namespace names): 1..=63 of `a-z`, `0-9`, `-`, alphanumeric at both ends.
pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS-1123 subdomain (Secret names): labels joined by `.`, 253 bytes in all.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// The namespaces targets may name; empty means the feature is off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretNamespaces(Vec<String>);

impl SecretNamespaces {
    /// Parses a comma-separated list; blanks around names are ignored.
    ///
    /// # Errors
    /// The first entry that is not a namespace name, or a duplicate.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut names: Vec<String> = Vec::new();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if !is_dns1123_label(name) {
                return Err(format!("{name:?} is not a namespace name (at most 63 of a-z, 0-9, '-', alphanumeric at both ends)"));
            }
            if names.iter().any(|n| n == name) {
                return Err(format!("{name:?} is listed twice"));
            }
            names.push(name.to_owned());
        }
        Ok(Self(names))
    }

    /// Whether any namespace is listed.
    pub fn enabled(&self) -> bool {
        !self.0.is_empty()
    }

    /// Whether `namespace` is listed.
    pub fn allows(&self, namespace: &str) -> bool {
        self.0.iter().any(|n| n == namespace)
    }

    /// The list as configured, for messages.
    pub fn joined(&self) -> String {
        self.0.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_name_rules() {
        for ok in ["apps", "a", "team-1", &"a".repeat(63)] {
            assert!(is_dns1123_label(ok), "{ok:?}");
        }
        for bad in ["", "Apps", "-a", "a-", "a.b", "a_b", &"a".repeat(64), "a\u{202E}"] {
            assert!(!is_dns1123_label(bad), "{bad:?}");
        }
        assert!(is_dns1123_subdomain("web-tls"));
        assert!(is_dns1123_subdomain("web.example-tls"));
        for bad in ["", "web..tls", ".web", "Web", "web/tls", &"a".repeat(254)] {
            assert!(!is_dns1123_subdomain(bad), "{bad:?}");
        }
    }

    #[test]
    fn namespace_lists() {
        let list = SecretNamespaces::parse(" apps, web ,").unwrap();
        assert!(list.enabled() && list.allows("apps") && list.allows("web") && !list.allows("kube-system"));
        assert_eq!(list.joined(), "apps, web");
        assert!(!SecretNamespaces::parse("").unwrap().enabled());
        assert!(SecretNamespaces::parse("apps,Apps").unwrap_err().contains("\"Apps\""));
        assert!(SecretNamespaces::parse("apps,apps").unwrap_err().contains("twice"));
    }
}
