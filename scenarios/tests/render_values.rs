//! Values behaviour: values.schema.json refusals, env maps and lists, agent identity,
//! image overrides, wiring of database, TLS, PDB, NetworkPolicy and ServiceMonitor.

mod support;

use certctl_scenarios::modes::Mode;
use certctl_scenarios::render::Render;
use serde_json::{json, Value};
use support::{env_of, render, render_all};

const F: &str = "c-certctl";

#[test]
fn values_schema_refuses_wrong_types_and_unknown_keys() {
    let cases: Vec<(&str, Render, &str)> = vec![
        ("string replicas", Render::mode(Mode::Default).set("server.replicas", "three"), "/server/replicas"),
        ("string port", Render::mode(Mode::Default).set_json("server.port", &json!("8443")), "/server/port"),
        ("bool as string", Render::mode(Mode::Default).set_json("agent.enabled", &json!("yes")), "/agent/enabled"),
        ("agent kind", Render::mode(Mode::Default).set("agent.kind", "Job"), "/agent/kind"),
        ("zero pool", Render::mode(Mode::Default).set("server.database.maxConnections", "0"), "maxConnections"),
        ("unknown top-level key", Render::mode(Mode::Default).set("serverr.replicas", "1"), "serverr"),
        ("unknown nested key", Render::mode(Mode::Default).set("server.tls.existingSecrett", "x"), "existingSecrett"),
        ("env of wrong shape", Render::mode(Mode::Default).set_json("server.env", &json!("A=1")), "/server/env"),
        ("log format", Render::mode(Mode::Default).set("server.log.format", "xml"), "/server/log/format"),
        ("pull policy", Render::mode(Mode::Default).set("server.image.pullPolicy", "Sometimes"), "pullPolicy"),
    ];
    let renders: Vec<Render> = cases.iter().map(|(_, r, _)| r.clone()).collect();
    for ((what, _, key), result) in cases.iter().zip(render_all(&renders)) {
        let err = match result {
            Ok(_) => panic!("{what}: accepted"),
            Err(e) => e,
        };
        let stderr = err.helm_stderr().unwrap_or_else(|| panic!("{what}: {err}"));
        assert!(stderr.contains("values don't meet the specifications of the schema"), "{what}: {stderr}");
        assert!(stderr.contains(key), "{what}: message lacks {key}: {stderr}");
    }
}

