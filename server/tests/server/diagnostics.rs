//! Start-up diagnostics against a real PostgreSQL: the 28P01 text in both log formats, the
//! process staying up and not ready, and recovery by ALTER ROLE without a restart.

use std::time::Duration;

use certctl_server::config::{Config, Env};
use certctl_server::db::{diagnose::Problem, ping_direct};

use crate::support::{base_env, set, Db, ServerProcess, TestPki};

#[tokio::test]
async fn wrong_password_logs_28p01_in_text_and_json_and_recovers_after_alter_role() {
    let db = Db::start().await;
    let pki = TestPki::new();
    let http = pki.http();
    let wrong = db.pg.url("certctl", "rotated-password", "certctl");

    // text format
    let mut env = base_env(&pki, &wrong);
    set(&mut env, "CERTCTL_LOG_FORMAT", "text");
    let text_server = ServerProcess::spawn(&env);
    let line = text_server.wait_for_log("SQLSTATE 28P01", Duration::from_secs(20)).await;
    assert!(line.contains("ERROR"), "{line}");
    assert!(
        line.contains("failed to ping database: postgres rejected the configured credentials (SQLSTATE 28P01 — invalid_password)"),
        "{line}"
    );
    assert!(line.contains("ALTER ROLE") && line.contains("initdb"), "{line}");

    // json format; the password comes via CERTCTL_DATABASE_PASSWORD and overrides the URL's.
    let mut env = base_env(&pki, &db.url());
    set(&mut env, "CERTCTL_LOG_FORMAT", "json");
    set(&mut env, "CERTCTL_DATABASE_PASSWORD", "rotated-password");
    let mut json_server = ServerProcess::spawn(&env);
    let line = json_server.wait_for_log("SQLSTATE 28P01", Duration::from_secs(20)).await;
    let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(event["level"], "ERROR");
    assert_eq!(event["sqlstate"], "28P01");
    assert!(event["message"].as_str().unwrap().contains("SQLSTATE 28P01 — invalid_password"), "{event}");

    // Still alive: healthy, not ready, and /ready says why.
    json_server.wait_listening(&http).await;
    assert!(json_server.running());
    let r = http.get(json_server.url("/ready")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["reason"].as_str().unwrap().contains("SQLSTATE 28P01"), "{body}");

    // The non-destructive remediation: set the role's password to the configured one.
    db.pg.set_password("certctl", "rotated-password").await.unwrap();
    json_server.wait_ready(&http, Duration::from_secs(60)).await;
    assert!(json_server.running(), "recovered without a restart");
    drop(text_server);
}

fn env_of(pairs: Vec<(String, String)>) -> impl Env {
    move |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

#[tokio::test]
async fn missing_database_refused_connection_and_silent_port_are_each_named() {
    let db = Db::start().await;
    let pki = TestPki::new();
    let check = |url: String, timeout: &str| {
        let mut env = base_env(&pki, &url);
        set(&mut env, "CERTCTL_DATABASE_CONNECT_TIMEOUT", timeout);
        Config::from_env(&env_of(env)).unwrap().database
    };

    let missing = ping_direct(&check(db.pg.url("certctl", &db.password, "nope"), "10s")).await.unwrap_err();
    assert_eq!(missing.problem, Problem::MissingDatabase, "{missing}");
    assert!(missing.message.contains("\"nope\" does not exist"), "{missing}");

    let closed = crate::support::free_port();
    let refused = ping_direct(&check(format!("postgres://certctl:x@127.0.0.1:{closed}/certctl"), "10s")).await.unwrap_err();
    assert_eq!(refused.problem, Problem::ConnectionRefused, "{refused}");

    // Accepts TCP, never speaks PostgreSQL.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let timeout = ping_direct(&check(format!("postgres://certctl:x@127.0.0.1:{port}/certctl"), "1s")).await.unwrap_err();
    assert_eq!(timeout.problem, Problem::Timeout, "{timeout}");

    let role = ping_direct(&check(db.pg.url("ghost", "x", "certctl"), "10s")).await.unwrap_err();
    assert!(matches!(role.problem, Problem::MissingRole | Problem::InvalidPassword), "{role}");
}
