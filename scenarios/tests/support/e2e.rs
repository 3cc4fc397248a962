//! The default mode's live checks, shared by the green run and the
//! broken-chart run (which must fail exactly the securityContext check).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use certctl_harness::ensure;
use certctl_harness::env::TestEnv;
use certctl_harness::exec::exec;
use certctl_harness::helm::Release;
use certctl_harness::pods::{wait_pods_ready, wait_rollout};
use certctl_harness::portforward::PortForward;
use certctl_harness::scenario::{Scenario, ScenarioFailure, StepResult};
use certctl_harness::sql::PsqlTarget;
use certctl_harness::tls::TlsMaterial;
use certctl_harness::wait::{wait_until, Deadline, Poll};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams, PostParams};
use rustls_pki_types::pem::PemObject;

/// The default mode's values file, as the chart engineer keeps it.
const MODE_FILE: &str = "scenarios/modes/default.yaml";
/// Names the mode file fixes (the Secret) or that the test adds.
pub const TLS_SECRET: &str = "scenario-server-tls";
pub const API_KEY: &str = "scenario-api-key-0001";
/// A key holding only agent permissions, to prove metrics need metrics.read.
const AGENT_ONLY_KEY: &str = "e2e-agent-only-key-0001";
pub const AGENT_KEY_DIR: &str = "/var/lib/certctl/keys";

/// Which groups of checks to run.
#[derive(Debug, Clone, Copy)]
pub struct Checks {
    /// /ready, TLS, auth, metrics, CSR flow.
    pub api: bool,
}

impl Checks {
    pub fn all() -> Self {
        Self { api: true }
    }
    pub fn security_only() -> Self {
        Self { api: false }
    }
}

