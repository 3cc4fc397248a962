//! A certificate renamed while its agent submits the CSR: both take the certificate row
//! first, so one waits for the other; no "deadlock detected", no 500.

use futures::future::join_all;
use reqwest::Method;
use serde_json::json;

use crate::support::{csr_for, start};

const PAIRS: usize = 150;

#[tokio::test]
async fn renames_racing_csr_submissions_never_deadlock() {
    let (_db, _pki, api) = start(&[("CERTCTL_DATABASE_MAX_CONNS", "40")]).await;
    let (agent, credential) = api.register("node-race").await;
    let mut pending = Vec::new();
    for i in 0..PAIRS {
        let name = format!("app{i}.example");
        let (status, cert) = api.post("/certificates", json!({"common_name": name, "agent_id": agent})).await;
        assert_eq!(status, 201, "{cert}");
        pending.push((cert["id"].as_str().unwrap().to_owned(), cert["job_id"].as_str().unwrap().to_owned(), csr_for(&name, &[&name])));
    }
    let pairs = pending.iter().enumerate().map(|(i, (cert_id, job_id, csr))| {
        let (api, agent, credential) = (&api, &agent, &credential);
        async move {
            let (cert_path, csr_path) = (format!("/certificates/{cert_id}"), format!("/agents/{agent}/csr"));
            let rename = api.request(Method::PUT, &cert_path, Some(json!({"common_name": format!("renamed{i}.example")})), None);
            let body = json!({"job_id": job_id, "certificate_id": cert_id, "csr_pem": csr});
            let submit = api.request(Method::POST, &csr_path, Some(body), Some(credential));
            futures::join!(rename, submit)
        }
    });
    let outcomes = join_all(pairs).await;
    let mut failures = Vec::new();
    let (mut issued, mut superseded) = (0, 0);
    for ((rename_status, rename), (csr_status, csr)) in &outcomes {
        match (rename_status, csr_status) {
            (200, 202) => issued += 1,
            (200, 409) => superseded += 1,
            _ => failures.push(format!("rename {rename_status} {rename} / csr {csr_status} {csr}")),
        }
    }
    println!("{PAIRS} racing pairs: {issued} issued before the rename, {superseded} superseded by it");
    assert!(failures.is_empty(), "{} of {PAIRS} pairs failed:\n{}", failures.len(), failures.join("\n"));
}
