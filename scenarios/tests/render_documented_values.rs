//! Every value documented in chart/values.yaml is used by a template (an upstream defect:
//! documented keys nothing read). Each leaf is changed on its own; it is used when the
//! render changes, or when a template (not the values schema) reacts with a refusal.

mod support;

use certctl_scenarios::modes::{chart_dir, Mode};
use certctl_scenarios::render::{Render, RenderError, Rendered};
use serde_json::{json, Map, Value};
use support::render_all;

/// A render context in which a leaf can take effect.
struct Base {
    name: &'static str,
    mode: Mode,
    extra: Vec<(&'static str, Value)>,
}

fn bases() -> Vec<Base> {
    let wide = || vec![("agent.kind", json!("Deployment")), ("ingress.enabled", json!(true))];
    vec![
        Base { name: "ha+", mode: Mode::Ha, extra: wide() },
        Base { name: "external-db+", mode: Mode::ExternalDb, extra: wide() },
        Base {
            name: "external-db via Secret",
            mode: Mode::ExternalDb,
            extra: vec![("externalDatabase.url", json!("")), ("externalDatabase.existingSecret", json!("db"))],
        },
        Base { name: "cert-manager+", mode: Mode::CertManager, extra: wide() },
        Base {
            name: "external-db by address, policy on",
            mode: Mode::ExternalDb,
            extra: vec![
                ("externalDatabase.url", json!("postgres://certctl:pw@192.0.2.10:5432/certctl?sslmode=disable")),
                ("networkPolicy.enabled", json!(true)),
            ],
        },
        Base {
            name: "backup on",
            mode: Mode::Default,
            extra: vec![("backup.enabled", json!(true)), ("backup.sink.existingClaim", json!("backups"))],
        },
        Base {
            name: "agents keeping their identity",
            mode: Mode::Default,
            extra: vec![("agent.kind", json!("StatefulSet")), ("agent.persistence.enabled", json!(true))],
        },
        Base {
            name: "Secrets target behind the agent policy",
            mode: Mode::Default,
            extra: vec![
                ("kubernetesSecrets.enabled", json!(true)),
                ("kubernetesSecrets.namespaces", json!(["apps"])),
                ("kubernetesSecrets.apiServer.cidrs", json!(["10.96.0.1/32"])),
                ("networkPolicy.enabled", json!(true)),
                ("networkPolicy.agent.enabled", json!(true)),
            ],
        },
        Base {
            name: "baseline storage",
            mode: Mode::Default,
            extra: vec![("podSecurity.level", json!("baseline")), ("postgresql.volumePermissions.enabled", json!(true))],
        },
    ]
}

fn load_yaml(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap()
}

fn merge(into: &mut Value, over: &Value) {
    match (into, over) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

fn set_path(root: &mut Value, path: &str, v: Value) {
    let mut cur = root;
    for k in path.split('.') {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        cur = cur.as_object_mut().unwrap().entry(k).or_insert(Value::Null);
    }
    *cur = v;
}

fn get_path<'a>(root: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(root, |v, k| &v[k])
}

/// Dotted paths of every leaf: scalars, nulls, lists and empty maps.
fn leaves(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                leaves(child, &p, out);
            }
        }
        _ => out.push(prefix.to_owned()),
    }
}