/// Installs `chart` in the default mode as release `release` in scenario
/// `name` and runs the checks. `expect_failure` marks a run meant to fail
/// (the bundle is still written; the cluster is not kept for it).
pub async fn default_mode(
    env: &'static TestEnv,
    name: &str,
    release: &str,
    chart: &Path,
    checks: Checks,
    helm_args: &[&str],
    expect_failure: bool,
) -> Result<(), ScenarioFailure> {
    let mut s = Scenario::start(env, name).await.unwrap_or_else(|e| panic!("scenario {name} could not start: {e}"));
    if expect_failure {
        s.expect_failure();
    }
    let ns = s.namespace.clone();
    let client = s.client.clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let full = format!("{release}-certctl");
    let service = format!("{full}-server");

    // --- install -----------------------------------------------------------------
    let tls = TlsMaterial::self_signed(
        "certctl e2e CA",
        &TlsMaterial::service_names(&service, &ns).iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .expect("test CA");
    let rel = mode_release(env, MODE_FILE, release, &ns, chart).set(serde_json::json!({
        "server": {"env": {"CERTCTL_AUTH_SCOPED_KEYS": format!("{AGENT_ONLY_KEY}=agent.register,agent.heartbeat,agent.job.poll")}},
    }));
    let rel = helm_args.iter().fold(rel, |r, a| r.arg(a));
    s.release = Some(release.to_string());
    let (helm, secrets, tls2) = (s.helm.clone(), Api::<Secret>::namespaced(client.clone(), &ns), tls.clone());
    let installed = s
        .step("install", async move {
            secrets.create(&PostParams::default(), &tls2.secret(TLS_SECRET)).await?;
            Ok(helm.install(&rel).await?)
        })
        .await;
    let Ok(installed) = installed else { return s.finish().await };

    let (c, p, f) = (client.clone(), pods.clone(), full.clone());
    let rolled = s
        .step("rollout (postgres, server, agent)", async move {
            let ns = p.namespace().unwrap_or_default().to_string();
            wait_rollout(&Api::<StatefulSet>::namespaced(c.clone(), &ns), &p, &format!("{f}-postgres"), Deadline::secs(300)).await?;
            wait_rollout(&Api::<Deployment>::namespaced(c.clone(), &ns), &p, &format!("{f}-server"), Deadline::secs(300)).await?;
            wait_rollout(&Api::<DaemonSet>::namespaced(c, &ns), &p, &format!("{f}-agent"), Deadline::secs(300)).await?;
            Ok(())
        })
        .await;

    let p = pods.clone();
    let sel = |component: &str| format!("app.kubernetes.io/instance={release},app.kubernetes.io/component={component}");
    let (server_sel, agent_sel) = (sel("server"), sel("agent"));
    let (ss, asel) = (server_sel.clone(), agent_sel.clone());
    let ready = s
        .step("server and agent pods Ready", async move {
            let servers = wait_pods_ready(&p, &ss, 1, Deadline::secs(60)).await?;
            let agents = wait_pods_ready(&p, &asel, 1, Deadline::secs(60)).await?;
            Ok((servers, agents))
        })
        .await;
    let Ok((servers, agents)) = ready.or_else(|_| rolled.map(|_| (Vec::new(), Vec::new()))) else { return s.finish().await };

    // --- securityContext, in every server and agent container ------------------------
    let values = installed.values.clone();
    for (pod, component) in servers.iter().map(|p| (p, "server")).chain(agents.iter().map(|p| (p, "agent"))) {
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let uid = values[component]["securityContext"]["runAsUser"].as_i64().unwrap_or(-1);
        for container in pod.spec.as_ref().map(|s| s.containers.clone()).unwrap_or_default() {
            let (p, pn, cn) = (pods.clone(), pod_name.clone(), container.name.clone());
            let _ = s.step(&format!("securityContext {pn}/{cn}"), async move { security_context(&p, &pn, &cn, uid).await }).await;
        }
    }

    if checks.api {
        // --- API through the Service -----------------------------------------------------
        let fwd = s
            .step("port-forward to the server Service", {
                let (c, ns, svc) = (client.clone(), ns.clone(), service.clone());
                async move { Ok(PortForward::to_service(&c, &ns, &svc, 8443).await?) }
            })
            .await;
        if let Ok(fwd) = fwd {
            let host = format!("{service}.{ns}.svc");
            let addr = fwd.local_addr();
            let ca = tls.ca_pem.clone();
            let (h, c) = (host.clone(), ca.clone());
            let _ = s.step("/ready via the Service says the DB is reachable", async move { ready_via_service(&h, addr, &c).await }).await;
            let (h, c) = (host.clone(), ca.clone());
            let _ = s.step("TLS 1.3 only", async move { tls13_only(&h, addr, &c).await }).await;
            let (h, c) = (host.clone(), ca.clone());
            let _ = s.step("API key required", async move { api_key_required(&h, addr, &c).await }).await;
            let (h, c) = (host.clone(), ca.clone());
            let _ = s.step("metrics need metrics.read", async move { metrics_need_permission(&h, addr, &c).await }).await;
            drop(fwd);
        }

        // --- the CSR flow, live ------------------------------------------------------------
        let agent_pod = agents.first().and_then(|p| p.metadata.name.clone()).unwrap_or_default();
        let db = PsqlTarget::new(&format!("{full}-postgres-0"), "postgres", "certctl", "certctl");
        let p = pods.clone();
        let _ = s
            .step("agent holds a certificate issued by the server's CA", async move { agent_certificate(&p, &agent_pod, &db).await })
            .await;
    }
    s.finish().await
}

/// The binary's shared environment (cluster made on first use); a setup
/// failure fails every test with its phase and fix.
pub async fn shared_env() -> &'static TestEnv {
    match TestEnv::shared_async(certctl_harness::env::Shape::default()).await {
        Ok(env) => env,
        Err(e) => panic!("{e}"),
    }
}

/// The overrides every live install adds to a mode file: the images this run
/// built (or the upstream ones online) and storage kind can provide.
pub fn live_overrides(env: &TestEnv) -> serde_json::Value {
    serde_json::json!({
        "server": {"image": env.images.server.values()},
        "agent": {"image": env.images.agent.values()},
        // kind's default StorageClass offline (kubernetes.io/host-path) makes root-owned
        // 0750 directories that ignore fsGroup: only the root init container can hand
        // them over, and Pod Security "restricted" forbids it.
        "postgresql": {
            "image": env.images.postgres.values(),
            "storage": {"size": "1Gi"},
            "volumePermissions": {"enabled": true},
        },
        "podSecurity": {"level": "baseline"},
    })
}

/// A release of `chart` from the mode file `mode_file` (relative to the
/// workspace) with the live overrides.
pub fn mode_release(env: &TestEnv, mode_file: &str, release: &str, namespace: &str, chart: &Path) -> Release {
    Release::new(release, namespace, chart).values_file(&env.workspace.join(mode_file)).set(live_overrides(env))
}

