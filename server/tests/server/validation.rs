//! Names are DNS names or IP addresses and nothing that merely looks like one; free text
//! carries no invisible characters (U+202E turns "node-a.gpj" into what reads "node-ajpg.").

use reqwest::Method;
use serde_json::json;

use crate::support::start;

#[tokio::test]
async fn invisible_characters_and_free_text_names_are_refused() {
    let (_db, _pki, api) = start(&[]).await;
    let (id, credential) = api.register("node-v").await;
    let refused = |what: &str, (status, body): (u16, serde_json::Value), field: &str| {
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_request")), "{what}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().starts_with(field), "{what}: names the field: {body}");
    };
    for hostname in ["node\u{202E}gpj.a", "node\u{200B}a", "node a", "nøde"] {
        refused(
            hostname,
            api.request(Method::POST, "/agents", Some(json!({"name": "node-w", "hostname": hostname})), None).await,
            "hostname",
        );
    }
    for cn in ["Evil Corp <admin@bank.example>", "app\u{200B}.example", "\u{202E}elpmaxe.ppa"] {
        let body = json!({"common_name": cn, "sans": ["app.example"], "agent_id": id});
        refused(cn, api.post("/certificates", body).await, "common_name");
    }
    let heartbeat =
        api.request(Method::POST, &format!("/agents/{id}/heartbeat"), Some(json!({"version": "1.0\u{202E}"})), Some(&credential)).await;
    refused("version", heartbeat, "version");
    let job = api.first_job(&id, &credential).await;
    let path = format!("/agents/{id}/jobs/{}/status", job["id"].as_str().unwrap());
    let status =
        api.request(Method::POST, &path, Some(json!({"status": "failed", "message": "ok\u{2066}hidden"})), Some(&credential)).await;
    refused("message", status, "message");
    assert_eq!(api.first_job(&id, &credential).await["id"], job["id"], "the refused report changed nothing");

    // What is allowed still is.
    let (status, body) =
        api.post("/certificates", json!({"common_name": "*.app.example", "sans": ["*.app.example", "10.0.0.1"], "agent_id": id})).await;
    assert_eq!(status, 201, "{body}");
    let ok = api.request(Method::POST, &format!("/agents/{id}/heartbeat"), Some(json!({"version": "0.1.0"})), Some(&credential)).await;
    assert_eq!(ok.0, 200, "{}", ok.1);
}
