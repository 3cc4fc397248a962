//! /ready follows the database: 503 while it is stopped, 200 again once it returns, with no
//! server restart.

use std::time::Duration;

use crate::support::{base_env, wait_until, Db, ServerProcess, TestPki};

#[tokio::test]
async fn ready_is_503_while_the_database_is_down_and_200_after_it_returns() {
    let mut db = Db::start().await;
    let pki = TestPki::new();
    let http = pki.http();
    let mut server = ServerProcess::spawn(&base_env(&pki, &db.url()));
    server.wait_ready(&http, Duration::from_secs(60)).await;
    let pid = server.pid();

    db.pg.stop().await.unwrap();
    let body = wait_until("/ready to answer 503 with the database stopped", Duration::from_secs(20), || async {
        let r = http.get(server.url("/ready")).send().await.map_err(|e| e.to_string())?;
        let status = r.status();
        let body: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
        if status == 503 {
            Ok(body)
        } else {
            Err(format!("{status} {body}"))
        }
    })
    .await;
    assert_eq!(body["status"], "not_ready");
    assert!(body["reason"].as_str().unwrap().contains("failed to ping database"), "{body}");
    let health = http.get(server.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200, "liveness does not depend on the database");

    db.pg.start_again().await.unwrap();
    server.wait_ready(&http, Duration::from_secs(30)).await;
    assert!(server.running());
    assert_eq!(server.pid(), pid, "same process: no restart");
}
