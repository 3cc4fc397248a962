use std::fs;
use std::time::Duration;

use nix::sys::signal::Signal;
use reqwest::Method;
use x509_parser::pem::parse_x509_pem;

use crate::support::{mode, AgentRun, Stack, SCOPED_KEY};

const ISSUE_TIMEOUT: Duration = Duration::from_secs(60);

/// The server's signing CA, read from its database (not from anything the agent wrote).
async fn server_ca_pem(stack: &Stack) -> String {
    let db = stack.db().await;
    sqlx::query_scalar::<_, String>("SELECT cert_pem FROM ca WHERE id = 1").fetch_one(&db).await.expect("the server's CA row")
}

/// Asserts `cert_pem` is signed by `ca_pem`, names `cn`, and certifies the key in `key_pem`.
fn assert_issued(cert_pem: &str, ca_pem: &str, key_pem: &str, cn: &str, sans: &[&str]) {
    let (_, ca) = parse_x509_pem(ca_pem.as_bytes()).unwrap();
    let ca = ca.parse_x509().unwrap();
    let (_, leaf) = parse_x509_pem(cert_pem.as_bytes()).unwrap();
    let leaf = leaf.parse_x509().unwrap();
    leaf.verify_signature(Some(ca.public_key())).expect("certificate verifies against the server's CA");
    assert_eq!(leaf.issuer(), ca.subject(), "issuer is the server CA");
    let got_cn = leaf.subject().iter_common_name().next().unwrap().as_str().unwrap().to_string();
    assert_eq!(got_cn, cn);
    let key = rcgen::KeyPair::from_pem(key_pem).expect("key file is a PEM private key");
    assert_eq!(key.algorithm(), &rcgen::PKCS_ECDSA_P256_SHA256, "ECDSA P-256 key");
    use rcgen::PublicKeyData;
    assert_eq!(leaf.public_key().raw, key.subject_public_key_info().as_slice(), "certificate is for the key on disk");
    let names: Vec<String> = leaf
        .subject_alternative_name()
        .unwrap()
        .map(|san| san.value.general_names.iter().map(|n| n.to_string()).collect())
        .unwrap_or_default();
    for san in sans {
        assert!(names.iter().any(|n| n.contains(san)), "SAN {san} missing from {names:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_agent_registers_and_writes_a_key_and_a_certificate_signed_by_the_server_ca() {
    let stack = Stack::start().await;
    let work = tempfile::tempdir().unwrap();
    let run = AgentRun::new(&stack, "node-a", work.path());
    let agent = run.spawn();

    let cert_path = agent.wait_for_file("agent.crt", ISSUE_TIMEOUT).await;
    let elapsed = agent.started.elapsed();
    println!("time from agent start to certificate on disk: {:.3}s", elapsed.as_secs_f64());

    let key_path = run.key_dir.join("agent.key");
    let target = fs::read_link(&cert_path).unwrap();
    let certificate_id = target.to_str().unwrap().trim_end_matches(".crt").to_string();
    let real_key = run.key_dir.join(format!("{certificate_id}.key"));
    assert_eq!(mode(&real_key), 0o600, "key file mode");
    assert_eq!(mode(&run.key_dir), 0o700, "key dir mode");
    let ca_pem = server_ca_pem(&stack).await;
    assert_issued(&fs::read_to_string(&cert_path).unwrap(), &ca_pem, &fs::read_to_string(&key_path).unwrap(), "node-a", &["node-a"]);
    assert_eq!(fs::read_to_string(run.key_dir.join("ca.crt")).unwrap().trim(), ca_pem.trim(), "ca.crt is the server CA");

    // The server sees the job completed by this agent.
    let db = stack.db().await;
    let completed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobs j JOIN agents a ON a.id = j.agent_id WHERE a.name = 'node-a' AND j.status = 'completed'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(completed, 1, "own-certificate job reported completed; agent log:\n{}", agent.log());
    // No temp files left behind.
    let leftovers: Vec<_> = fs::read_dir(&run.key_dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_created_certificate_is_issued_to_the_agent_with_its_sans() {
    let stack = Stack::start().await;
    let work = tempfile::tempdir().unwrap();
    let run = AgentRun::new(&stack, "node-b", work.path());
    let agent = run.spawn();
    agent.wait_for_file("agent.crt", ISSUE_TIMEOUT).await;
    let agent_id = fs::read_to_string(run.key_dir.join("agent.id")).unwrap().trim().to_string();

    let (status, body) = stack
        .api(
            Method::POST,
            "/certificates",
            Some(serde_json::json!({"common_name": "app.example", "sans": ["app.example", "www.app.example"], "agent_id": agent_id})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let certificate_id = body["id"].as_str().expect("certificate id in response").to_string();
    let cert_path = agent.wait_for_file(&format!("{certificate_id}.crt"), ISSUE_TIMEOUT).await;
    let key_path = run.key_dir.join(format!("{certificate_id}.key"));
    assert_eq!(mode(&key_path), 0o600);
    let ca_pem = server_ca_pem(&stack).await;
    assert_issued(
        &fs::read_to_string(&cert_path).unwrap(),
        &ca_pem,
        &fs::read_to_string(&key_path).unwrap(),
        "app.example",
        &["app.example", "www.app.example"],
    );
    // The agent's own identity links still point at its own certificate.
    assert_ne!(fs::read_link(run.key_dir.join("agent.crt")).unwrap().to_str().unwrap(), format!("{certificate_id}.crt"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_agent_keeps_its_identity_and_sigterm_exits_cleanly() {
    let stack = Stack::start().await;
    let work = tempfile::tempdir().unwrap();
    let run = AgentRun::new(&stack, "node-c", work.path());

    let mut first = run.spawn();
    first.wait_for_file("agent.crt", ISSUE_TIMEOUT).await;
    let registered = first.wait_for_event("registered with the server", ISSUE_TIMEOUT).await;
    let first_id = registered["agent_id"].as_str().unwrap().to_string();

    // Liveness: healthy while running.
    let health = run.command().arg("health").output().unwrap();
    assert!(health.status.success(), "health while running: {}", String::from_utf8_lossy(&health.stdout));

    first.signal(Signal::SIGTERM);
    let status = first.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "SIGTERM exit status {status}; log:\n{}", first.log());
    first.wait_for_event("shutdown signal received", Duration::from_secs(1)).await;

    // Liveness: unhealthy once stopped, with a one-line reason.
    let health = run.command().arg("health").output().unwrap();
    assert!(!health.status.success(), "health must fail after the agent stopped");
    let reason = String::from_utf8_lossy(&health.stdout);
    assert!(reason.contains("no liveness stamp"), "{reason}");

    // The credential that proves the name is kept with the keys, readable by the agent only.
    let credential = run.key_dir.join("agent.credential");
    assert!(credential.is_file(), "the agent keeps its credential at {}", credential.display());
    assert_eq!(mode(&credential), 0o600);
    let cert_before = fs::read_to_string(run.key_dir.join("agent.crt")).unwrap();
    let second = run.spawn();
    let events = second.wait_for_event_count("registered with the server", 2, ISSUE_TIMEOUT).await;
    let second_id = events[1]["agent_id"].as_str().unwrap().to_string();
    assert_eq!(first_id, second_id, "restart reuses the agent id");

    let db = stack.db().await;
    let agents: i64 = sqlx::query_scalar("SELECT count(*) FROM agents WHERE name = 'node-c'").fetch_one(&db).await.unwrap();
    assert_eq!(agents, 1, "no duplicate agent rows");
    let certs: i64 = sqlx::query_scalar("SELECT count(*) FROM certificates c JOIN agents a ON a.id = c.agent_id WHERE a.name = 'node-c'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(certs, 1, "a restart queues no second own certificate");
    assert_eq!(fs::read_to_string(run.key_dir.join("agent.crt")).unwrap(), cert_before, "certificate kept across restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_lost_its_credential_is_refused_with_the_fix_and_claims_its_name_after_a_reset() {
    let stack = Stack::start().await;
    let work = tempfile::tempdir().unwrap();
    let run = AgentRun::new(&stack, "node-l", work.path());
    let mut first = run.spawn();
    first.wait_for_file("agent.crt", ISSUE_TIMEOUT).await;
    let registered = first.wait_for_event("registered with the server", ISSUE_TIMEOUT).await;
    let id = registered["agent_id"].as_str().unwrap().to_string();
    first.signal(Signal::SIGTERM);
    assert!(first.wait_exit(Duration::from_secs(10)).await.success());

    fs::remove_file(run.key_dir.join("agent.credential")).unwrap();
    let second = run.spawn();
    let refused = second.wait_for_event("the server refuses this agent's identity", ISSUE_TIMEOUT).await;
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(message.contains("agent.credential") && message.contains("/credential"), "names the file and the fix: {refused}");

    let (status, body) = stack.api(Method::DELETE, &format!("/agents/{id}/credential"), None).await;
    assert_eq!(status, 204, "{body}");
    // The log holds both runs: the second registration is the claim.
    let claimed = second.wait_for_event_count("registered with the server", 2, ISSUE_TIMEOUT).await;
    assert_eq!(claimed[1]["agent_id"].as_str(), Some(id.as_str()), "the agent claims its own name again");
    assert_eq!(mode(&run.key_dir.join("agent.credential")), 0o600, "and keeps the new credential");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_outage_is_backed_off_and_the_agent_recovers_when_it_returns() {
    let mut stack = Stack::start().await;
    let work = tempfile::tempdir().unwrap();
    let run = AgentRun::new(&stack, "node-d", work.path());
    let agent = run.spawn();
    agent.wait_for_file("agent.crt", ISSUE_TIMEOUT).await;

    stack.stop_server().await;
    let failures = agent.wait_for_event_count("cannot reach the server", 3, Duration::from_secs(30)).await;
    // Backoff grows n x base (base 1s, cap 4s), jitter only shortens by up to 25 %.
    let delays: Vec<f64> = failures.iter().map(|e| e["retry_in"].as_str().unwrap().trim_end_matches('s').parse::<f64>().unwrap()).collect();
    for (n, d) in delays.iter().enumerate() {
        let full = ((n + 1) as f64).min(4.0);
        assert!(*d <= full + 0.05 && *d >= full * 0.75 - 0.05, "failure {} waited {d}s, expected ~{full}s: {delays:?}", n + 1);
    }
    let counts: Vec<u64> = failures.iter().map(|e| e["failures"].as_u64().unwrap()).collect();
    assert_eq!(counts, vec![1, 2, 3], "consecutive failure count");

    stack.start_server().await;
    agent.wait_for_event("server reachable again", Duration::from_secs(30)).await;
    let db = stack.db().await;
    let recent: i64 =
        sqlx::query_scalar("SELECT count(*) FROM agents WHERE name = 'node-d' AND last_heartbeat_at > now() - interval '5 seconds'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(recent, 1, "heartbeats resumed after the outage; log:\n{}", agent.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_api_key_logs_401_with_what_to_check_and_backs_off() {
    let stack = Stack::start().await;
    let work = tempfile::tempdir().unwrap();
    let run = AgentRun::new(&stack, "node-e", work.path()).set("CERTCTL_API_KEY", "not-the-key");
    let agent = run.spawn();
    let events = agent.wait_for_event_count("rejected the API key (HTTP 401)", 3, Duration::from_secs(30)).await;
    let message = events[0]["message"].as_str().unwrap();
    assert!(message.contains("CERTCTL_API_KEY") && message.contains("CERTCTL_AUTH_SECRET"), "{message}");
    assert_eq!(events[0]["level"], "ERROR");
    let counts: Vec<u64> = events.iter().map(|e| e["failures"].as_u64().unwrap()).collect();
    assert_eq!(counts, vec![1, 2, 3], "each 401 is one backed-off attempt");
    // No tight loop: attempts are spaced by the backoff (1s, 2s, ...), so three attempts
    // take at least (0.75 + 1.5) s.
    assert!(agent.started.elapsed() >= Duration::from_millis(2250), "three 401s arrived too fast");
    assert!(!run.key_dir.join("agent.crt").exists());
    let db = stack.db().await;
    let agents: i64 = sqlx::query_scalar("SELECT count(*) FROM agents WHERE name = 'node-e'").fetch_one(&db).await.unwrap();
    assert_eq!(agents, 0, "a rejected key registers nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_permission_is_named_in_the_403_log_line() {
    let stack = Stack::start().await;
    let work = tempfile::tempdir().unwrap();
    let run = AgentRun::new(&stack, "node-f", work.path()).set("CERTCTL_API_KEY", SCOPED_KEY);
    let agent = run.spawn();
    let event = agent.wait_for_event("(HTTP 403)", Duration::from_secs(30)).await;
    assert_eq!(event["permission"], "agent.job.poll", "{event}");
    assert!(event["message"].as_str().unwrap().contains("agent.job.poll"), "{event}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retired_agent_exits_zero() {
    let stack = Stack::start().await;
    let work = tempfile::tempdir().unwrap();
    let run = AgentRun::new(&stack, "node-g", work.path());
    let mut agent = run.spawn();
    let registered = agent.wait_for_event("registered with the server", ISSUE_TIMEOUT).await;
    let id = registered["agent_id"].as_str().unwrap();
    let (status, body) = stack.api(Method::DELETE, &format!("/agents/{id}"), None).await;
    assert_eq!(status, 200, "{body}");
    let status = agent.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "exit status {status} after retirement; log:\n{}", agent.log());
    agent.wait_for_event("retired this agent (HTTP 410)", Duration::from_secs(1)).await;
}