#[test]
fn extra_env_works_as_a_map_and_as_a_list() {
    let results = render_all(&[
        Render::mode(Mode::Default)
            .set_json("server.env", &json!({"B_VAR": "two", "A_VAR": 1, "FROM": {"secretKeyRef": {"name": "s", "key": "k"}}}))
            .set_json("agent.env", &json!({"AGENT_EXTRA": true})),
        Render::mode(Mode::Default)
            .set_json(
                "server.env",
                &json!([{"name": "L", "value": "x"}, {"name": "P", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]),
            )
            .set_json("agent.env", &json!([{"name": "AGENT_L", "value": "y"}])),
    ]);
    let map = results[0].as_ref().unwrap();
    let server = env_of(map.expect("Deployment", &format!("{F}-server")).container("server").unwrap());
    let tail: Vec<_> = server.iter().rev().take(3).rev().cloned().collect();
    assert_eq!(
        tail,
        vec![
            ("A_VAR".to_owned(), json!("1")),
            ("B_VAR".to_owned(), json!("two")),
            ("FROM".to_owned(), json!({"secretKeyRef": {"name": "s", "key": "k"}})),
        ]
    );
    let agent = env_of(map.expect("DaemonSet", &format!("{F}-agent")).container("agent").unwrap());
    assert!(agent.contains(&("AGENT_EXTRA".to_owned(), json!("true"))), "{agent:?}");

    let list = results[1].as_ref().unwrap();
    let server = env_of(list.expect("Deployment", &format!("{F}-server")).container("server").unwrap());
    assert!(server.contains(&("L".to_owned(), json!("x"))), "{server:?}");
    assert!(server.contains(&("P".to_owned(), json!({"fieldRef": {"fieldPath": "spec.nodeName"}}))));
    let agent = env_of(list.expect("DaemonSet", &format!("{F}-agent")).container("agent").unwrap());
    assert!(agent.contains(&("AGENT_L".to_owned(), json!("y"))), "{agent:?}");
}

#[test]
fn server_env_is_wired_per_mode() {
    let results = render_all(&[Render::mode(Mode::Default), Render::mode(Mode::ExternalDb)]);
    let bundled = results[0].as_ref().unwrap();
    let cm = bundled.expect("ConfigMap", &format!("{F}-server"));
    let d = bundled.expect("Deployment", &format!("{F}-server"));
    let c = d.container("server").unwrap();
    assert_eq!(c["envFrom"][0]["configMapRef"]["name"], format!("{F}-server"));
    assert_eq!(
        cm.at("/data/CERTCTL_DATABASE_URL").unwrap(),
        &json!(format!("postgres://certctl@{F}-postgres:5432/certctl?sslmode=disable"))
    );
    assert_eq!(cm.at("/data/CERTCTL_SERVER_TLS_CERT_PATH").unwrap(), "/etc/certctl/tls/tls.crt");
    assert_eq!(cm.at("/data/CERTCTL_SERVER_TLS_KEY_PATH").unwrap(), "/etc/certctl/tls/tls.key");
    assert_eq!(cm.at("/data/CERTCTL_SERVER_PORT").unwrap(), "8443");
    assert_eq!(cm.at("/data/CERTCTL_AUTH_TYPE").unwrap(), "api-key");
    assert_eq!(cm.at("/data/CERTCTL_LOG_FORMAT").unwrap(), "json");
    let env = env_of(c);
    let names: Vec<&str> = env.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["CERTCTL_DATABASE_PASSWORD", "CERTCTL_AUTH_SECRET"]);
    assert_eq!(env[0].1, json!({"secretKeyRef": {"name": format!("{F}-postgres"), "key": "password"}}));
    assert_eq!(env[1].1, json!({"secretKeyRef": {"name": format!("{F}-server"), "key": "api-keys"}}));
    let volume = &d.pod_spec().unwrap()["volumes"][0];
    assert_eq!(volume["secret"]["secretName"], "scenario-server-tls");
    assert_eq!(c["volumeMounts"][0]["mountPath"], "/etc/certctl/tls");
    assert_eq!(c["volumeMounts"][0]["readOnly"], true);
    assert_eq!(c["livenessProbe"]["httpGet"], json!({"path": "/health", "port": "https", "scheme": "HTTPS"}));
    assert_eq!(c["readinessProbe"]["httpGet"], json!({"path": "/ready", "port": "https", "scheme": "HTTPS"}));

    let external = results[1].as_ref().unwrap();
    let c = external.expect("Deployment", &format!("{F}-server")).container("server").unwrap().clone();
    let env = env_of(&c);
    let names: Vec<&str> = env.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["CERTCTL_DATABASE_URL", "CERTCTL_AUTH_SECRET"], "external mode renders no password env");
    assert!(external.expect("ConfigMap", &format!("{F}-server")).at("/data/CERTCTL_DATABASE_URL").is_none());
}

#[test]
fn max_connections_reach_the_server_env() {
    let r = render(&Render::mode(Mode::Default).set("server.database.maxConnections", "7"));
    assert_eq!(r.expect("ConfigMap", &format!("{F}-server")).at("/data/CERTCTL_DATABASE_MAX_CONNS").unwrap(), "7");
    let d = r.expect("Deployment", &format!("{F}-server"));
    assert_eq!(d.container("server").unwrap()["envFrom"][0]["configMapRef"]["name"], format!("{F}-server"));
    let default = render(&Render::mode(Mode::Default));
    assert_eq!(default.expect("ConfigMap", &format!("{F}-server")).at("/data/CERTCTL_DATABASE_MAX_CONNS").unwrap(), "25");
}

