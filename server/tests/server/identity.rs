//! Agent identity: a key with agent permissions can act only as the agents whose credential
//! it holds. Registration of a taken name needs that credential; so does every
//! /agents/{id}/... route. An agent row without a credential (older release) is claimed once.

use reqwest::Method;
use serde_json::{json, Value};
use sqlx::Connection;

use crate::support::{csr_for, start, Api};

fn refused(what: &str, (status, body): &(u16, Value)) {
    assert_eq!(*status, 403, "{what}: {body}");
    assert_eq!(body["error"]["code"], "agent_credential_invalid", "{what}: {body}");
    assert!(body.get("id").is_none() && body.get("credential").is_none(), "{what} leaks nothing: {body}");
}

async fn register_as(api: &Api, name: &str, credential: Option<&str>) -> (u16, Value) {
    api.request(Method::POST, "/agents", Some(json!({"name": name})), credential).await
}

#[tokio::test]
async fn an_agent_key_cannot_register_as_or_act_for_another_agent() {
    let (_db, _pki, api) = start(&[]).await;
    let (victim, victim_credential) = api.register("node-victim").await;
    let (_attacker, attacker_credential) = api.register("node-evil").await;
    assert!(victim_credential.len() == 64 && attacker_credential.len() == 64, "a new agent gets its credential");

    refused("re-registering a taken name without its credential", &register_as(&api, "node-victim", None).await);
    refused("re-registering with another agent's credential", &register_as(&api, "node-victim", Some(&attacker_credential)).await);
    let (status, again) = register_as(&api, "node-victim", Some(&victim_credential)).await;
    assert_eq!((status, again["id"].as_str()), (200, Some(victim.as_str())), "the agent itself re-registers: {again}");

    let job = api.first_job(&victim, &victim_credential).await;
    let (job_id, cert_id) = (job["id"].as_str().unwrap(), job["certificate_id"].as_str().unwrap());
    let csr = json!({"job_id": job_id, "certificate_id": cert_id, "csr_pem": csr_for("node-victim", &["node-victim"])});
    let routes: [(Method, String, Option<Value>); 5] = [
        (Method::POST, format!("/agents/{victim}/heartbeat"), Some(json!({}))),
        (Method::GET, format!("/agents/{victim}/work"), None),
        (Method::POST, format!("/agents/{victim}/csr"), Some(csr.clone())),
        (Method::GET, format!("/agents/{victim}/certificates/{cert_id}"), None),
        (Method::POST, format!("/agents/{victim}/jobs/{job_id}/status"), Some(json!({"status": "failed"}))),
    ];
    for (method, path, body) in &routes {
        for (who, credential) in [("no credential", None), ("the attacker's credential", Some(attacker_credential.as_str()))] {
            let answer = api.request(method.clone(), path, body.clone(), credential).await;
            refused(&format!("{method} {path} with {who}"), &answer);
        }
    }
    // Nothing the attacker sent changed anything: the job is pending, no certificate issued.
    assert_eq!(api.first_job(&victim, &victim_credential).await["id"], job["id"]);
    let (_, cert) = api.get(&format!("/certificates/{cert_id}")).await;
    assert_eq!(cert["status"], "pending", "{cert}");
    let (status, body) = api.request(Method::POST, &format!("/agents/{victim}/csr"), Some(csr), Some(&victim_credential)).await;
    assert_eq!(status, 202, "the agent itself submits its CSR: {body}");
}

#[tokio::test]
async fn an_agent_without_a_credential_is_claimed_once_and_an_operator_can_reset_it() {
    let (db, _pki, api) = start(&[]).await;
    let (id, _) = api.register("node-old").await;
    // What a row written by a release without credentials looks like after the migration.
    let mut conn = sqlx::PgConnection::connect(&db.url()).await.unwrap();
    sqlx::query("UPDATE agents SET credential_hash = NULL WHERE name = 'node-old'").execute(&mut conn).await.unwrap();

    refused("agent routes before the row is claimed", &api.request(Method::GET, &format!("/agents/{id}/work"), None, Some("guess")).await);
    let (status, claimed) = register_as(&api, "node-old", None).await;
    assert_eq!((status, claimed["id"].as_str()), (200, Some(id.as_str())), "{claimed}");
    let credential = claimed["credential"].as_str().expect("the claim issues a credential").to_owned();
    refused("a second claim", &register_as(&api, "node-old", None).await);
    assert_eq!(api.request(Method::GET, &format!("/agents/{id}/work"), None, Some(&credential)).await.0, 200);

    // Lost key directory: the operator resets, the next registration claims again.
    let (status, body) = api.request(Method::DELETE, &format!("/agents/{id}/credential"), None, None).await;
    assert_eq!(status, 204, "{body}");
    refused("the old credential after a reset", &api.request(Method::GET, &format!("/agents/{id}/work"), None, Some(&credential)).await);
    let (status, reclaimed) = register_as(&api, "node-old", None).await;
    assert_eq!((status, reclaimed["id"].as_str()), (200, Some(id.as_str())), "{reclaimed}");
    assert_ne!(reclaimed["credential"].as_str(), Some(credential.as_str()));
}