/// Creates the server TLS Secret the mode files name, for `service` in `namespace`;
/// returns the material (its CA is what clients trust).
pub async fn create_server_tls(client: &kube::Client, namespace: &str, service: &str) -> StepResult<TlsMaterial> {
    let names = TlsMaterial::service_names(service, namespace);
    let tls = TlsMaterial::self_signed("certctl e2e CA", &names.iter().map(String::as_str).collect::<Vec<_>>())?;
    Api::<Secret>::namespaced(client.clone(), namespace).create(&PostParams::default(), &tls.secret(TLS_SECRET)).await?;
    Ok(tls)
}

/// Write to / fails with EROFS; the workload process (PID 1) and an exec'd
/// process have CapEff 0, NoNewPrivs 1 and the configured non-root uid.
pub async fn security_context(pods: &Api<Pod>, pod: &str, container: &str, want_uid: i64) -> StepResult {
    let write = exec(pods, pod, container, &["sh", "-c", "echo x > /e2e-write-probe"]).await?;
    ensure!(
        !write.success(),
        "writing to / in {pod}/{container} SUCCEEDED: the root filesystem is writable (readOnlyRootFilesystem not enforced)"
    );
    // A read-only mount answers EROFS before any permission check; EACCES
    // means the mount is writable and only file modes stopped this uid.
    ensure!(
        write.stderr.contains("Read-only file system"),
        "writing to / in {pod}/{container} failed with {:?} instead of EROFS: the root filesystem is mounted read-write (readOnlyRootFilesystem not enforced)",
        write.stderr.trim()
    );
    ensure!(want_uid > 0, "the installed values give runAsUser {want_uid}: not a non-root uid");
    for (who, path) in [("workload (PID 1)", "/proc/1/status"), ("exec'd process", "/proc/self/status")] {
        let out = exec(pods, pod, container, &["cat", path]).await?;
        ensure!(out.success(), "cat {path} in {pod}/{container} failed: {}", out.stderr.trim());
        let field = |name: &str| out.stdout.lines().find_map(|l| l.strip_prefix(&format!("{name}:")).map(|v| v.trim().to_string()));
        let cap_eff = field("CapEff").unwrap_or_default();
        ensure!(u64::from_str_radix(&cap_eff, 16) == Ok(0), "{who} in {pod}/{container}: CapEff is {cap_eff:?}, want 0");
        let nnp = field("NoNewPrivs").unwrap_or_default();
        ensure!(nnp == "1", "{who} in {pod}/{container}: NoNewPrivs is {nnp:?}, want 1");
        let uids = field("Uid").unwrap_or_default();
        ensure!(
            uids.split_whitespace().all(|u| u == want_uid.to_string()),
            "{who} in {pod}/{container}: Uid (real, effective, saved, fs) is {uids:?}, want all {want_uid}"
        );
    }
    Ok(())
}

/// An HTTPS client trusting only `ca`, TLS 1.3 only, `host` pinned to the forward.
pub fn client(host: &str, addr: SocketAddr, ca: &str) -> StepResult<reqwest::Client> {
    let cfg = tls_config(ca, &[&rustls::version::TLS13])?;
    Ok(reqwest::Client::builder().use_preconfigured_tls(cfg).resolve(host, addr).timeout(Duration::from_secs(10)).build()?)
}

