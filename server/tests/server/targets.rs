//! Secret targets through the real binary: a certificate may name a Secret only in a
//! namespace the server lists, each Secret belongs to one certificate, the agent's job
//! carries the target, and the agent's report on the write shows on the certificate and in
//! the metrics. The key never reaches the server, so no answer can carry it.

use serde_json::{json, Value};

use crate::support::{csr_for, start};

fn error_code(answer: &Value) -> &str {
    answer["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_target_is_refused_when_the_server_writes_no_secrets() {
    let (_db, _pki, api) = start(&[]).await;
    let (agent, _) = api.register("node-a").await;
    let body = json!({"common_name": "web.apps", "agent_id": agent, "target": {"namespace": "apps", "name": "web-tls"}});
    let (status, err) = api.post("/certificates", body).await;
    assert_eq!((status, error_code(&err)), (400, "target_disabled"), "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("CERTCTL_KUBERNETES_SECRETS_NAMESPACES"), "{err}");
    let (_, all) = api.get("/certificates").await;
    assert!(all["certificates"].as_array().unwrap().iter().all(|c| c["common_name"] != "web.apps"), "nothing was created: {all}");
}

#[tokio::test]
async fn targets_are_checked_unique_carried_to_the_agent_and_reported_back() {
    let (_db, _pki, api) = start(&[("CERTCTL_KUBERNETES_SECRETS_NAMESPACES", "apps,web")]).await;
    let (agent, credential) = api.register("node-a").await;
    let create = |target: Value| json!({"common_name": "web.apps", "agent_id": agent, "target": target});

    for (target, status, code) in [
        (json!({"namespace": "kube-system", "name": "web-tls"}), 400, "target_namespace_not_allowed"),
        (json!({"namespace": "Apps", "name": "web-tls"}), 400, "invalid_request"),
        (json!({"namespace": "apps", "name": "../web"}), 400, "invalid_request"),
        (json!({"namespace": "apps"}), 400, "invalid_json"),
        (json!({"namespace": "apps", "name": "web-tls", "type": "Opaque"}), 400, "invalid_json"),
    ] {
        let (got, err) = api.post("/certificates", create(target.clone())).await;
        assert_eq!((got, error_code(&err)), (status, code), "{target}: {err}");
    }
    let (_, refused) = api.post("/certificates", create(json!({"namespace": "kube-system", "name": "web-tls"}))).await;
    assert!(refused["error"]["message"].as_str().unwrap().contains("allowed: apps, web"), "{refused}");

    let (status, cert) = api.post("/certificates", create(json!({"namespace": "apps", "name": "web-tls"}))).await;
    assert_eq!(status, 201, "{cert}");
    assert_eq!(cert["target"]["namespace"], "apps");
    assert_eq!(cert["target"]["status"], Value::Null, "no report yet: {cert}");
    let cert_id = cert["id"].as_str().unwrap().to_owned();

    let (status, taken) = api.post("/certificates", create(json!({"namespace": "apps", "name": "web-tls"}))).await;
    assert_eq!(status, 409, "one Secret, one certificate: {taken}");
    assert!(taken["error"]["message"].as_str().unwrap().contains("apps/web-tls"), "{taken}");

    let (_, work) = api.request(reqwest::Method::GET, &format!("/agents/{agent}/work"), None, Some(&credential)).await;
    let job = work["jobs"].as_array().unwrap().iter().find(|j| j["certificate_id"] == cert_id.as_str()).expect("the job").clone();
    assert_eq!(job["target"], json!({"namespace": "apps", "name": "web-tls"}));
    let csr = json!({"job_id": job["id"], "certificate_id": cert_id, "csr_pem": csr_for("web.apps", &["web.apps"])});
    let (status, _) = api.request(reqwest::Method::POST, &format!("/agents/{agent}/csr"), Some(csr), Some(&credential)).await;
    assert_eq!(status, 202);
    let (_, fetched) = api.request(reqwest::Method::GET, &format!("/agents/{agent}/certificates/{cert_id}"), None, Some(&credential)).await;
    let serial = fetched["serial"].as_str().unwrap().to_owned();

    let report = |body: Value| {
        let path = format!("/agents/{agent}/certificates/{cert_id}/target");
        let credential = credential.clone();
        let api = &api;
        async move { api.request(reqwest::Method::POST, &path, Some(body), Some(&credential)).await }
    };
    for (body, code) in [
        (json!({"status": "lost", "serial": serial}), "invalid_status"),
        (json!({"status": "written", "serial": "zz"}), "invalid_request"),
        (json!({"status": "failed", "serial": serial, "message": "a\u{202E}b"}), "invalid_request"),
    ] {
        let (status, err) = report(body.clone()).await;
        assert_eq!((status, error_code(&err)), (400, code), "{body}: {err}");
    }
    let denied = "the agent's ServiceAccount may not write Secrets in namespace apps (HTTP 403)";
    assert_eq!(report(json!({"status": "failed", "serial": serial, "message": denied})).await.0, 200);
    let (_, seen) = api.get(&format!("/certificates/{cert_id}")).await;
    assert_eq!((seen["target"]["status"].as_str(), seen["target"]["message"].as_str()), (Some("failed"), Some(denied)), "{seen}");

    assert_eq!(report(json!({"status": "written", "serial": serial})).await.0, 200);
    let (_, seen) = api.get(&format!("/certificates/{cert_id}")).await;
    assert_eq!(seen["target"]["status"], "written", "{seen}");
    assert_eq!(seen["target"]["serial"], serial.as_str(), "{seen}");
    assert!(seen["target"]["updated_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{seen}");

    // A certificate without a target takes no report.
    let (_, plain) = api.post("/certificates", json!({"common_name": "plain.apps", "agent_id": agent})).await;
    assert_eq!(plain["target"], Value::Null, "{plain}");
    let path = format!("/agents/{agent}/certificates/{}/target", plain["id"].as_str().unwrap());
    let (status, err) =
        api.request(reqwest::Method::POST, &path, Some(json!({"status": "written", "serial": "0a"})), Some(&credential)).await;
    assert_eq!(status, 409, "{err}");
    // Nor does a certificate that is not this agent's.
    let path = format!("/agents/{agent}/certificates/{}/target", uuid::Uuid::new_v4());
    let (status, err) =
        api.request(reqwest::Method::POST, &path, Some(json!({"status": "written", "serial": "0a"})), Some(&credential)).await;
    assert_eq!(status, 404, "{err}");

    let r = api.http.get(api.server.url("/api/v1/metrics/prometheus")).bearer_auth("test-key").send().await.unwrap();
    let metrics = r.text().await.unwrap();
    assert!(metrics.contains("certctl_secret_target_reports_total{status=\"written\"} 1"), "{metrics}");
    assert!(metrics.contains("certctl_secret_target_reports_total{status=\"failed\"} 1"), "{metrics}");
}
