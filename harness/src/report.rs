//! The one place an error chain is rendered: each error's message once, its
//! causes below it. Messages never repeat their source (thiserror `#[source]`
//! fields are not interpolated), so nothing is said twice.

use std::error::Error;

/// An error and its sources, one per line, a cause already contained in the
/// line above skipped.
///
/// # Example
/// ```
/// #[derive(Debug, thiserror::Error)]
/// #[error("helm install failed")]
/// struct Install(#[source] std::io::Error);
/// let e = Install(std::io::Error::other("connection refused"));
/// assert_eq!(certctl_harness::report::chain(&e), "helm install failed\n  caused by: connection refused");
/// ```
pub fn chain(e: &(dyn Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(cause) = cur {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str("\n  caused by: ");
            text.push_str(&line);
        }
        cur = cause.source();
    }
    text
}

/// Indents every line of `text` by four spaces (a report's nested block).
///
/// # Example
/// ```
/// assert_eq!(certctl_harness::report::indent("a\nb"), "    a\n    b");
/// ```
pub fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}
