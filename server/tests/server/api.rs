//! The agent API end to end: registration queues a CSR job, the CSR round trip issues a
//! certificate that verifies against the CA, renewal queues a new job; bad input gets 4xx JSON.

use std::time::Duration;

use serde_json::{json, Value};
use x509_parser::prelude::*;

use crate::support::{csr_for, start, wait_until, TestPki};

#[tokio::test]
async fn csr_round_trip_issues_a_certificate_that_verifies_against_the_ca_and_renewal_requeues() {
    let (_db, _pki, api) = start(&[
        ("CERTCTL_CERTIFICATE_VALIDITY", "30s"),
        ("CERTCTL_CERTIFICATE_RENEW_BEFORE", "25s"),
        ("CERTCTL_SCHEDULER_RENEWAL_CHECK_INTERVAL", "1s"),
    ])
    .await;

    let (status, agent) = api.post("/agents", json!({"name": "node-a", "hostname": "node-a"})).await;
    assert_eq!(status, 201, "{agent}");
    assert_eq!(agent["status"], "active");
    let id = agent["id"].as_str().unwrap().to_owned();
    assert!(agent["credential"].as_str().is_some_and(|c| c.len() == 64), "a new agent gets its credential: {agent}");
    let (status, again) = api.post("/agents", json!({"name": "node-a"})).await;
    assert_eq!((status, again["id"].as_str()), (200, Some(id.as_str())), "idempotent registration with the credential");
    assert!(again.get("credential").is_none(), "the credential is shown once: {again}");

    assert_eq!(api.post(&format!("/agents/{id}/heartbeat"), json!({"version": "0.1.0"})).await, (200, json!({"status": "active"})));

    let (status, work) = api.get(&format!("/agents/{id}/work")).await;
    assert_eq!(status, 200);
    let jobs = work["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1, "registration queued the agent's own CSR job: {work}");
    let job = &jobs[0];
    assert_eq!((job["type"].as_str(), job["common_name"].as_str()), (Some("csr"), Some("node-a")));
    assert_eq!(job["sans"], json!(["node-a"]));
    let job_id = job["id"].as_str().unwrap().to_owned();
    let cert_id = job["certificate_id"].as_str().unwrap().to_owned();

    // Not issued yet.
    assert_eq!(api.get(&format!("/agents/{id}/certificates/{cert_id}")).await.0, 404);

    // A CSR with the wrong CN is refused with a reason and changes nothing.
    let (status, err) = api
        .post(&format!("/agents/{id}/csr"), json!({"job_id": job_id, "certificate_id": cert_id, "csr_pem": csr_for("evil", &["node-a"])}))
        .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["code"], "invalid_csr");
    assert!(err["error"]["message"].as_str().unwrap().contains("common name"), "{err}");

    let (status, accepted) = api
        .post(&format!("/agents/{id}/csr"), json!({"job_id": job_id, "certificate_id": cert_id, "csr_pem": csr_for("node-a", &["node-a"])}))
        .await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted, json!({"certificate_id": cert_id, "status": "issued"}));
    let (status, again) = api
        .post(&format!("/agents/{id}/csr"), json!({"job_id": job_id, "certificate_id": cert_id, "csr_pem": csr_for("node-a", &["node-a"])}))
        .await;
    assert_eq!(status, 409, "a job is signed once: {again}");

    let (status, fetched) = api.get(&format!("/agents/{id}/certificates/{cert_id}")).await;
    assert_eq!(status, 200, "{fetched}");
    let (_, ca_pem) = parse_x509_pem(fetched["ca_pem"].as_str().unwrap().as_bytes()).unwrap();
    let ca = ca_pem.parse_x509().unwrap();
    let (_, leaf_pem) = parse_x509_pem(fetched["certificate_pem"].as_str().unwrap().as_bytes()).unwrap();
    let leaf = leaf_pem.parse_x509().unwrap();
    leaf.verify_signature(Some(ca.public_key())).expect("issued certificate verifies against the CA");
    assert_eq!(leaf.issuer(), ca.subject());
    assert!(ca.is_ca());
    assert_eq!(leaf.subject().iter_common_name().next().unwrap().as_str().unwrap(), "node-a");
    assert_eq!(leaf.raw_serial_as_string().replace(':', ""), fetched["serial"].as_str().unwrap());
    assert!(fetched["not_after"].as_str().unwrap().ends_with('Z'), "{fetched}");

    assert_eq!(
        api.post(&format!("/agents/{id}/jobs/{job_id}/status"), json!({"status": "completed"})).await,
        (200, json!({"status": "completed"}))
    );

    // 30 s validity, renew 25 s before expiry: the scheduler queues a new job within seconds.
    let renewal = wait_until("the renewal scheduler to queue a new CSR job", Duration::from_secs(30), || async {
        let (_, work) = api.get(&format!("/agents/{id}/work")).await;
        match work["jobs"].as_array().and_then(|j| j.first()).cloned() {
            Some(j) => Ok(j),
            None => Err(work.to_string()),
        }
    })
    .await;
    assert_eq!(renewal["certificate_id"].as_str(), Some(cert_id.as_str()));
    assert_ne!(renewal["id"].as_str(), Some(job_id.as_str()));

    // An operator-created certificate for the agent queues its own job.
    let (status, created) =
        api.post("/certificates", json!({"common_name": "app.example", "sans": ["app.example", "10.1.2.3"], "agent_id": id})).await;
    assert_eq!(status, 201, "{created}");
    let (_, work) = api.get(&format!("/agents/{id}/work")).await;
    assert!(work["jobs"].as_array().unwrap().iter().any(|j| j["certificate_id"] == created["id"]), "{work}");
    let (status, list) = api.get("/certificates").await;
    assert_eq!(status, 200);
    assert_eq!(list["certificates"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn bad_input_gets_specific_json_errors_and_retired_agents_get_410() {
    let (_db, pki, api) = start(&[]).await;
    let url = api.server.url("/api/v1/agents");

    let r = api.http.post(&url).bearer_auth("test-key").header("content-type", "application/json").body("{\"name\":").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_json");

    // Raw HTTP/1.1 so the client keeps reading after the server answers before the body ends.
    let reply = raw_post(&pki, api.server.port, "/api/v1/agents", format!("{{\"name\":\"{}\"}}", "a".repeat(200 * 1024)).as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains("payload_too_large"), "{reply}");

    let r = api.http.post(&url).bearer_auth("test-key").header("content-type", "text/plain").body("{}").send().await.unwrap();
    assert_eq!(r.status(), 415);

    let (status, body) = api.post("/agents", json!({"name": "bad name!"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_request")), "{body}");
    let (status, body) = api.post("/agents", json!({"hostname": "x"})).await;
    assert_eq!(status, 400, "missing name: {body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("name"), "{body}");

    let unknown = uuid::Uuid::new_v4();
    for path in [
        format!("/agents/{unknown}/work"),
        "/agents/not-a-uuid/work".to_string(),
        format!("/certificates/{unknown}"),
        format!("/agents/{unknown}/certificates/{unknown}"),
        "/no/such/route".to_string(),
    ] {
        let (status, body) = api.get(&path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
    let (status, _) = api.post(&format!("/agents/{unknown}/heartbeat"), json!({})).await;
    assert_eq!(status, 404);

    let (_, agent) = api.post("/agents", json!({"name": "node-b"})).await;
    let id = agent["id"].as_str().unwrap();
    let (_, work) = api.get(&format!("/agents/{id}/work")).await;
    let job = &work["jobs"][0];
    let (status, body) = api
        .post(&format!("/agents/{id}/csr"), json!({"job_id": job["id"], "certificate_id": job["certificate_id"], "csr_pem": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"}))
        .await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_csr")), "{body}");
    let (status, _) = api.post(&format!("/agents/{id}/jobs/{}/status", job["id"].as_str().unwrap()), json!({"status": "done"})).await;
    assert_eq!(status, 400);
    // Nothing half-written: the job is still pending and the certificate not issued.
    let (_, still) = api.get(&format!("/agents/{id}/work")).await;
    assert_eq!(still["jobs"][0]["id"], job["id"], "{still}");
    let (_, cert) = api.get(&format!("/certificates/{}", job["certificate_id"].as_str().unwrap())).await;
    assert_eq!(cert["status"], "pending", "{cert}");

    let (status, _) = api.call(reqwest::Method::DELETE, &format!("/agents/{id}"), None).await;
    assert_eq!(status, 200);
    let (status, body) = api.post(&format!("/agents/{id}/heartbeat"), json!({})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (410, Some("agent_retired")));
    assert_eq!(api.get(&format!("/agents/{id}/work")).await.0, 410);
}

#[tokio::test]
async fn sigterm_drains_an_in_flight_request_then_exits_cleanly() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_db, pki, api) = start(&[]).await;
    let mut api = api;
    let config = pki.client_config(&[&rustls::version::TLS13]);
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", api.server.port)).await.unwrap();
    let mut tls = connector.connect(rustls::pki_types::ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    let body = br#"{"name":"node-drain"}"#;
    let head = format!(
        "POST /api/v1/agents HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer test-key\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(&body[..5]).await.unwrap();
    tls.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await; // the request is now in flight

    api.server.signal(nix::sys::signal::Signal::SIGTERM);
    api.server.wait_for_log("draining", Duration::from_secs(10)).await;
    tls.write_all(&body[5..]).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut reply)).await.unwrap().ok();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 201"), "in-flight request completed: {reply}");
    assert_eq!(api.server.wait_exit(Duration::from_secs(20)).await, 0);
}

/// Sends one POST over a raw TLS connection and returns whatever the server answered.
async fn raw_post(pki: &TestPki, port: u16, path: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(pki.client_config(&[&rustls::version::TLS13])));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut tls = connector.connect(rustls::pki_types::ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer test-key\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    // The server may answer and close before reading everything; that is the point.
    let _ = tls.write_all(body).await;
    let _ = tls.flush().await;
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut reply)).await;
    String::from_utf8_lossy(&reply).into_owned()
}
