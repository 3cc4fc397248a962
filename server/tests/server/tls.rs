//! TLS 1.3 only, no plain HTTP, SIGHUP reload keeps the old pair when the new one is broken.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{base_env, handshake, wait_until, ServerProcess, TestPki};

/// The listener and TLS work without a database: point at a closed port.
fn no_db_env(pki: &TestPki) -> Vec<(String, String)> {
    base_env(pki, &format!("postgres://u:p@127.0.0.1:{}/db", crate::support::free_port()))
}

#[tokio::test]
async fn tls13_accepted_tls12_refused_plain_http_gets_nothing() {
    let pki = TestPki::new();
    let server = ServerProcess::spawn(&no_db_env(&pki));
    server.wait_listening(&pki.http()).await;

    handshake(server.port, pki.client_config(&[&rustls::version::TLS13])).await.expect("TLS 1.3 handshake accepted");
    let err = handshake(server.port, pki.client_config(&[&rustls::version::TLS12])).await.expect_err("TLS 1.2 handshake must be refused");
    assert!(
        err.to_string().to_lowercase().contains("version") || err.to_string().contains("alert"),
        "TLS 1.2 refusal should be a protocol-version alert, got: {err}"
    );

    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port)).await.unwrap();
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut reply)).await;
    let text = String::from_utf8_lossy(&reply);
    assert!(!text.contains("HTTP/"), "plain HTTP must get no HTTP answer, got {text:?}");
    assert!(!text.contains("healthy"), "plain HTTP must not reach a handler, got {text:?}");
}

#[tokio::test]
async fn sighup_serves_a_new_pair_and_keeps_the_old_one_when_the_new_is_broken() {
    let pki = TestPki::new();
    let server = ServerProcess::spawn(&no_db_env(&pki));
    server.wait_listening(&pki.http()).await;
    let tls13 = || pki.client_config(&[&rustls::version::TLS13]);
    let first = handshake(server.port, tls13()).await.unwrap();

    let second = pki.write_new_pair();
    assert_ne!(first, second);
    server.signal(nix::sys::signal::Signal::SIGHUP);
    wait_until("the new certificate to be served after SIGHUP", Duration::from_secs(10), || async {
        let served = handshake(server.port, tls13()).await.map_err(|e| e.to_string())?;
        if served == second {
            Ok(())
        } else {
            Err("still the first certificate".into())
        }
    })
    .await;
    server.wait_for_log("TLS certificate reloaded", Duration::from_secs(5)).await;

    pki.break_pair();
    server.signal(nix::sys::signal::Signal::SIGHUP);
    let line = server.wait_for_log("reload failed", Duration::from_secs(10)).await;
    assert!(line.contains("do not match"), "the failure says why: {line}");
    assert_eq!(handshake(server.port, tls13()).await.unwrap(), second, "a broken pair must not replace the served certificate");
}

/// cert-manager renews into the mounted Secret and nobody sends SIGHUP: a
/// change of the files is picked up on the next poll, and a broken pair is
/// reported once and never served.
#[tokio::test]
async fn changed_files_are_reloaded_without_a_signal() {
    let pki = TestPki::new();
    let mut env = no_db_env(&pki);
    env.push(("CERTCTL_SERVER_TLS_RELOAD_INTERVAL".into(), "1s".into()));
    let server = ServerProcess::spawn(&env);
    server.wait_listening(&pki.http()).await;
    let tls13 = || pki.client_config(&[&rustls::version::TLS13]);
    let first = handshake(server.port, tls13()).await.unwrap();

    let second = pki.write_new_pair();
    assert_ne!(first, second);
    wait_until("the new certificate to be served after the files changed", Duration::from_secs(10), || async {
        let served = handshake(server.port, tls13()).await.map_err(|e| e.to_string())?;
        if served == second {
            Ok(())
        } else {
            Err("still the first certificate".into())
        }
    })
    .await;
    server.wait_for_log("TLS files changed: certificate reloaded", Duration::from_secs(5)).await;

    pki.break_pair();
    let line = server.wait_for_log("do not load", Duration::from_secs(10)).await;
    assert!(line.contains("do not match"), "the failure says why: {line}");
    assert_eq!(handshake(server.port, tls13()).await.unwrap(), second, "a broken pair must not replace the served certificate");
}
