//! Every template-time refusal of the spec, asserted by its message: each one tells the
//! operator exactly what to set.

mod support;

use certctl_scenarios::render::Render;
use support::{receipts, render_all};

/// (what, render, fragments the message must contain)
fn cases() -> Vec<(&'static str, Render, Vec<&'static str>)> {
    vec![
        (
            "both TLS paths",
            receipts::default().set("server.tls.certManager.enabled", "true").set("server.tls.certManager.issuerRef.name", "ca"),
            vec!["EXACTLY ONE TLS ownership path", "both set"],
        ),
        (
            "no TLS path",
            receipts::default().set("server.tls.existingSecret", ""),
            vec!["EXACTLY ONE TLS ownership path", "--set server.tls.existingSecret=NAME", "--set server.tls.certManager.enabled=true"],
        ),
        (
            "cert-manager without issuer",
            receipts::cert_manager().set("server.tls.certManager.issuerRef.name", ""),
            vec!["needs an issuer", "--set server.tls.certManager.issuerRef.name=ISSUER"],
        ),
        (
            "missing api key",
            receipts::default().set("server.auth.apiKey", ""),
            vec!["server.auth.apiKey is required", "--set server.auth.apiKey=$(openssl rand -hex 32)"],
        ),
        ("api key list of blanks", receipts::default().set("server.auth.apiKey", "\\, \\,"), vec!["server.auth.apiKey is required"]),
        (
            "missing postgres password",
            receipts::default().set("postgresql.auth.password", ""),
            vec!["postgresql.auth.password is required", "no default password", "--set postgresql.auth.password=$(openssl rand -hex 24)"],
        ),
        (
            "missing external URL",
            receipts::external_db().set("externalDatabase.url", ""),
            vec!["externalDatabase.url is required with postgresql.enabled=false", "--set externalDatabase.url='postgres://"],
        ),
        (
            "jwt auth",
            receipts::default().set("server.auth.type", "jwt"),
            vec!["server.auth.type=jwt is not supported", "authenticating gateway", "--set server.auth.type=api-key"],
        ),
        (
            "unknown auth type",
            receipts::default().set("server.auth.type", "basic"),
            vec!["server.auth.type=\"basic\" is not supported", "--set server.auth.type=api-key"],
        ),
    ]
}

#[test]
fn every_refusal_says_what_to_set() {
    let cases = cases();
    let renders: Vec<Render> = cases.iter().map(|(_, r, _)| r.clone()).collect();
    for ((what, render, fragments), result) in cases.iter().zip(render_all(&renders)) {
        let err = match result {
            Ok(r) => panic!("{what}: rendered {} objects instead of refusing (args {:?})", r.objects.len(), render.args()),
            Err(e) => e,
        };
        let stderr = err.helm_stderr().unwrap_or_else(|| panic!("{what}: helm did not run: {err}"));
        for f in fragments {
            assert!(stderr.contains(f), "{what}: message lacks {f:?}:\n{stderr}");
        }
    }
}

/// Refusals are the template's, not accidents: the same renders pass once the one
/// missing value is supplied (positive control).
#[test]
fn each_refusal_is_lifted_by_the_value_it_names() {
    let fixed = [
        receipts::default(),
        receipts::default().set("server.tls.certManager.enabled", "false"),
        receipts::cert_manager().set("server.tls.certManager.issuerRef.name", "ca"),
        receipts::default().set("server.auth.apiKey", "k2"),
        receipts::default().set("postgresql.auth.password", "p2"),
        receipts::external_db().set("externalDatabase.url", "postgres://h/db"),
        receipts::external_db().set("externalDatabase.url", "").set("externalDatabase.existingSecret", "db"),
        receipts::default().set("server.auth.type", "none").set("server.auth.apiKey", ""),
    ];
    for (i, r) in render_all(&fixed).into_iter().enumerate() {
        if let Err(e) = r {
            panic!("control #{i} ({:?}) refused: {e}", fixed[i].args());
        }
    }
}

/// There is no fallback password, ever.
#[test]
fn no_default_password_anywhere() {
    let values = std::fs::read_to_string(certctl_scenarios::modes::chart_dir().join("values.yaml")).unwrap();
    assert!(!values.to_lowercase().contains("changeme"));
    let templates = certctl_scenarios::modes::chart_dir().join("templates");
    for entry in std::fs::read_dir(templates).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.to_lowercase().contains("changeme"), "{} has a fallback password", path.display());
    }
}