#[test]
fn agent_gets_identity_key_server_url_and_ca() {
    let r = render(&Render::mode(Mode::Default).namespace("pki"));
    let ds = r.expect("DaemonSet", &format!("{F}-agent"));
    let c = ds.container("agent").unwrap();
    let env = env_of(c);
    assert!(env.contains(&("CERTCTL_AGENT_NAME".to_owned(), json!({"fieldRef": {"fieldPath": "metadata.name"}}))), "{env:?}");
    assert!(env.contains(&("CERTCTL_API_KEY".to_owned(), json!({"secretKeyRef": {"name": format!("{F}-server"), "key": "api-key"}}))));
    let cm = r.expect("ConfigMap", &format!("{F}-agent"));
    assert_eq!(cm.at("/data/CERTCTL_SERVER_URL").unwrap(), &json!(format!("https://{F}-server.pki.svc:8443")));
    assert_eq!(cm.at("/data/CERTCTL_KEY_DIR").unwrap(), "/var/lib/certctl/keys");
    let ca_path = cm.at("/data/CERTCTL_SERVER_CA_BUNDLE_PATH").unwrap().as_str().unwrap();
    let mounts = c["volumeMounts"].as_array().unwrap();
    let ca_mount = mounts.iter().find(|m| m["name"] == "server-ca").unwrap();
    assert_eq!(ca_path, format!("{}/ca.crt", ca_mount["mountPath"].as_str().unwrap()));
    assert_eq!(ca_mount["readOnly"], true);
    let vols = ds.pod_spec().unwrap()["volumes"].as_array().unwrap();
    let ca_vol = vols.iter().find(|v| v["name"] == "server-ca").unwrap();
    assert_eq!(ca_vol["secret"], json!({"secretName": "scenario-server-tls", "items": [{"key": "ca.crt", "path": "ca.crt"}]}));
    let keys = vols.iter().find(|v| v["name"] == "keys").unwrap();
    assert_eq!(keys["emptyDir"], json!({}));
    // The volume holds the key directory's parent, so the agent owns the 0700 key directory.
    assert!(mounts.iter().any(|m| m["name"] == "keys" && m["mountPath"] == "/var/lib/certctl"));
    assert_eq!(c["livenessProbe"]["exec"]["command"], json!(["certctl-agent", "health"]));
    // Agents use the first key of a rotation list; the server accepts all of them.
    let r = render(&Render::mode(Mode::Default).set("server.auth.apiKey", "new\\,old"));
    let s = r.expect("Secret", &format!("{F}-server"));
    let b64 = |v: &Value| String::from_utf8(decode_b64(v.as_str().unwrap())).unwrap();
    assert_eq!(b64(s.at("/data/api-keys").unwrap()), "new,old");
    assert_eq!(b64(s.at("/data/api-key").unwrap()), "new");
}

fn decode_b64(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c).expect("base64") as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    out
}

#[test]
fn images_are_overridable_for_server_agent_and_postgres() {
    let r = render(
        &Render::mode(Mode::Default)
            .set("server.image.repository", "localhost/certctl-server")
            .set("server.image.tag", "dev1")
            .set("server.image.pullPolicy", "Never")
            .set("agent.image.repository", "localhost/certctl-agent")
            .set("agent.image.tag", "dev2")
            .set("agent.image.pullPolicy", "Never")
            .set("postgresql.image.repository", "localhost/postgres")
            .set("postgresql.image.tag", "16-offline")
            .set("postgresql.image.pullPolicy", "Never"),
    );
    for (kind, name, container, image) in [
        ("Deployment", "server", "server", "localhost/certctl-server:dev1"),
        ("DaemonSet", "agent", "agent", "localhost/certctl-agent:dev2"),
        ("StatefulSet", "postgres", "postgres", "localhost/postgres:16-offline"),
    ] {
        let c = r.expect(kind, &format!("{F}-{name}")).container(container).unwrap().clone();
        assert_eq!(c["image"], image);
        assert_eq!(c["imagePullPolicy"], "Never");
    }
    let d = render(&Render::mode(Mode::Default));
    let c = d.expect("Deployment", &format!("{F}-server")).container("server").unwrap().clone();
    assert!(c["image"].as_str().unwrap().ends_with(":2.1.0"), "tag defaults to appVersion: {}", c["image"]);
    let pg = d.expect("StatefulSet", &format!("{F}-postgres")).container("postgres").unwrap().clone();
    assert_eq!(pg["image"], "postgres:16-alpine");
}

#[test]
fn postgres_follows_the_official_image_contract() {
    let r = render(&Render::mode(Mode::Default).set("postgresql.storage.size", "2Gi"));
    let sts = r.expect("StatefulSet", &format!("{F}-postgres"));
    let c = sts.container("postgres").unwrap();
    let env = env_of(c);
    let get = |n: &str| env.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    assert_eq!(get("POSTGRES_USER"), Some(json!("certctl")));
    assert_eq!(get("POSTGRES_DB"), Some(json!("certctl")));
    assert_eq!(get("POSTGRES_PASSWORD"), Some(json!({"secretKeyRef": {"name": format!("{F}-postgres"), "key": "password"}})));
    assert!(get("PGDATA").unwrap().as_str().unwrap().starts_with("/var/lib/postgresql/data/"));
    assert_eq!(c["readinessProbe"]["exec"]["command"][0], "pg_isready");
    assert_eq!(c["livenessProbe"]["exec"]["command"][0], "pg_isready");
    let vct = &sts.at("/spec/volumeClaimTemplates/0").unwrap();
    assert_eq!(vct["spec"]["resources"]["requests"]["storage"], "2Gi");
    assert!(vct["spec"].get("storageClassName").is_none());
    assert_eq!(sts.at("/spec/serviceName").unwrap(), &json!(format!("{F}-postgres")));
}

