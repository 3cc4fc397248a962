//! Every rendered object, in every mode and every optional feature, checked field by field
//! against the Kubernetes schema: an unknown or misplaced field anywhere fails with its
//! path. Plus the securityContext split: each field at the scope the API accepts.

mod support;

use certctl_scenarios::crd::CrdSchemas;
use certctl_scenarios::modes::Mode;
use certctl_scenarios::render::{Object, Render, Rendered};
use certctl_scenarios::strict;
use serde_json::{json, Value};
use support::render_all;

const POD_SCOPE: [&str; 9] = [
    "runAsNonRoot",
    "runAsUser",
    "runAsGroup",
    "fsGroup",
    "fsGroupChangePolicy",
    "supplementalGroups",
    "seLinuxOptions",
    "seccompProfile",
    "sysctls",
];
const CONTAINER_SCOPE: [&str; 5] = ["readOnlyRootFilesystem", "allowPrivilegeEscalation", "capabilities", "privileged", "procMount"];

fn crds() -> CrdSchemas {
    CrdSchemas::from_cache().unwrap_or_else(|e| panic!("{e}"))
}

/// Every mode, and every optional feature switched on at least once.
fn variants() -> Vec<(String, Render)> {
    let mut v: Vec<(String, Render)> = Mode::ALL.into_iter().map(|m| (m.to_string(), Render::mode(m))).collect();
    v.push((
        "agent StatefulSet".into(),
        Render::mode(Mode::Default)
            .set("agent.kind", "StatefulSet")
            .set("agent.persistence.enabled", "true")
            .set("agent.persistence.storageClass", "local"),
    ));
    let everything = Render::mode(Mode::Ha)
        .set("agent.kind", "Deployment")
        .set("ingress.enabled", "true")
        .set("ingress.className", "nginx")
        .set_json("ingress.tls", &json!([{"hosts": ["certctl.example.com"], "secretName": "ingress-tls"}]))
        .set("kubernetesSecrets.enabled", "true")
        .set_json("kubernetesSecrets.namespaces", &json!(["apps", "web"]))
        .set_json("kubernetesSecrets.apiServer.cidrs", &json!(["10.96.0.1/32", "fd00::1/128"]))
        .set("networkPolicy.postgresql.enabled", "true")
        .set("networkPolicy.agent.enabled", "true")
        .set("backup.enabled", "true")
        .set("backup.sink.existingClaim", "backups")
        .set_json("backup.resources", &json!({"limits": {"memory": "256Mi"}}))
        .set("postgresql.maxConnections", "200")
        .set_json(
            "networkPolicy.extraIngress",
            &json!([{"from": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
                     "ports": [{"protocol": "TCP", "port": 8443}]}]),
        )
        .set_json("networkPolicy.extraEgress", &json!([{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": 5432}]}]))
        .set_json("monitoring.serviceMonitor.relabelings", &json!([{"action": "replace", "targetLabel": "team", "replacement": "pki"}]))
        .set_json("monitoring.serviceMonitor.labels", &json!({"release": "prom"}))
        .set_json("server.env", &json!({"EXTRA": "1", "FROM_SECRET": {"secretKeyRef": {"name": "s", "key": "k"}}}))
        .set_json("agent.env", &json!([{"name": "EXTRA", "value": "1"}]))
        .set_json("imagePullSecrets", &json!([{"name": "regcred"}]))
        .set_json("server.tolerations", &json!([{"key": "k", "operator": "Exists", "effect": "NoSchedule"}]))
        .set_json("server.nodeSelector", &json!({"kubernetes.io/os": "linux"}))
        .set_json(
            "server.affinity",
            &json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                 "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "server"}}}}]}}),
        )
        .set_json("server.securityContext.supplementalGroups", &json!([2000]))
        .set("server.securityContext.fsGroupChangePolicy", "OnRootMismatch")
        .set_json("agent.securityContext.seLinuxOptions", &json!({"level": "s0:c1,c2"}))
        .set("postgresql.storage.storageClass", "standard")
        .set_json("postgresql.resources", &json!({"requests": {"cpu": "100m", "memory": "256Mi"}}))
        .set_json("serviceAccount.annotations", &json!({"example.com/role": "certctl"}));
    v.push(("everything on".into(), everything));
    v.push((
        "external, policy and backup".into(),
        Render::mode(Mode::ExternalDb)
            .set("externalDatabase.url", "postgres://u:p@[fd00::7]:5433/db")
            .set("networkPolicy.enabled", "true")
            .set("backup.enabled", "true")
            .set("backup.sink.existingClaim", "backups"),
    ));
    v.push((
        "baseline storage".into(),
        Render::mode(Mode::Default).set("podSecurity.level", "baseline").set("postgresql.volumePermissions.enabled", "true"),
    ));
    v.push(("pdb maxUnavailable".into(), Render::mode(Mode::Ha).set("podDisruptionBudget.maxUnavailable", "1")));
    v.push(("auth none".into(), Render::mode(Mode::Default).set("server.auth.type", "none").set("server.auth.apiKey", "")));
    v.push((
        "external secret".into(),
        Render::mode(Mode::ExternalDb).set("externalDatabase.url", "").set("externalDatabase.existingSecret", "db"),
    ));
    v.push((
        "custom tlsConfig".into(),
        Render::mode(Mode::Ha).set_json(
            "monitoring.serviceMonitor.tlsConfig",
            &json!({"ca": {"configMap": {"name": "ca", "key": "ca.crt"}}, "serverName": "x.example"}),
        ),
    ));
    v
}

fn rendered_variants() -> Vec<(String, Rendered)> {
    let variants = variants();
    let renders: Vec<Render> = variants.iter().map(|(_, r)| r.clone()).collect();
    variants
        .into_iter()
        .zip(render_all(&renders))
        .map(|((label, _), r)| {
            let r = r.unwrap_or_else(|e| panic!("{label}: {e}"));
            (label, r)
        })
        .collect()
}

#[test]
fn every_rendered_object_matches_the_kubernetes_schema() {
    let crds = crds();
    let mut problems = Vec::new();
    let mut kinds = std::collections::BTreeSet::new();
    for (label, rendered) in rendered_variants() {
        for object in &rendered.objects {
            kinds.insert(object.kind().to_owned());
            problems.extend(strict::check(object, &crds).into_iter().map(|v| format!("[{label}] {v}")));
        }
    }
    assert!(problems.is_empty(), "schema violations:\n{}", problems.join("\n"));
    // Every kind the chart can render was checked at least once.
    for kind in [
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Secret",
        "Service",
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "Ingress",
        "Certificate",
        "ServiceMonitor",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "CronJob",
    ] {
        assert!(kinds.contains(kind), "{kind} never rendered, so never checked: {kinds:?}");
    }
}

/// Negative control on a real render: the same check fails when one container field is
/// moved to pod scope (the upstream defect), and when a CRD field is misspelt.
#[test]
fn the_check_catches_a_misplaced_field_in_a_real_render() {
    let crds = crds();
    let rendered = support::render(&Render::mode(Mode::CertManager));
    let mut server = rendered.expect("Deployment", "c-certctl-server").0.clone();
    server["spec"]["template"]["spec"]["securityContext"]["readOnlyRootFilesystem"] = json!(true);
    let v = strict::check(&Object(server), &crds);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].path, ".spec.template.spec.securityContext.readOnlyRootFilesystem");

    let mut cert = rendered.expect("Certificate", "c-certctl-server-tls").0.clone();
    cert["spec"]["dnsName"] = json!(["x"]);
    let v = strict::check(&Object(cert), &crds);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].path, ".spec.dnsName");
}

