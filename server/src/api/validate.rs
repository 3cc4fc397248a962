//! Input checks shared by the routes; each failure says what is wrong with which field.

use std::net::IpAddr;

use super::error::ApiError;

fn invalid(field: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("invalid_request", format!("{field}: {why}"))
}

/// Free text: non-empty, bounded, no control characters.
pub fn validate_text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(invalid(field, format_args!("longer than {max} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "contains control characters"));
    }
    Ok(())
}

/// A DNS name (optionally a leading `*.` wildcard) or an IP address.
fn is_valid_name(name: &str) -> bool {
    if name.parse::<IpAddr>().is_ok() {
        return true;
    }
    let host = name.strip_prefix("*.").unwrap_or(name);
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

/// Checks a certificate's CN and SANs; an absent or empty SAN list defaults to `[common_name]`.
pub fn validate_names(common_name: &str, sans: Option<Vec<String>>) -> Result<Vec<String>, ApiError> {
    validate_text("common_name", common_name, 64)?;
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
        assert!(validate_agent_name("*.x").is_err());
        assert_eq!(validate_names("a.example", None).unwrap(), vec!["a.example"]);
        assert!(validate_names("a", Some(vec!["x".into(), "x".into()])).is_err());
        assert!(validate_text("message", "a\u{0}b", 10).is_err());
    }
}