pub fn tls_config(ca: &str, versions: &[&'static rustls::SupportedProtocolVersion]) -> StepResult<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

pub async fn ready_via_service(host: &str, addr: SocketAddr, ca: &str) -> StepResult {
    let http = client(host, addr, ca)?;
    let url = format!("https://{host}:{}/ready", addr.port());
    let body: serde_json::Value = wait_until("/ready to answer 200", Deadline::secs(60), || async {
        match http.get(&url).send().await {
            Ok(r) if r.status() == 200 => {
                Ok(Poll::Ready(serde_json::from_str::<serde_json::Value>(&r.text().await.unwrap_or_default()).unwrap_or_default()))
            }
            Ok(r) => Ok(Poll::Pending(format!("HTTP {} {}", r.status(), r.text().await.unwrap_or_default()))),
            Err(e) => Ok(Poll::Pending(format!("request failed: {e}"))),
        }
    })
    .await?;
    ensure!(body["db"] == "reachable" && body["status"] == "ready", "/ready answered {body}, want status=ready db=reachable");
    Ok(())
}

async fn tls13_only(host: &str, addr: SocketAddr, ca: &str) -> StepResult {
    use tokio_rustls::TlsConnector;
    let name = rustls_pki_types::ServerName::try_from(host.to_string())?;
    let tls12 = TlsConnector::from(Arc::new(tls_config(ca, &[&rustls::version::TLS12])?));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let refused = tls12.connect(name.clone(), tcp).await;
    ensure!(refused.is_err(), "a TLS 1.2-only client completed a handshake: the server accepts TLS 1.2");
    let tls13 = TlsConnector::from(Arc::new(tls_config(ca, &[&rustls::version::TLS13])?));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let stream = tls13
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS 1.3 handshake (verifying the test CA and the Service name) failed: {e}"))?;
    let version = stream.get_ref().1.protocol_version();
    ensure!(version == Some(rustls::ProtocolVersion::TLSv1_3), "negotiated {version:?}, want TLSv1_3");
    Ok(())
}

async fn api_key_required(host: &str, addr: SocketAddr, ca: &str) -> StepResult {
    let http = client(host, addr, ca)?;
    let url = format!("https://{host}:{}/api/v1/certificates", addr.port());
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

async fn metrics_need_permission(host: &str, addr: SocketAddr, ca: &str) -> StepResult {
    let http = client(host, addr, ca)?;
    let url = format!("https://{host}:{}/api/v1/metrics/prometheus", addr.port());
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

/// The agent's own certificate, read from its key dir, verifies against the
/// CA the server keeps in its database (read independently, through psql).
pub async fn agent_certificate(pods: &Api<Pod>, agent_pod: &str, db: &PsqlTarget) -> StepResult {
    let path = format!("{AGENT_KEY_DIR}/agent.crt");
    let cert_pem = wait_until(&format!("{agent_pod} to hold {path}"), Deadline::secs(120).every_millis(2000), || async {
        let out = exec(pods, agent_pod, "agent", &["cat", &path]).await.map_err(|e| kube::Error::Service(Box::new(e)))?;
        Ok(if out.success() && out.stdout.contains("BEGIN CERTIFICATE") {
            Poll::Ready(out.stdout)
        } else {
            Poll::Pending(format!("cat {path}: exit {} {}", out.code, out.stderr.trim()))
        })
    })
    .await?;
    let ca_pem = db.scalar(pods, "select cert_pem from ca where id = 1").await?;
    let (_, ca) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).map_err(|e| format!("CA from the database is not PEM: {e}"))?;
    let ca = ca.parse_x509().map_err(|e| format!("CA from the database: {e}"))?;
    let (_, leaf) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).map_err(|e| format!("{path} is not PEM: {e}"))?;
    let leaf = leaf.parse_x509().map_err(|e| format!("{path}: {e}"))?;
    ensure!(leaf.issuer() == ca.subject(), "{path} issuer {} != server CA subject {}", leaf.issuer(), ca.subject());
    leaf.verify_signature(Some(ca.public_key())).map_err(|e| format!("{path} does not verify against the server's CA: {e}"))?;
    let cn: Vec<String> = leaf.subject().iter_common_name().filter_map(|c| c.as_str().ok().map(String::from)).collect();
    ensure!(cn.iter().any(|c| c == agent_pod), "{path} CN {cn:?}, want the agent's name {agent_pod}");
    let mode = exec(pods, agent_pod, "agent", &["stat", "-L", "-c", "%a", &format!("{AGENT_KEY_DIR}/agent.key")]).await?;
    ensure!(mode.stdout.trim() == "600", "agent.key mode {:?}, want 600", mode.stdout.trim());
    Ok(())
}

/// A scratch copy of `chart` whose templates put readOnlyRootFilesystem at
/// pod scope instead of container scope — the upstream audit's class of bug.
pub fn broken_chart(chart: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_dir(chart, dir.path());
    let helpers = dir.path().join("templates/_helpers.tpl");
    let text = std::fs::read_to_string(&helpers).expect("chart helpers");
    let broken = break_read_only_root(&text);
    assert_ne!(broken, text, "could not find where the chart splits readOnlyRootFilesystem into container scope");
    std::fs::write(&helpers, broken).expect("write broken helpers");
    dir
}

/// Moves the `readOnlyRootFilesystem` key from the container-scope list of
/// keys to the pod-scope list in the helpers' securityContext split.
fn break_read_only_root(helpers: &str) -> String {
    helpers.replacen("\"readOnlyRootFilesystem\" ", "", 1).replacen("\"runAsNonRoot\"", "\"runAsNonRoot\" \"readOnlyRootFilesystem\"", 1)
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read chart dir") {
        let entry = entry.expect("dir entry");
        let target: PathBuf = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Pods of a selector (for callers outside the steps).
pub async fn list(pods: &Api<Pod>, selector: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(selector)).await.map(|l| l.items).unwrap_or_default()
}