fn keys(v: &Value) -> Vec<String> {
    v.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
}

/// The one operator-facing map is split: pod fields on the pod, container fields on the
/// container, nothing lost, nothing duplicated.
#[test]
fn security_context_is_split_by_scope_for_every_workload() {
    let r = support::render(
        &Render::mode(Mode::Default)
            .set("agent.kind", "Deployment")
            .set_json("server.securityContext.supplementalGroups", &json!([2000]))
            .set("server.securityContext.privileged", "false"),
    );
    let values = |component: &str| -> Value {
        let text = std::fs::read_to_string(certctl_scenarios::modes::chart_dir().join("values.yaml")).unwrap();
        let v: Value = serde_yaml_ng::from_str(&text).unwrap();
        v[component]["securityContext"].clone()
    };
    for (kind, name, container, component, extra) in [
        ("Deployment", "c-certctl-server", "server", "server", vec!["supplementalGroups", "privileged"]),
        ("Deployment", "c-certctl-agent", "agent", "agent", vec![]),
        ("StatefulSet", "c-certctl-postgres", "postgres", "postgresql", vec![]),
    ] {
        let o = r.expect(kind, name);
        let pod = &o.pod_spec().unwrap()["securityContext"];
        let ctr = &o.container(container).unwrap()["securityContext"];
        for k in keys(pod) {
            assert!(POD_SCOPE.contains(&k.as_str()), "{kind}/{name}: {k} at pod scope");
        }
        for k in keys(ctr) {
            assert!(CONTAINER_SCOPE.contains(&k.as_str()), "{kind}/{name}: {k} at container scope");
        }
        let mut all: Vec<String> = keys(pod).into_iter().chain(keys(ctr)).collect();
        all.sort();
        let mut want: Vec<String> = keys(&values(component));
        want.extend(extra.iter().map(|s| (*s).to_owned()));
        want.sort();
        assert_eq!(all, want, "{kind}/{name}: fields lost or invented by the split");
        assert_eq!(ctr["readOnlyRootFilesystem"], true, "{kind}/{name}");
        assert_eq!(ctr["allowPrivilegeEscalation"], false, "{kind}/{name}");
        assert_eq!(ctr["capabilities"]["drop"], json!(["ALL"]), "{kind}/{name}");
        assert_eq!(pod["runAsNonRoot"], true, "{kind}/{name}");
    }
    let server = r.expect("Deployment", "c-certctl-server");
    assert_eq!(server.pod_spec().unwrap()["securityContext"]["runAsUser"], 1000);
    let pg = r.expect("StatefulSet", "c-certctl-postgres");
    assert_eq!(pg.pod_spec().unwrap()["securityContext"]["runAsUser"], 999);
    assert_eq!(pg.pod_spec().unwrap()["securityContext"]["fsGroup"], 999);
}

/// A key the API accepts at neither scope is refused by values.schema.json at install time.
#[test]
fn unknown_security_context_field_is_refused() {
    let err = Render::mode(Mode::Default).set("server.securityContext.readOnlyRootFS", "true").run(support::helm()).unwrap_err();
    let stderr = err.helm_stderr().expect("helm ran");
    assert!(stderr.contains("readOnlyRootFS"), "{stderr}");
}
