//! The promises every mode keeps, as step bodies: hardened containers at
//! runtime, TLS 1.3 only, an API key required, metrics behind their
//! permission, `/ready` through the Service, and the agent's certificate
//! issued by the server's CA.

use std::sync::Arc;

use certctl_harness::ensure;
use certctl_harness::exec::exec;
use certctl_harness::names::Component;
use certctl_harness::scenario::StepResult;
use certctl_harness::wait::{wait_until, Classify, Deadline, Poll};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use rustls_pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::http::tls_config;
use super::live::{Container, Endpoint, Live, AGENT_KEY_DIR, AGENT_ONLY_KEY, API_KEY};

/// Write to / fails with EROFS; the workload process (PID 1) and an exec'd
/// process have CapEff 0, NoNewPrivs 1 and the configured non-root uid.
pub async fn hardened(c: &Container) -> StepResult {
    let write = exec(c.pods(), &c.pod, &c.name, &["sh", "-c", "echo x > /e2e-write-probe"]).await?;
    ensure!(!write.success(), "writing to / in {c} SUCCEEDED: the root filesystem is writable (readOnlyRootFilesystem not enforced)");
    // A read-only mount answers EROFS before any permission check; EACCES
    // means the mount is writable and only file modes stopped this uid.
    ensure!(
        write.stderr.contains("Read-only file system"),
        "writing to / in {c} failed with {:?} instead of EROFS: the root filesystem is mounted read-write (readOnlyRootFilesystem not enforced)",
        write.stderr.trim()
    );
    ensure!(c.uid > 0, "the installed values give {} runAsUser {}: not a non-root uid", c.component, c.uid);
    for (who, path) in [("workload (PID 1)", "/proc/1/status"), ("exec'd process", "/proc/self/status")] {
        let out = exec(c.pods(), &c.pod, &c.name, &["cat", path]).await?;
        ensure!(out.success(), "cat {path} in {c} failed: {}", out.stderr.trim());
        let field = |name: &str| out.stdout.lines().find_map(|l| l.strip_prefix(&format!("{name}:")).map(|v| v.trim().to_string()));
        let cap_eff = field("CapEff").unwrap_or_default();
        ensure!(u64::from_str_radix(&cap_eff, 16) == Ok(0), "{who} in {c}: CapEff is {cap_eff:?}, want 0");
        let nnp = field("NoNewPrivs").unwrap_or_default();
        ensure!(nnp == "1", "{who} in {c}: NoNewPrivs is {nnp:?}, want 1");
        let uids = field("Uid").unwrap_or_default();
        ensure!(
            uids.split_whitespace().all(|u| u == c.uid.to_string()),
            "{who} in {c}: Uid (real, effective, saved, fs) is {uids:?}, want all {}",
            c.uid
        );
    }
    Ok(())
}

/// `/ready` through the Service answers 200 with the database reachable.
pub async fn ready_via_service(server: &Endpoint) -> StepResult {
    let http = server.client()?;
    let url = server.url("/ready");
    let body: serde_json::Value = wait_until("/ready to answer 200", Deadline::secs(60), || async {
        let response = http.get(&url).send().await.transient()?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        Ok::<_, certctl_harness::wait::PollError>(if status == 200 {
            Poll::Ready(serde_json::from_str(&text).unwrap_or_default())
        } else {
            Poll::Pending(format!("HTTP {status} {text}"))
        })
    })
    .await?;
    ensure!(body["db"] == "reachable" && body["status"] == "ready", "/ready answered {body}, want status=ready db=reachable");
    Ok(())
}

/// A TLS 1.2-only client is refused; TLS 1.3 negotiates, verifying the
/// server's CA and the Service name.
pub async fn tls13_only(server: &Endpoint) -> StepResult {
    let name = ServerName::try_from(server.host.clone())?;
    let tls12 = TlsConnector::from(Arc::new(tls_config(&server.ca, &[&rustls::version::TLS12])?));
    let refused = tls12.connect(name.clone(), tokio::net::TcpStream::connect(server.addr()).await?).await;
    ensure!(refused.is_err(), "a TLS 1.2-only client completed a handshake: the server accepts TLS 1.2");
    let tls13 = TlsConnector::from(Arc::new(tls_config(&server.ca, &[&rustls::version::TLS13])?));
    let stream = tls13
        .connect(name, tokio::net::TcpStream::connect(server.addr()).await?)
        .await
        .map_err(|e| format!("TLS 1.3 handshake (verifying the server's CA and the Service name) failed: {e}"))?;
    let version = stream.get_ref().1.protocol_version();
    ensure!(version == Some(rustls::ProtocolVersion::TLSv1_3), "negotiated {version:?}, want TLSv1_3");
    Ok(())
}

