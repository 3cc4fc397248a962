//! NetworkPolicy per mode: each component gets exactly the ingress and egress it needs.
//! The external database's egress comes from its URL when that names an address, or from
//! networkPolicy.externalDatabase (the DNS-name and Secret cases are refusals, asserted in
//! render_refusals).

mod support;

use certctl_scenarios::modes::Mode;
use certctl_scenarios::render::{Render, Rendered};
use serde_json::{json, Value};
use support::render_all;

const F: &str = "c-certctl";

fn selector(component: &str) -> Value {
    json!({"matchLabels": {"app.kubernetes.io/name": "certctl", "app.kubernetes.io/instance": "c", "app.kubernetes.io/component": component}})
}

fn dns() -> Value {
    json!({"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]})
}

fn to_pods(component: &str, port: u16) -> Value {
    json!({"to": [{"podSelector": selector(component)}], "ports": [{"protocol": "TCP", "port": port}]})
}

fn to_block(cidr: &str, port: u16) -> Value {
    json!({"to": [{"ipBlock": {"cidr": cidr}}], "ports": [{"protocol": "TCP", "port": port}]})
}

fn policy<'a>(r: &'a Rendered, name: &str) -> &'a Value {
    &r.expect("NetworkPolicy", &format!("{F}-{name}")).0["spec"]
}

fn agents_on_api_port() -> Value {
    json!({"from": [{"podSelector": selector("agent")}], "ports": [{"protocol": "TCP", "port": 8443}]})
}

fn renders(list: &[Render]) -> Vec<Rendered> {
    render_all(list).into_iter().enumerate().map(|(i, r)| r.unwrap_or_else(|e| panic!("render #{i} ({:?}): {e}", list[i].args()))).collect()
}

/// Bundled database (default, cert-manager and HA modes): the server takes only agents and
/// reaches only DNS and PostgreSQL; cert-manager adds nothing (it writes a Secret through the
/// API server, never talks to the pods).
#[test]
fn bundled_modes_allow_agents_in_and_postgres_out() {
    let list: Vec<Render> =
        [Mode::Default, Mode::CertManager, Mode::Ha].into_iter().map(|m| Render::mode(m).set("networkPolicy.enabled", "true")).collect();
    for (mode, r) in [Mode::Default, Mode::CertManager, Mode::Ha].into_iter().zip(renders(&list)) {
        let server = policy(&r, "server");
        assert_eq!(server["podSelector"], selector("server"), "{mode}");
        assert_eq!(server["policyTypes"], json!(["Ingress", "Egress"]), "{mode}");
        assert_eq!(server["ingress"], json!([agents_on_api_port()]), "{mode}");
        assert_eq!(server["egress"], json!([dns(), to_pods("postgresql", 5432)]), "{mode}");
        let policies: Vec<String> = r.of_kind("NetworkPolicy").map(|o| o.name().to_owned()).collect();
        assert_eq!(policies, vec![format!("{F}-server")], "{mode}: the sub-policies are opt-in");
    }
}

/// External database: egress derived from an IPv4 or IPv6 URL (with its port), or taken
/// from networkPolicy.externalDatabase, which also overrides a derived address.
#[test]
fn external_database_egress_follows_the_url_or_the_values() {
    let ext = |url: &str| Render::mode(Mode::ExternalDb).set("networkPolicy.enabled", "true").set("externalDatabase.url", url);
    let cases: Vec<(&str, Render, Vec<Value>)> = vec![
        ("IPv4, default port", ext("postgres://u:p@172.18.0.9/certctl?sslmode=disable"), vec![to_block("172.18.0.9/32", 5432)]),
        ("IPv4 with port", ext("postgres://u:p@10.1.2.3:6432/certctl"), vec![to_block("10.1.2.3/32", 6432)]),
        ("IPv6 with port", ext("postgres://u:p@[fd00::5]:5433/certctl"), vec![to_block("fd00::5/128", 5433)]),
        (
            "DNS name with cidrs and port",
            ext("postgres://u:p@db.example.com/certctl")
                .set_json("networkPolicy.externalDatabase.cidrs", &json!(["10.0.0.0/28", "10.0.1.0/28"]))
                .set("networkPolicy.externalDatabase.port", "6543"),
            vec![to_block("10.0.0.0/28", 6543), to_block("10.0.1.0/28", 6543)],
        ),
        (
            "cidrs replace a derived address",
            ext("postgres://u:p@10.1.2.3:6432/certctl").set_json("networkPolicy.externalDatabase.cidrs", &json!(["10.1.2.0/24"])),
            vec![to_block("10.1.2.0/24", 6432)],
        ),
        (
            "URL in a Secret with cidrs",
            Render::mode(Mode::ExternalDb)
                .set("networkPolicy.enabled", "true")
                .set("externalDatabase.url", "")
                .set("externalDatabase.existingSecret", "db")
                .set_json("networkPolicy.externalDatabase.cidrs", &json!(["192.0.2.10/32"])),
            vec![to_block("192.0.2.10/32", 5432)],
        ),
    ];
    let list: Vec<Render> = cases.iter().map(|(_, r, _)| r.clone()).collect();
    for ((what, _, db), r) in cases.iter().zip(renders(&list)) {
        let server = policy(&r, "server");
        let mut want = vec![dns()];
        want.extend(db.iter().cloned());
        assert_eq!(server["egress"], json!(want), "{what}");
        assert_eq!(server["ingress"], json!([agents_on_api_port()]), "{what}");
        assert!(r.get("NetworkPolicy", &format!("{F}-postgres")).is_none(), "{what}: no bundled database, no policy for it");
    }
}