#[test]
fn pdb_renders_only_when_enabled_and_replicated_with_exclusive_bounds() {
    let results = render_all(&[
        Render::mode(Mode::Ha).set("server.replicas", "1"),
        Render::mode(Mode::Ha).set("podDisruptionBudget.enabled", "false"),
        Render::mode(Mode::Ha),
        Render::mode(Mode::Ha).set("podDisruptionBudget.maxUnavailable", "1"),
        Render::mode(Mode::Ha).set("podDisruptionBudget.minAvailable", "50%"),
    ]);
    let pdbs: Vec<Option<Value>> =
        results.iter().map(|r| r.as_ref().unwrap().of_kind("PodDisruptionBudget").next().map(|o| o.0["spec"].clone())).collect();
    assert!(pdbs[0].is_none(), "replicas 1 must not get a PDB");
    assert!(pdbs[1].is_none(), "disabled must not get a PDB");
    let spec = pdbs[2].as_ref().unwrap();
    assert_eq!(spec["minAvailable"], 1);
    assert!(spec.get("maxUnavailable").is_none());
    assert_eq!(spec["selector"]["matchLabels"]["app.kubernetes.io/component"], "server");
    let spec = pdbs[3].as_ref().unwrap();
    assert_eq!(spec["maxUnavailable"], 1);
    assert!(spec.get("minAvailable").is_none(), "exclusive: {spec}");
    assert_eq!(pdbs[4].as_ref().unwrap()["minAvailable"], "50%");
}