/// No key and a wrong key get 401 with a Bearer challenge; the chart's key 200.
pub async fn api_key_required(server: &Endpoint) -> StepResult {
    let http = server.client()?;
    let url = server.url("/api/v1/certificates");
    let anon = http.get(&url).send().await?;
    ensure!(anon.status() == 401, "no key: HTTP {}, want 401", anon.status());
    let challenge = anon.headers().get("www-authenticate").map(|v| v.to_str().unwrap_or("").to_string()).unwrap_or_default();
    ensure!(challenge.starts_with("Bearer"), "401 without a Bearer WWW-Authenticate challenge: {challenge:?}");
    let wrong = http.get(&url).bearer_auth("not-the-key").send().await?;
    ensure!(wrong.status() == 401, "wrong key: HTTP {}, want 401", wrong.status());
    let right = http.get(&url).bearer_auth(API_KEY).send().await?;
    ensure!(right.status() == 200, "the chart's key: HTTP {} {}, want 200", right.status(), right.text().await.unwrap_or_default());
    Ok(())
}

/// Metrics: no key 401, an agent-only key 403, the chart's key 200 with Prometheus text.
pub async fn metrics_need_permission(server: &Endpoint) -> StepResult {
    let http = server.client()?;
    let url = server.url("/api/v1/metrics/prometheus");
    let anon = http.get(&url).send().await?;
    ensure!(anon.status() == 401, "metrics without a key: HTTP {}, want 401", anon.status());
    let scoped = http.get(&url).bearer_auth(AGENT_ONLY_KEY).send().await?;
    ensure!(scoped.status() == 403, "metrics with a key lacking metrics.read: HTTP {}, want 403", scoped.status());
    let full = http.get(&url).bearer_auth(API_KEY).send().await?;
    ensure!(full.status() == 200, "metrics with the chart's key: HTTP {}, want 200", full.status());
    let text = full.text().await?;
    ensure!(text.contains("# TYPE"), "metrics body is not Prometheus text: {}", &text[..text.len().min(200)]);
    Ok(())
}

/// The CA certificate the server keeps, read independently of the server:
/// psql in the bundled database, or in the external one.
pub async fn server_ca_from_database(live: &Live<'_>) -> StepResult<String> {
    live.sql("select cert_pem from ca where id = 1").await
}

/// Every agent's own certificate, read from its key directory, verifies
/// against the CA in the server's database, names the agent, and its key
/// is private to it (0600).
pub async fn agents_hold_certificates(live: &Live<'_>) -> StepResult {
    let agents = live.ready(Component::Agent).await?;
    ensure!(!agents.is_empty(), "no Ready agent pod");
    let ca_pem = server_ca_from_database(live).await?;
    let (_, ca) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).map_err(|e| format!("CA from the database is not PEM: {e}"))?;
    let ca = ca.parse_x509().map_err(|e| format!("CA from the database: {e}"))?;
    let pods = live.pods();
    let path = format!("{AGENT_KEY_DIR}/agent.crt");
    for agent in &agents {
        let cert_pem = wait_until(&format!("{agent} to hold {path}"), Deadline::secs(120).every_millis(2000), || async {
            let out = exec(&pods, agent, "agent", &["cat", &path]).await.fatal()?;
            Ok::<_, certctl_harness::wait::PollError>(if out.success() && out.stdout.contains("BEGIN CERTIFICATE") {
                Poll::Ready(out.stdout)
            } else {
                Poll::Pending(format!("cat {path}: exit {} {}", out.code, out.stderr.trim()))
            })
        })
        .await?;
        let (_, leaf) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).map_err(|e| format!("{agent}:{path} is not PEM: {e}"))?;
        let leaf = leaf.parse_x509().map_err(|e| format!("{agent}:{path}: {e}"))?;
        ensure!(leaf.issuer() == ca.subject(), "{agent}:{path} issuer {} != server CA subject {}", leaf.issuer(), ca.subject());
        leaf.verify_signature(Some(ca.public_key())).map_err(|e| format!("{agent}:{path} does not verify against the server's CA: {e}"))?;
        let cn: Vec<String> = leaf.subject().iter_common_name().filter_map(|c| c.as_str().ok().map(String::from)).collect();
        ensure!(cn.iter().any(|c| c == agent), "{agent}:{path} CN {cn:?}, want the agent's name {agent}");
        let mode = exec(&pods, agent, "agent", &["stat", "-L", "-c", "%a", &format!("{AGENT_KEY_DIR}/agent.key")]).await?;
        ensure!(mode.stdout.trim() == "600", "{agent}: agent.key mode {:?}, want 600", mode.stdout.trim());
    }
    Ok(())
}

/// The release's namespace enforces Pod Security "restricted" (so every pod
/// running was admitted under it) and helm relayed no warning from the API
/// server about it.
pub async fn restricted_without_warnings(live: &Live<'_>) -> StepResult {
    let ns = Api::<Namespace>::all(live.s.client.clone()).get(&live.names.namespace).await?;
    let labels = ns.metadata.labels.unwrap_or_default();
    for mode in ["enforce", "warn"] {
        let level = labels.get(&format!("pod-security.kubernetes.io/{mode}")).map(String::as_str);
        ensure!(level == Some("restricted"), "namespace {} has pod-security {mode}={level:?}, want restricted", live.names.namespace);
    }
    let warnings: Vec<&String> =
        live.installed.warnings.iter().filter(|w| w.contains("PodSecurity") || w.contains("would violate")).collect();
    ensure!(
        warnings.is_empty(),
        "helm relayed Pod Security warnings:\n  {}",
        warnings.iter().map(|w| w.as_str()).collect::<Vec<_>>().join("\n  ")
    );
    Ok(())
}