/// Agents serve nothing and reach only DNS and the server's API port; the bundled
/// PostgreSQL admits the server, plus the backup job when there is one; the backup job
/// reaches only DNS and the database.
#[test]
fn agent_postgres_and_backup_get_exactly_what_they_need() {
    let base = Render::mode(Mode::Ha).set("networkPolicy.agent.enabled", "true").set("networkPolicy.postgresql.enabled", "true");
    let backup =
        |r: Render| r.set("backup.enabled", "true").set("backup.sink.existingClaim", "b").set("server.database.maxConnections", "24");
    let list = vec![
        base.clone(),
        backup(base.clone()),
        backup(
            Render::mode(Mode::ExternalDb)
                .set("networkPolicy.enabled", "true")
                .set("externalDatabase.url", "postgres://u:p@10.9.0.7:5432/db"),
        ),
        base.clone().set("server.port", "9443"),
    ];
    let r = renders(&list);

    let agent = policy(&r[0], "agent");
    assert_eq!(agent["podSelector"], selector("agent"));
    assert_eq!(agent["policyTypes"], json!(["Ingress", "Egress"]));
    assert!(agent.get("ingress").is_none(), "agents take no ingress at all: {agent}");
    assert_eq!(agent["egress"], json!([dns(), to_pods("server", 8443)]));
    assert_eq!(policy(&r[3], "agent")["egress"], json!([dns(), to_pods("server", 9443)]), "the agent follows server.port");
    assert_eq!(policy(&r[3], "server")["ingress"][0]["ports"], json!([{"protocol": "TCP", "port": 9443}]));

    let pg_from = |r: &Rendered| policy(r, "postgres")["ingress"].clone();
    assert_eq!(pg_from(&r[0]), json!([{"from": [{"podSelector": selector("server")}], "ports": [{"protocol": "TCP", "port": 5432}]}]));
    assert_eq!(
        pg_from(&r[1]),
        json!([{"from": [{"podSelector": selector("server")}, {"podSelector": selector("backup")}], "ports": [{"protocol": "TCP", "port": 5432}]}])
    );
    assert!(r[0].get("NetworkPolicy", &format!("{F}-backup")).is_none());

    for (what, r, db) in [("bundled", &r[1], to_pods("postgresql", 5432)), ("external", &r[2], to_block("10.9.0.7/32", 5432))] {
        let b = policy(r, "backup");
        assert_eq!(b["podSelector"], selector("backup"), "{what}");
        assert_eq!(b["policyTypes"], json!(["Ingress", "Egress"]), "{what}");
        assert!(b.get("ingress").is_none(), "{what}: the backup job takes no ingress");
        assert_eq!(b["egress"], json!([dns(), db]), "{what}");
        // The policy selects the pods the CronJob makes.
        let labels = &r.expect("CronJob", &format!("{F}-backup")).0["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"];
        for (k, v) in b["podSelector"]["matchLabels"].as_object().unwrap() {
            assert_eq!(&labels[k], v, "{what}: backup pods lack {k}");
        }
    }
}
