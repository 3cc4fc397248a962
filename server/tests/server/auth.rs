//! api-key auth: rotated keys, removed keys, permissions.

use crate::support::{base_env, set, ServerProcess, TestPki};

const METRICS: &str = "/api/v1/metrics/prometheus";

async fn get(http: &reqwest::Client, server: &ServerProcess, key: Option<&str>) -> reqwest::Response {
    let mut req = http.get(server.url(METRICS));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn rotated_keys_both_work_removed_key_is_refused_and_scopes_are_enforced() {
    let pki = TestPki::new();
    let http = pki.http();
    let mut env = base_env(&pki, &format!("postgres://u:p@127.0.0.1:{}/db", crate::support::free_port()));
    set(&mut env, "CERTCTL_AUTH_SECRET", "key-old, key-new");
    set(
        &mut env,
        "CERTCTL_AUTH_SCOPED_KEYS",
        "agent-only=agent.register,agent.heartbeat,agent.job.poll,agent.csr.submit;scrape=metrics.read",
    );
    let server = ServerProcess::spawn(&env);
    server.wait_listening(&http).await;

    for key in ["key-old", "key-new", "scrape"] {
        let r = get(&http, &server, Some(key)).await;
        assert_eq!(r.status(), 200, "{key} must read metrics");
        let body = r.text().await.unwrap();
        assert!(body.contains("certctl_db_pool_max_connections"), "{body}");
    }

    let r = get(&http, &server, Some("agent-only")).await;
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "forbidden");
    assert!(body["error"]["message"].as_str().unwrap().contains("metrics.read"), "{body}");

    for key in [None, Some("never-issued")] {
        let r = get(&http, &server, key).await;
        assert_eq!(r.status(), 401, "{key:?}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"certctl\"");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    drop(server);

    // Rotation finished: key-old removed from the list.
    set(&mut env, "CERTCTL_AUTH_SECRET", "key-new");
    set(&mut env, "CERTCTL_SERVER_PORT", &crate::support::free_port().to_string());
    let server = ServerProcess::spawn(&env);
    server.wait_listening(&http).await;
    assert_eq!(get(&http, &server, Some("key-old")).await.status(), 401, "removed key refused");
    assert_eq!(get(&http, &server, Some("key-new")).await.status(), 200);
}

#[tokio::test]
async fn the_full_key_can_do_everything_the_agent_and_servicemonitor_need() {
    // Upstream defect 3: the chart's single key lacked agent permissions. Ours holds all.
    let principal = certctl_server::auth::Principal::all();
    for p in certctl_server::auth::Permission::ALL {
        assert!(principal.has(p), "{p}");
    }
}