/// A different, schema-valid value for a leaf, given its effective value.
fn mutate(path: &str, current: &Value) -> Value {
    let last = path.rsplit('.').next().unwrap();
    match (last, current) {
        (_, Value::Bool(b)) => json!(!b),
        (_, Value::Number(n)) => json!(n.as_i64().unwrap_or(0) + 1),
        (_, Value::Null) => json!(1),
        ("pullPolicy", _) => json!(if current == "Always" { "Never" } else { "Always" }),
        ("kind", Value::String(s)) if s == "DaemonSet" || s == "Deployment" => {
            json!(if s == "DaemonSet" { "Deployment" } else { "DaemonSet" })
        }
        ("kind", Value::String(s)) if s.ends_with("Issuer") => {
            json!(if s == "Issuer" { "ClusterIssuer" } else { "Issuer" })
        }
        ("level", _) if path == "podSecurity.level" => json!(if current == "restricted" { "baseline" } else { "restricted" }),
        ("level", _) => json!(if current == "debug" { "info" } else { "debug" }),
        ("format", _) => json!(if current == "text" { "json" } else { "text" }),
        ("type", _) if path.ends_with("auth.type") => {
            json!(if current == "none" { "api-key" } else { "none" })
        }
        ("type", _) => json!(if current == "Unconfined" { "RuntimeDefault" } else { "Unconfined" }),
        ("duration" | "renewBefore", _) => json!("721h"),
        ("maxUnavailable", _) => json!(1),
        (_, Value::String(s)) if s.is_empty() => json!("mutated"),
        (_, Value::String(s)) => json!(format!("{s}-m")),
        ("drop", _) => json!(["ALL", "NET_RAW"]),
        ("hosts", _) => {
            json!([{"host": "m.example.com", "paths": [{"path": "/m", "pathType": "Exact"}]}])
        }
        ("tls", _) => json!([{"secretName": "m", "hosts": ["m.example.com"]}]),
        ("dnsNames", _) => json!(["m.example.com"]),
        ("tolerations", _) => json!([{"key": "m", "operator": "Exists"}]),
        ("imagePullSecrets", _) => json!([{"name": "m"}]),
        ("extraIngress" | "extraEgress", _) => json!([{"ports": [{"port": 1}]}]),
        ("cidrs", _) => json!(["10.9.9.0/24"]),
        ("ports", _) => json!([8443]),
        ("namespaces", _) => json!(["mutated"]),
        ("relabelings", _) => json!([{"action": "keep", "regex": "m"}]),
        ("env", _) => json!({"MUTATED": "x"}),
        ("affinity", _) => json!({"nodeAffinity": {}}),
        ("topologySpreadConstraints", _) => {
            json!([{"maxSkew": 2, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule"}])
        }
        ("tlsConfig", _) => json!({"insecureSkipVerify": true}),
        ("resources", _) => json!({"limits": {"cpu": "1"}}),
        (_, Value::Object(_)) => json!({"m.example.com/x": "y"}),
        (_, other) => panic!("{path}: no mutation rule for {other}"),
    }
}

enum Outcome {
    Rendered(String),
    TemplateRefused,
    SchemaRefused(String),
}

fn outcome(r: Result<Rendered, RenderError>) -> Outcome {
    match r {
        Ok(r) => Outcome::Rendered(r.yaml),
        Err(e) => match e.helm_stderr() {
            Some(s) if s.contains("values don't meet the specifications of the schema") => Outcome::SchemaRefused(s.to_owned()),
            Some(s) if s.contains("execution error") => Outcome::TemplateRefused,
            _ => panic!("helm failed unexpectedly: {e}"),
        },
    }
}

#[test]
fn every_documented_value_is_used_by_a_template() {
    let defaults = load_yaml(&chart_dir().join("values.yaml"));
    let mut paths = Vec::new();
    leaves(&defaults, "", &mut paths);
    assert!(paths.len() > 80, "values.yaml leaves: {}", paths.len());

    let bases = bases();
    let base_render = |b: &Base| b.extra.iter().fold(Render::mode(b.mode), |r, (k, v)| r.set_json(k, v));
    let effective: Vec<Value> = bases
        .iter()
        .map(|b| {
            let mut v = defaults.clone();
            merge(&mut v, &load_yaml(&b.mode.values_file()));
            for (k, x) in &b.extra {
                set_path(&mut v, k, x.clone());
            }
            v
        })
        .collect();

    let baselines: Vec<String> = render_all(&bases.iter().map(base_render).collect::<Vec<_>>())
        .into_iter()
        .zip(&bases)
        .map(|(r, b)| match outcome(r) {
            Outcome::Rendered(y) => y,
            _ => panic!("base {} does not render", b.name),
        })
        .collect();

    // The first base settles most leaves; only the rest are tried in the other bases.
    // Each round's renders run concurrently.
    let mut used = vec![false; paths.len()];
    let mut schema_refusals = vec![Vec::new(); paths.len()];
    for (b, (eff, baseline)) in bases.iter().zip(effective.iter().zip(&baselines)) {
        let open: Vec<usize> = (0..paths.len()).filter(|&i| !used[i]).collect();
        let renders: Vec<Render> =
            open.iter().map(|&i| base_render(b).set_json(&paths[i], &mutate(&paths[i], get_path(eff, &paths[i])))).collect();
        for (&i, r) in open.iter().zip(render_all(&renders)) {
            match outcome(r) {
                Outcome::Rendered(y) => used[i] = y != *baseline,
                Outcome::TemplateRefused => used[i] = true,
                Outcome::SchemaRefused(s) => schema_refusals[i].push(format!("[{}] {s}", b.name)),
            }
        }
    }
    let unused: Vec<String> = paths
        .iter()
        .zip(&used)
        .zip(&schema_refusals)
        .filter(|((_, u), _)| !**u)
        .map(|((p, _), s)| if s.is_empty() { p.clone() } else { format!("{p} (mutation refused: {})", s.join(" | ")) })
        .collect();
    assert!(unused.is_empty(), "documented in values.yaml but changing them changes nothing:\n{}", unused.join("\n"));
}