#[test]
fn network_policy_admits_agents_and_allows_dns_and_bundled_postgres() {
    let results = render_all(&[
        Render::mode(Mode::Ha),
        Render::mode(Mode::ExternalDb)
            .set("networkPolicy.enabled", "true")
            .set_json("networkPolicy.externalDatabase.cidrs", &json!(["192.0.2.10/32"]))
            .set_json(
                "networkPolicy.extraEgress",
                &json!([{"to": [{"ipBlock": {"cidr": "198.51.100.0/24"}}], "ports": [{"protocol": "TCP", "port": 3128}]}]),
            )
            .set_json("networkPolicy.extraIngress", &json!([{"from": [{"namespaceSelector": {}}], "ports": [{"port": 8443}]}])),
        Render::mode(Mode::Ha).set("networkPolicy.postgresql.enabled", "true"),
    ]);
    let ha = results[0].as_ref().unwrap();
    let np = ha.expect("NetworkPolicy", &format!("{F}-server"));
    let spec = &np.0["spec"];
    assert_eq!(spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"], "server");
    assert_eq!(spec["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(spec["ingress"].as_array().unwrap().len(), 1);
    let from = &spec["ingress"][0]["from"][0]["podSelector"]["matchLabels"];
    assert_eq!(from["app.kubernetes.io/component"], "agent");
    assert_eq!(from["app.kubernetes.io/instance"], "c");
    assert_eq!(spec["ingress"][0]["ports"], json!([{"protocol": "TCP", "port": 8443}]));
    assert_eq!(spec["egress"][0]["ports"], json!([{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]));
    assert_eq!(spec["egress"][1]["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"], "postgresql");
    assert_eq!(spec["egress"][1]["ports"], json!([{"protocol": "TCP", "port": 5432}]));
    assert_eq!(spec["egress"].as_array().unwrap().len(), 2);

    let ext = results[1].as_ref().unwrap();
    let spec = &ext.expect("NetworkPolicy", &format!("{F}-server")).0["spec"];
    assert_eq!(spec["egress"].as_array().unwrap().len(), 3, "DNS + the external database + the extra rule, no bundled postgres");
    assert_eq!(spec["egress"][1]["to"][0]["ipBlock"]["cidr"], "192.0.2.10/32");
    assert_eq!(spec["egress"][2]["to"][0]["ipBlock"]["cidr"], "198.51.100.0/24");
    assert_eq!(spec["ingress"].as_array().unwrap().len(), 2);
    assert_eq!(spec["ingress"][1]["from"], json!([{"namespaceSelector": {}}]));

    let pg = results[2].as_ref().unwrap();
    let spec = &pg.expect("NetworkPolicy", &format!("{F}-postgres")).0["spec"];
    assert_eq!(spec["policyTypes"], json!(["Ingress"]));
    assert_eq!(spec["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"], "server");
}

#[test]
fn service_monitor_verifies_the_server_certificate_by_default() {
    let r = render(&Render::mode(Mode::Ha));
    let sm = r.expect("ServiceMonitor", &format!("{F}-server"));
    let ep = &sm.0["spec"]["endpoints"][0];
    assert_eq!(ep["scheme"], "https");
    assert_eq!(ep["path"], "/api/v1/metrics/prometheus");
    assert_eq!(ep["interval"], "30s");
    assert_eq!(ep["scrapeTimeout"], "10s");
    assert_eq!(
        ep["tlsConfig"],
        json!({"ca": {"secret": {"name": "scenario-server-tls", "key": "ca.crt"}}, "serverName": format!("{F}-server.certctl.svc")})
    );
    assert!(!r.yaml.contains("insecureSkipVerify"));
    assert_eq!(ep["bearerTokenSecret"], json!({"name": format!("{F}-server", ), "key": "api-key"}));
    assert_eq!(ep["port"], "https");
    let svc = r.expect("Service", &format!("{F}-server"));
    assert_eq!(svc.at("/spec/ports/0/name").unwrap(), "https");
}

#[test]
fn certificate_covers_the_service_names_and_feeds_server_and_agents() {
    let r = render(&Render::mode(Mode::CertManager).namespace("pki"));
    let cert = r.expect("Certificate", &format!("{F}-server-tls"));
    let spec = &cert.0["spec"];
    assert_eq!(spec["dnsNames"], json!([format!("{F}-server"), format!("{F}-server.pki"), format!("{F}-server.pki.svc")]));
    assert_eq!(spec["issuerRef"], json!({"name": "scenario-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}));
    let secret = spec["secretName"].as_str().unwrap();
    assert_eq!(secret, format!("{F}-server-tls"));
    let server = r.expect("Deployment", &format!("{F}-server"));
    assert_eq!(server.pod_spec().unwrap()["volumes"][0]["secret"]["secretName"], secret);
    let agent = r.expect("DaemonSet", &format!("{F}-agent"));
    let vols = agent.pod_spec().unwrap()["volumes"].as_array().unwrap().clone();
    assert!(vols.iter().any(|v| v["secret"]["secretName"] == secret));
}

#[test]
fn helm_lint_is_clean_for_every_mode() {
    let outputs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = Mode::ALL
            .into_iter()
            .map(|m| s.spawn(move || (m, certctl_scenarios::render::lint(support::helm(), &m.values_file()))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (mode, out) in outputs {
        let out = out.unwrap_or_else(|e| panic!("helm lint ({mode}): {e}"));
        assert!(out.contains("0 chart(s) failed"), "{mode}: {out}");
        assert!(!out.contains("[WARNING]") && !out.contains("[ERROR]"), "{mode}: {out}");
    }
}

#[test]
fn server_replicas_prefer_one_per_node_with_the_server_labels() {
    let own = json!([{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"x": "y"}}}]);
    let results = render_all(&[
        Render::mode(Mode::Ha),
        Render::mode(Mode::Ha).set_json("server.topologySpreadConstraints", &json!([])),
        Render::mode(Mode::Ha).set_json("server.topologySpreadConstraints", &own),
    ]);
    let spread: Vec<Option<Value>> = results
        .iter()
        .map(|r| {
            r.as_ref()
                .unwrap()
                .of_kind("Deployment")
                .find(|o| o.name().ends_with("-server"))
                .and_then(|o| o.pod_spec()?.get("topologySpreadConstraints").cloned())
        })
        .collect();
    let default = spread[0].as_ref().expect("the default spreads the servers");
    assert_eq!(default[0]["topologyKey"], "kubernetes.io/hostname", "{default}");
    assert_eq!(default[0]["whenUnsatisfiable"], "ScheduleAnyway", "a one-node cluster must still schedule every replica: {default}");
    assert_eq!(default[0]["labelSelector"]["matchLabels"]["app.kubernetes.io/component"], "server", "{default}");
    assert!(spread[1].is_none(), "[] must turn the spread off: {:?}", spread[1]);
    let theirs = spread[2].as_ref().unwrap();
    assert_eq!(theirs[0]["labelSelector"], json!({"matchLabels": {"x": "y"}}), "a constraint's own labelSelector is kept: {theirs}");
}
