//! The binary refuses bad configuration before starting, naming the variable and the fix.

use std::time::Duration;

use crate::support::{base_env, set, ServerProcess, TestPki};

async fn refusal(env: &[(String, String)]) -> String {
    let mut server = ServerProcess::spawn(env);
    let code = server.wait_exit(Duration::from_secs(20)).await;
    let output = server.logs().join("\n");
    assert_eq!(code, 2, "refusal exits 2; output:\n{output}");
    assert!(output.contains("refusing to start"), "{output}");
    output
}

#[tokio::test]
async fn bad_settings_are_refused_with_the_variable_and_the_fix() {
    let pki = TestPki::new();
    let base = base_env(&pki, "postgres://u:p@127.0.0.1:1/db");

    let mut env = base.clone();
    set(&mut env, "CERTCTL_DATABASE_MAX_CONNS", "0");
    let out = refusal(&env).await;
    assert!(out.contains("database max_connections must be at least 1"), "{out}");

    let mut env = base.clone();
    set(&mut env, "CERTCTL_AUTH_TYPE", "jwt");
    assert!(refusal(&env).await.contains("gateway"));

    let mut env = base.clone();
    set(&mut env, "CERTCTL_AUTH_SECRET", "");
    assert!(refusal(&env).await.contains("CERTCTL_AUTH_SECRET"));

    let mut env = base.clone();
    set(&mut env, "CERTCTL_SERVER_TLS_CERT_PATH", "/nonexistent/tls.crt");
    let out = refusal(&env).await;
    assert!(out.contains("CERTCTL_SERVER_TLS_CERT_PATH=/nonexistent/tls.crt"), "{out}");

    pki.break_pair();
    let out = refusal(&base).await;
    assert!(out.contains("do not match"), "{out}");
}
