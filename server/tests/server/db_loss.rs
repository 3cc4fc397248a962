//! The database going away mid-request (the backend terminated: SQLSTATE 57P01) is the
//! documented 503 `database_unavailable`, not a 500, and the server recovers by itself.

use std::time::Duration;

use sqlx::Connection;

use crate::support::{start, wait_until};

#[tokio::test]
async fn a_backend_terminated_mid_request_answers_503_database_unavailable() {
    let (db, _pki, api) = start(&[]).await;
    api.register("node-db").await;
    // Hold a lock so the next request waits inside PostgreSQL, where we can end its backend.
    let mut blocker = sqlx::PgConnection::connect(&db.url()).await.unwrap();
    sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
    sqlx::query("LOCK TABLE certificates IN ACCESS EXCLUSIVE MODE").execute(&mut blocker).await.unwrap();

    let request = tokio::spawn({
        let http = api.http.clone();
        let url = api.server.url("/api/v1/certificates");
        async move {
            let r = http.get(url).bearer_auth("test-key").send().await.unwrap();
            (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap())
        }
    });
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'certctl-server' AND wait_event_type = 'Lock'";
    wait_until("the request to wait on the lock in PostgreSQL", Duration::from_secs(20), || async {
        match db.pg.query_i64(waiting).await {
            Ok(1) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let ended = db
        .pg
        .query_i64(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE application_name = 'certctl-server' AND wait_event_type = 'Lock'",
        )
        .await
        .unwrap();
    assert_eq!(ended, 1);
    let (status, body) = tokio::time::timeout(Duration::from_secs(20), request).await.expect("the request is answered").unwrap();
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("database_unavailable")), "{body}");

    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    let (status, body) = api.get("/certificates").await;
    assert_eq!(status, 200, "the next request gets a new connection: {body}");
}
