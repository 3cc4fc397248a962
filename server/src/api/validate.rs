//! Input checks shared by the routes; each failure says what is wrong with which field.
//!
//! Names (agent names, host names, common names, SANs) are ASCII DNS names or IP addresses:
//! nothing that renders differently from what it is (no bidi overrides, no zero-width
//! characters, no homoglyph-friendly Unicode). Free text (job messages) may be any Unicode
//! except control and invisible format characters.

use std::net::IpAddr;

use super::error::ApiError;
use crate::secret_target::{is_dns1123_label, is_dns1123_subdomain, SecretNamespaces, NAMESPACES_VAR};

fn invalid(field: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("invalid_request", format!("{field}: {why}"))
}

/// Unicode format characters (general category Cf) and other invisible code points: they
/// change how text displays (U+202E reverses it) without being visible themselves.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}' | '\u{180B}'..='\u{180F}'
        | '\u{0600}'..='\u{0605}' | '\u{06DD}' | '\u{070F}' | '\u{0890}' | '\u{0891}' | '\u{08E2}'
        | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{3164}'
        | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF9}'..='\u{FFFB}'
        | '\u{110BD}' | '\u{110CD}' | '\u{13430}'..='\u{1343F}' | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
}

/// Free text: non-empty, bounded, no control or invisible format characters.
pub fn validate_text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(invalid(field, format_args!("longer than {max} bytes")));
    }
    if let Some(c) = value.chars().find(|&c| c.is_control() || is_invisible(c)) {
        return Err(invalid(field, format_args!("contains the control or invisible character U+{:04X}", u32::from(c))));
    }
    Ok(())
}

/// A DNS name (optionally a leading `*.` wildcard) or an IP address.
fn is_valid_name(name: &str) -> bool {
    if name.parse::<IpAddr>().is_ok() {
        return true;
    }
    let host = name.strip_prefix("*.").unwrap_or(name);
    is_dns_name(host)
}

/// ASCII labels of letters, digits, '-' and '_', 1..=63 bytes each, 253 bytes in all.
fn is_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Agent names become the CN and SAN of the agent's own certificate.
pub fn validate_agent_name(name: &str) -> Result<(), ApiError> {
    if !is_valid_name(name) || name.starts_with("*.") || name.len() > 64 {
        return Err(invalid("name", format_args!("{name:?} must be a DNS name of at most 64 characters (letters, digits, '-', '.')")));
    }
    Ok(())
}

/// A reported host name: a DNS name or an IP address.
pub fn validate_hostname(field: &str, value: &str) -> Result<(), ApiError> {
    if value.parse::<IpAddr>().is_ok() || is_dns_name(value) {
        Ok(())
    } else {
        Err(invalid(field, format_args!("{value:?} is not a host name (ASCII letters, digits, '-', '_', '.') or an IP address")))
    }
}

/// A version string such as `0.1.0` or `1.2.3-rc.1+build.5`.
pub fn validate_version(field: &str, value: &str) -> Result<(), ApiError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(invalid(field, format_args!("{value:?} is not a version (at most 64 of ASCII letters, digits, '.', '-', '+', '_')")))
    }
}

/// Checks a certificate's CN and SANs; an absent or empty SAN list defaults to `[common_name]`.
/// The CN is a DNS name (wildcard allowed) or IP address of at most 64 characters, like a SAN.
pub fn validate_names(common_name: &str, sans: Option<Vec<String>>) -> Result<Vec<String>, ApiError> {
    if common_name.len() > 64 || !is_valid_name(common_name) {
        return Err(invalid(
            "common_name",
            format_args!("{common_name:?} must be a DNS name (optionally *.-prefixed) or an IP address of at most 64 characters"),
        ));
    }
    let sans = match sans {
        Some(s) if !s.is_empty() => s,
        _ => vec![common_name.to_owned()],
    };
    if sans.len() > 100 {
        return Err(invalid("sans", "at most 100 names"));
    }
    for san in &sans {
        if !is_valid_name(san) {
            return Err(invalid("sans", format_args!("{san:?} is neither a DNS name nor an IP address")));
        }
    }
    let mut unique = sans.clone();
    unique.sort();
    unique.dedup();
    if unique.len() != sans.len() {
        return Err(invalid("sans", "contains duplicates"));
    }
    Ok(sans)
}

