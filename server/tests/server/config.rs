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

/// Runs the binary to its exit (assert_cmd), with a bound: an accepted setting would make it
/// serve forever, which must fail the test rather than hang it.
fn refused_with(pki: &TestPki, settings: &[(&str, &str)]) -> String {
    let mut env = base_env(pki, "postgres://u:p@127.0.0.1:1/db");
    for (k, v) in settings {
        set(&mut env, k, v);
    }
    let output = assert_cmd::Command::new(crate::support::server_binary())
        .env_clear()
        .envs(env)
        .timeout(Duration::from_secs(20))
        .assert()
        .code(2)
        .get_output()
        .clone();
    // The refusal is a log line, and logs go to stdout.
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(stdout.contains("refusing to start"), "{stdout}");
    stdout
}

#[test]
fn durations_that_would_overflow_later_are_refused_at_start() {
    let pki = TestPki::new();
    let out = refused_with(&pki, &[("CERTCTL_CERTIFICATE_VALIDITY", "3000000d")]);
    assert!(out.contains("CERTCTL_CERTIFICATE_VALIDITY") && out.contains("maximum 3650d"), "{out}");
    let out = refused_with(&pki, &[("CERTCTL_CERTIFICATE_VALIDITY", "3000000d"), ("CERTCTL_CERTIFICATE_RENEW_BEFORE", "2999999d")]);
    assert!(out.contains("CERTCTL_CERTIFICATE_VALIDITY"), "{out}");
    // A valid lifetime with a renewal margin that would overflow the scheduler's date
    // arithmetic: refused for the margin itself (it used to panic the renewal loop).
    let out = refused_with(&pki, &[("CERTCTL_CERTIFICATE_VALIDITY", "3650d"), ("CERTCTL_CERTIFICATE_RENEW_BEFORE", "99999999d")]);
    assert!(out.contains("CERTCTL_CERTIFICATE_RENEW_BEFORE") && out.contains("maximum 3650d"), "{out}");
    let out = refused_with(&pki, &[("CERTCTL_SCHEDULER_RENEWAL_CHECK_INTERVAL", "100000000000d")]);
    assert!(out.contains("CERTCTL_SCHEDULER_RENEWAL_CHECK_INTERVAL") && out.contains("maximum 7d"), "{out}");
    let out = refused_with(&pki, &[("CERTCTL_SERVER_MAX_CONNECTIONS", "0")]);
    assert!(out.contains("CERTCTL_SERVER_MAX_CONNECTIONS"), "{out}");
}
