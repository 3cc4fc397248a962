//! What one client can hold: stalled handshakes, idle HTTP/1.1 and h2 connections and slow
//! bodies are cut off; the connection cap holds; running out of descriptors does not stop
//! the server; an oversized body is refused before it is sent.

use std::time::{Duration, Instant};

use crate::support::{base_env, free_port, read_until_closed, send_raw, set, start, tls_connect, ServerProcess, TestPki};

const H2_PREFACE_AND_SETTINGS: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

#[tokio::test]
async fn stalled_and_idle_connections_are_closed_and_a_slow_body_gets_408() {
    let (_db, pki, api) =
        start(&[("CERTCTL_SERVER_HANDSHAKE_TIMEOUT", "1s"), ("CERTCTL_SERVER_IDLE_TIMEOUT", "1s"), ("CERTCTL_SERVER_BODY_TIMEOUT", "1s")])
            .await;
    let port = api.server.port;
    // Each limit is 1 s; h2 gets 3 s more to answer the GOAWAY's PING.
    let limit = Duration::from_secs(8);

    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut tcp, limit).await;
    assert!(closed, "a TCP connection that never starts TLS is closed by the handshake timeout");
    println!("no handshake: closed after {:?}", started.elapsed());

    let mut tls = tls_connect(&pki, port, &[b"http/1.1"]).await;
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut tls, limit).await;
    assert!(closed, "a TLS connection that sends no request is closed by the idle timeout");
    println!("TLS, no request: closed after {:?}", started.elapsed());

    let mut tls = tls_connect(&pki, port, &[b"http/1.1"]).await;
    send_raw(&mut tls, b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    let started = Instant::now();
    let (reply, closed) = read_until_closed(&mut tls, limit).await;
    assert!(String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&reply));
    assert!(closed, "an idle HTTP/1.1 keep-alive connection is closed after its last response");
    println!("HTTP/1.1 keep-alive after a response: closed after {:?}", started.elapsed());

    let mut h2 = tls_connect(&pki, port, &[b"h2"]).await;
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    send_raw(&mut h2, H2_PREFACE_AND_SETTINGS).await;
    let started = Instant::now();
    let (frames, closed) = read_until_closed(&mut h2, limit).await;
    assert!(closed, "an idle h2 connection is closed");
    assert!(frames.windows(4).any(|w| w[3] == 0x07), "closed with a GOAWAY frame");
    println!("h2, no stream: closed after {:?}", started.elapsed());

    // An authenticated client that stops sending its body half-way.
    let mut tls = tls_connect(&pki, port, &[b"http/1.1"]).await;
    send_raw(
        &mut tls,
        b"POST /api/v1/agents HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer test-key\r\n\
          Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":",
    )
    .await;
    let (reply, _) = read_until_closed(&mut tls, limit).await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 408") && reply.contains("request_timeout"), "slow body: {reply}");
}

#[tokio::test]
async fn the_connection_cap_holds_until_a_connection_closes() {
    let pki = TestPki::new();
    let mut env = base_env(&pki, &format!("postgres://u:p@127.0.0.1:{}/db", free_port()));
    set(&mut env, "CERTCTL_SERVER_MAX_CONNECTIONS", "3");
    set(&mut env, "CERTCTL_SERVER_IDLE_TIMEOUT", "1h");
    let server = ServerProcess::spawn(&env);
    server.wait_listening(&pki.http()).await;
    let mut held = Vec::new();
    for i in 0..3 {
        // The readiness probe's connection may take a moment to give its slot back.
        let connect = tokio::time::timeout(Duration::from_secs(10), tls_connect(&pki, server.port, &[b"http/1.1"]));
        held.push(connect.await.unwrap_or_else(|_| panic!("connection {} of 3 (cap 3) was not served", i + 1)));
    }
    let fourth = tokio::spawn({
        let pki_ca = pki.client_config(&[&rustls::version::TLS13]);
        let port = server.port;
        async move {
            let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(pki_ca));
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            connector.connect(rustls::pki_types::ServerName::try_from("localhost").unwrap(), tcp).await.map(|_| Instant::now())
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await; // nothing to await: the point is that it does not happen
    assert!(!fourth.is_finished(), "a fourth connection was served while three were held (cap 3)");
    let released = Instant::now();
    drop(held.pop());
    let served = tokio::time::timeout(Duration::from_secs(10), fourth).await.expect("the waiting client is served").unwrap();
    assert!(served.expect("handshake") >= released);
}

#[tokio::test]
async fn running_out_of_descriptors_does_not_stop_the_server() {
    let pki = TestPki::new();
    let mut env = base_env(&pki, &format!("postgres://u:p@127.0.0.1:{}/db", free_port()));
    set(&mut env, "CERTCTL_SERVER_IDLE_TIMEOUT", "1s");
    set(&mut env, "CERTCTL_SERVER_HANDSHAKE_TIMEOUT", "1s");
    let server = ServerProcess::spawn_wrapped(&env, &["prlimit", "--nofile=128:128", "--"]);
    server.wait_listening(&pki.http()).await;

    // 300 clients complete TLS and then hold their connections without a request.
    let attackers: Vec<_> = (0..300)
        .map(|_| {
            let config = pki.client_config(&[&rustls::version::TLS13]);
            let port = server.port;
            tokio::spawn(async move {
                let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
                let Ok(tcp) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else { return };
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                if let Ok(mut tls) = connector.connect(name, tcp).await {
                    let _ = read_until_closed(&mut tls, Duration::from_secs(120)).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await; // let the attack fill the server first

    let http = reqwest::Client::builder()
        .use_preconfigured_tls(pki.client_config(&[&rustls::version::TLS13]))
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let started = Instant::now();
    let r = http.get(server.url("/health")).send().await.unwrap_or_else(|e| panic!("/health under attack: {e}\n{}", server.tail()));
    assert_eq!(r.status(), 200);
    println!("/health answered after {:?} with 300 idle clients and 128 descriptors", started.elapsed());
    server.wait_for_log("open-file limit allows fewer client connections", Duration::from_secs(5)).await;
    for a in attackers {
        a.abort();
    }
}

#[tokio::test]
async fn an_oversized_body_is_refused_before_it_is_sent() {
    let (_db, pki, api) = start(&[]).await;
    let mut tls = tls_connect(&pki, api.server.port, &[b"http/1.1"]).await;
    // Like curl: declare the size, ask whether to send, and wait for the answer.
    send_raw(
        &mut tls,
        b"POST /api/v1/agents HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer test-key\r\n\
          Content-Type: application/json\r\nContent-Length: 204800\r\nExpect: 100-continue\r\n\r\n",
    )
    .await;
    let (reply, _) = read_until_closed(&mut tls, Duration::from_secs(5)).await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(!reply.contains("100 Continue"), "the server must not invite the body: {reply}");
    assert!(reply.starts_with("HTTP/1.1 413") && reply.contains("payload_too_large"), "{reply}");
}