/// A certificate's Secret target: Kubernetes' name rules, and a namespace this server lets
/// certificates name. The refusal says which setting turns it on.
pub fn validate_target(allowed: &SecretNamespaces, namespace: &str, name: &str) -> Result<(), ApiError> {
    if !allowed.enabled() {
        return Err(ApiError::bad_request(
            "target_disabled",
            format!(
                "target: this server keeps no certificates as Kubernetes Secrets ({NAMESPACES_VAR} is unset; \
                 chart: kubernetesSecrets.enabled with kubernetesSecrets.namespaces)"
            ),
        ));
    }
    if !is_dns1123_label(namespace) {
        return Err(invalid(
            "target.namespace",
            format_args!("{namespace:?} is not a namespace name (at most 63 of a-z, 0-9, '-', alphanumeric at both ends)"),
        ));
    }
    if !is_dns1123_subdomain(name) {
        return Err(invalid(
            "target.name",
            format_args!("{name:?} is not a Secret name (at most 253 of a-z, 0-9, '-', '.', alphanumeric at both ends of each part)"),
        ));
    }
    if !allowed.allows(namespace) {
        return Err(ApiError::bad_request(
            "target_namespace_not_allowed",
            format!(
                "target.namespace: {namespace:?} is not a namespace this server writes Secrets to (allowed: {}; \
                 chart: kubernetesSecrets.namespaces)",
                allowed.joined()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_valid_name("node-a"));
        assert!(is_valid_name("app.example.com"));
        assert!(is_valid_name("*.example.com"));
        assert!(is_valid_name("10.0.0.1"));
        assert!(is_valid_name("::1"));
        assert!(!is_valid_name("-bad"));
        assert!(!is_valid_name("a..b"));
        assert!(!is_valid_name("sp ace"));
        assert!(!is_valid_name("node\u{202E}a"));
        assert!(validate_agent_name("*.x").is_err());
        assert_eq!(validate_names("a.example", None).unwrap(), vec!["a.example"]);
        assert!(validate_names("a", Some(vec!["x".into(), "x".into()])).is_err());
        assert!(validate_names("Evil Corp <admin>", Some(vec!["a.example".into()])).is_err());
        assert!(validate_text("message", "a\u{0}b", 10).is_err());
    }

    #[test]
    fn invisible_characters_are_refused_and_named() {
        for c in ['\u{202E}', '\u{200B}', '\u{2066}', '\u{FEFF}', '\u{00AD}', '\u{E0041}'] {
            let text = format!("ok{c}ok");
            let err = validate_text("message", &text, 100).unwrap_err();
            assert!(format!("{err:?}").contains(&format!("U+{:04X}", u32::from(c))), "{err:?}");
            assert!(validate_hostname("hostname", &text).is_err());
            assert!(validate_version("version", &text).is_err());
        }
        assert!(validate_text("message", "certificate installed — serial 0a1b (ünïcödé ok)", 100).is_ok());
        assert!(validate_hostname("hostname", "node-a.cluster.local").is_ok());
        assert!(validate_version("version", "0.1.0-rc.1+g1234").is_ok());
    }

    #[test]
    fn targets_name_a_listed_namespace_and_a_secret_name() {
        let off = SecretNamespaces::default();
        assert!(format!("{:?}", validate_target(&off, "apps", "web-tls").unwrap_err()).contains("target_disabled"));
        let on = SecretNamespaces::parse("apps").unwrap();
        assert!(validate_target(&on, "apps", "web-tls").is_ok());
        for (ns, name, says) in [
            ("kube-system", "web-tls", "target_namespace_not_allowed"),
            ("Apps", "web-tls", "target.namespace"),
            ("apps", "web_tls", "target.name"),
            ("apps", "../x", "target.name"),
            ("apps", "web\u{202E}tls", "target.name"),
        ] {
            let err = format!("{:?}", validate_target(&on, ns, name).unwrap_err());
            assert!(err.contains(says), "{ns}/{name}: {err}");
        }
    }
}
