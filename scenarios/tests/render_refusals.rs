//! Every template-time refusal of the spec, asserted by its message: each one tells the
//! operator exactly what to set.

mod support;

use certctl_scenarios::render::Render;
use serde_json::json;
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
        (
            "agent StatefulSet without persistence",
            receipts::default().set("agent.kind", "StatefulSet"),
            vec!["agent.kind=StatefulSet needs agent.persistence.enabled=true", "agent_credential_invalid", "--set agent.persistence.enabled=true"],
        ),
        (
            "Secrets target without namespaces",
            receipts::default().set("kubernetesSecrets.enabled", "true"),
            vec!["kubernetesSecrets.enabled=true needs kubernetesSecrets.namespaces", "create and patch", r#"--set-json 'kubernetesSecrets.namespaces=["apps"]'"#],
        ),
        (
            "Secrets target without agents",
            receipts::default()
                .set("kubernetesSecrets.enabled", "true")
                .set_json("kubernetesSecrets.namespaces", &json!(["apps"]))
                .set("agent.enabled", "false"),
            vec!["kubernetesSecrets.enabled=true needs agent.enabled=true", "hold the private keys"],
        ),
        (
            "Secrets target behind the agent policy, no cluster to look the API up in",
            receipts::default()
                .set("kubernetesSecrets.enabled", "true")
                .set_json("kubernetesSecrets.namespaces", &json!(["apps"]))
                .set("networkPolicy.enabled", "true")
                .set("networkPolicy.agent.enabled", "true"),
            vec!["egress to the Kubernetes API cannot be derived", "kubernetesSecrets.apiServer.cidrs", "endpointslices"],
        ),
        (
            "agent persistence on a DaemonSet",
            receipts::default().set("agent.persistence.enabled", "true"),
            vec!["agent.persistence.enabled=true needs --set agent.kind=StatefulSet", "a DaemonSet gives its pods new names"],
        ),
        (
            "agent persistence on a Deployment",
            receipts::default().set("agent.kind", "Deployment").set("agent.persistence.enabled", "true"),
            vec!["agent.persistence.enabled=true needs --set agent.kind=StatefulSet", "a Deployment gives its pods new names"],
        ),
        (
            "root init container under restricted",
            receipts::default().set("postgresql.volumePermissions.enabled", "true"),
            vec!["postgresql.volumePermissions.enabled=true", "root init container", "\"restricted\" forbids", "--set podSecurity.level=baseline"],
        ),
        (
            "root server under restricted",
            receipts::default().set("server.securityContext.runAsNonRoot", "false"),
            vec!["server.securityContext.runAsNonRoot must be true", "--set server.securityContext.runAsNonRoot=true", "podSecurity.level"],
        ),
        (
            "privilege escalation under restricted",
            receipts::default().set("agent.securityContext.allowPrivilegeEscalation", "true"),
            vec!["agent.securityContext.allowPrivilegeEscalation must be false", "--set agent.securityContext.allowPrivilegeEscalation=false"],
        ),
        (
            "uid 0 under restricted",
            receipts::default().set("postgresql.securityContext.runAsUser", "0"),
            vec!["postgresql.securityContext.runAsUser=0 runs as root"],
        ),
        (
            "a capability beyond baseline",
            receipts::default().set("podSecurity.level", "baseline").set_json("server.securityContext.capabilities.add", &json!(["SYS_ADMIN"])),
            vec!["server.securityContext.capabilities.add has SYS_ADMIN", "Pod Security \"baseline\""],
        ),
        (
            "no seccomp profile under baseline",
            receipts::default().set("podSecurity.level", "baseline").set("agent.securityContext.seccompProfile.type", "Unconfined"),
            vec!["agent.securityContext.seccompProfile.type=Unconfined", "--set agent.securityContext.seccompProfile.type=RuntimeDefault"],
        ),
        (
            "backup without a sink",
            receipts::default().set("backup.enabled", "true"),
            vec!["backup.enabled=true needs a sink", "--set backup.sink.existingClaim=CLAIM", "namespace certctl", "uid 999"],
        ),
        (
            "server pools past max_connections",
            receipts::default().set("server.replicas", "3").set("server.database.maxConnections", "40"),
            vec![
                "4 server pods (server.replicas=3 plus 1 a rolling update adds) x server.database.maxConnections=40 + 0 backup connection(s) = 160 > postgresql.maxConnections=100",
                "SQLSTATE 53300",
                "--set server.database.maxConnections=25",
                "--set postgresql.maxConnections=160",
            ],
        ),
        (
            "a backup connection past max_connections",
            receipts::ha().set("backup.enabled", "true").set("backup.sink.existingClaim", "b"),
            vec!["+ 1 backup connection(s) = 101 > postgresql.maxConnections=100", "--set server.database.maxConnections=24", "--set postgresql.maxConnections=101"],
        ),
        (
            "network policy for an external database by name",
            receipts::external_db().set("networkPolicy.enabled", "true"),
            vec![
                "externalDatabase.url's host \"h\" is a DNS name",
                "a NetworkPolicy matches addresses, not names",
                "--set-json 'networkPolicy.externalDatabase.cidrs=[\"10.0.0.5/32\"]'",
                "unless it is 5432",
            ],
        ),
        (
            "network policy for an external database in a Secret",
            receipts::external_db()
                .set("externalDatabase.url", "")
                .set("externalDatabase.existingSecret", "db")
                .set("networkPolicy.enabled", "true"),
            vec!["its URL is in Secret db, which the chart does not read", "networkPolicy.externalDatabase.cidrs"],
        ),
        (
            "network policy for a multi-host external database",
            receipts::external_db().set("externalDatabase.url", "postgres://u:p@10.0.0.1:5432\\,10.0.0.2:5433/db").set("networkPolicy.enabled", "true"),
            vec!["names several hosts", "networkPolicy.externalDatabase.cidrs"],
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
        receipts::default().set("postgresql.volumePermissions.enabled", "true").set("podSecurity.level", "baseline"),
        receipts::default().set("server.securityContext.runAsNonRoot", "false").set("podSecurity.level", "baseline"),
        receipts::default()
            .set("podSecurity.level", "privileged")
            .set_json("server.securityContext.capabilities.add", &json!(["SYS_ADMIN"])),
        receipts::default().set("backup.enabled", "true").set("backup.sink.existingClaim", "backups"),
        receipts::default().set("server.replicas", "3").set("server.database.maxConnections", "40").set("postgresql.maxConnections", "160"),
        receipts::default().set("server.replicas", "3").set("server.database.maxConnections", "25"),
        receipts::ha().set("backup.enabled", "true").set("backup.sink.existingClaim", "b").set("server.database.maxConnections", "24"),
        receipts::external_db()
            .set("networkPolicy.enabled", "true")
            .set_json("networkPolicy.externalDatabase.cidrs", &json!(["10.0.0.0/24"])),
        receipts::external_db().set("networkPolicy.enabled", "true").set("externalDatabase.url", "postgres://u:p@10.0.0.5:5432/db"),
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
