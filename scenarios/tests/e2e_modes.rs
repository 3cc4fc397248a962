//! The HA, external-database and password-rotation promises, live on one
//! kind cluster (one namespace per test, run side by side). Run with
//! `cargo test --features e2e` (environment knobs: docs/harness.md).
#![cfg(feature = "e2e")]

#[path = "support/e2e.rs"]
mod e2e;

use std::net::SocketAddr;
use std::time::Duration;

use certctl_harness::ensure;
use certctl_harness::env::TestEnv;
use certctl_harness::evict::evict;
use certctl_harness::external_db::{kind_network, ExternalDbSpec, ExternalPostgres};
use certctl_harness::helm::Release;
use certctl_harness::logs::{logs_since, Instance};
use certctl_harness::pods::{is_ready, wait_pods_ready, wait_rollout};
use certctl_harness::portforward::PortForward;
use certctl_harness::probe::{ProbePod, ProbeTool, Verdict};
use certctl_harness::scenario::{Scenario, StepFailed, StepResult};
use certctl_harness::sql::PsqlTarget;
use certctl_harness::tls::TlsMaterial;
use certctl_harness::wait::{wait_until, Deadline, Poll};
use certctl_scenarios::crd::CachedCrd;
use e2e::{agent_certificate, create_server_tls, list, mode_release, ready_via_service, tls_config, API_KEY};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams};

async fn env() -> &'static TestEnv {
    e2e::shared_env().await
}

fn selector(release: &str, component: &str) -> String {
    format!("app.kubernetes.io/instance={release},app.kubernetes.io/component={component}")
}

/// Waits for the server Deployment (and the postgres StatefulSet when
/// bundled, and the agent DaemonSet) to roll out, then for `servers` Ready
/// server pods; returns them.
async fn rolled_out(client: &kube::Client, ns: &str, release: &str, servers: usize, bundled_db: bool) -> StepResult<Vec<Pod>> {
    let full = format!("{release}-certctl");
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    if bundled_db {
        wait_rollout(&Api::<StatefulSet>::namespaced(client.clone(), ns), &pods, &format!("{full}-postgres"), Deadline::secs(300)).await?;
    }
    wait_rollout(&Api::<Deployment>::namespaced(client.clone(), ns), &pods, &format!("{full}-server"), Deadline::secs(300)).await?;
    wait_rollout(&Api::<DaemonSet>::namespaced(client.clone(), ns), &pods, &format!("{full}-agent"), Deadline::secs(300)).await?;
    Ok(wait_pods_ready(&pods, &selector(release, "server"), servers, Deadline::secs(120)).await?)
}

/// The "install" step of the modes that bring their own server TLS Secret:
/// the Secret for `service`, then `helm install`.
async fn install_with_server_tls(s: &mut Scenario, rel: &Release, service: &str) -> Result<TlsMaterial, StepFailed> {
    let (helm, client, ns, svc, rel) = (s.helm.clone(), s.client.clone(), s.namespace.clone(), service.to_string(), rel.clone());
    s.step("install", async move {
        let tls = create_server_tls(&client, &ns, &svc).await?;
        helm.install(&rel).await?;
        Ok(tls)
    })
    .await
}

fn names(pods: &[Pod]) -> Vec<String> {
    pods.iter().filter_map(|p| p.metadata.name.clone()).collect()
}

// --- HA --------------------------------------------------------------------------------

/// Three replicas behind a PodDisruptionBudget, a NetworkPolicy and a
/// ServiceMonitor: the budget refuses the eviction that would break it, the
/// policy admits this release's agents and nobody else, and the
/// ServiceMonitor's scrape settings (key, CA, server name) work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_mode_holds_live() {
    let env = env().await;
    let mut s = Scenario::start(env, "ha").await.unwrap_or_else(|e| panic!("scenario ha could not start: {e}"));
    let (ns, client) = (s.namespace.clone(), s.client.clone());
    let release = "h";
    let full = format!("{release}-certctl");
    let service = format!("{full}-server");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);

    let c = client.clone();
    let _ = s.step("ServiceMonitor CRD installed", async move { install_crd(&c, CachedCrd::ServiceMonitor).await }).await;

    let rel = mode_release(env, "scenarios/modes/ha.yaml", release, &ns, &env.workspace.join("chart"));
    s.release = Some(release.into());
    let Ok(_tls) = install_with_server_tls(&mut s, &rel, &service).await else {
        s.finish().await.unwrap();
        return;
    };
    let (c, n) = (client.clone(), ns.clone());
    if s.step("rollout: 3 servers Ready", async move { rolled_out(&c, &n, release, 3, true).await }).await.is_err() {
        s.finish().await.unwrap();
        return;
    }

    let (c, n, f) = (client.clone(), ns.clone(), full.clone());
    let _ =
        s.step("PodDisruptionBudget refuses the eviction that would break it", async move { pdb_holds(&c, &n, &f, release).await }).await;

    let agent_pod = list(&pods, &selector(release, "agent")).await.first().and_then(|p| p.metadata.name.clone()).unwrap_or_default();
    let (c, n, svc, a) = (client.clone(), ns.clone(), service.clone(), agent_pod.clone());
    let probe_image = env
        .images
        .netprobe
        .as_ref()
        .map(|i| (i.to_string(), ProbeTool::Netprobe))
        .unwrap_or((env.images.agent.to_string(), ProbeTool::Bash));
    let _ = s
        .step("NetworkPolicy admits this release's agents and nobody else", async move {
            network_policy_holds(&c, &n, &svc, &a, release, &probe_image).await
        })
        .await;

    let (c, n, f) = (client.clone(), ns.clone(), full.clone());
    let _ = s
        .step("ServiceMonitor's key, CA and server name make a working scrape", async move { service_monitor_scrapes(&c, &n, &f).await })
        .await;
    match env.images.prometheus.as_ref() {
        Some(image) => {
            let (c, n, f, image, helm) = (client.clone(), ns.clone(), full.clone(), image.to_string(), s.helm.clone());
            let admitting = rel.clone().set(serde_json::json!({"networkPolicy": {"extraIngress": [{
                "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": format!("{ns}-monitoring")}},
                          "podSelector": {"matchLabels": {"app": "e2e-prometheus"}}}],
                "ports": [{"protocol": "TCP", "port": 8443}],
            }]}}));
            let _ = s
                .step(
                    "a real Prometheus with the ServiceMonitor's settings: blocked by the policy, scraping once extraIngress admits it",
                    async move { prometheus_blocked_then_admitted(&c, &n, &f, release, &image, &helm, &admitting).await },
                )
                .await;
        }
        None => {
            let _ = s
                .step("a real Prometheus scrapes the servers", async {
                    Err::<(), _>("images.env has no PROMETHEUS_IMAGE: run `bash ci/offline/ensure.sh apps`".into())
                })
                .await;
        }
    }

    let db = PsqlTarget::new(&format!("{full}-postgres-0"), "postgres", "certctl", "certctl");
    let p = pods.clone();
    let _ =
        s.step("agent holds a certificate issued by the server's CA", async move { agent_certificate(&p, &agent_pod, &db).await }).await;
    s.finish().await.unwrap();
}

/// Creates (or updates) a CRD from the cache and waits until it is Established.
async fn install_crd(client: &kube::Client, crd: CachedCrd) -> StepResult {
    let text = crd.read()?;
    let object: CustomResourceDefinition = serde_yaml_ng::from_str(&text)?;
    let name = object.metadata.name.clone().unwrap_or_default();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(&name, &PatchParams::apply("certctl-e2e").force(), &Patch::Apply(&object)).await?;
    wait_until(&format!("CRD {name} to be Established"), Deadline::secs(60), || async {
        let c = crds.get(&name).await?;
        let conditions = c.status.and_then(|s| s.conditions).unwrap_or_default();
        Ok(if conditions.iter().any(|c| c.type_ == "Established" && c.status == "True") {
            Poll::Ready(())
        } else {
            Poll::Pending(format!("conditions {:?}", conditions.iter().map(|c| format!("{}={}", c.type_, c.status)).collect::<Vec<_>>()))
        })
    })
    .await?;
    Ok(())
}

/// With 3 Ready servers and minAvailable 1, two evictions go through (the
/// positive control) and the third, made before any replacement is Ready,
/// is refused with 429; the budget then recovers.
async fn pdb_holds(client: &kube::Client, ns: &str, full: &str, release: &str) -> StepResult {
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let name = format!("{full}-server");
    let allows = |want_healthy: i32, want_allowed: i32| {
        let (pdbs, name) = (pdbs.clone(), name.clone());
        async move {
            wait_until(&format!("PDB {name} to see {want_healthy} healthy and allow {want_allowed}"), Deadline::secs(120), || async {
                let pdb = pdbs.get(&name).await?;
                let generation = pdb.metadata.generation;
                let st = pdb.status.unwrap_or_default();
                let seen = format!(
                    "observedGeneration {:?}/{generation:?}, currentHealthy {}, desiredHealthy {}, disruptionsAllowed {}",
                    st.observed_generation, st.current_healthy, st.desired_healthy, st.disruptions_allowed
                );
                Ok(
                    if st.observed_generation == generation && st.current_healthy == want_healthy && st.disruptions_allowed == want_allowed
                    {
                        Poll::Ready(())
                    } else {
                        Poll::Pending(seen)
                    },
                )
            })
            .await
        }
    };
    allows(3, 2).await?;
    let servers: Vec<String> = names(&list(&pods, &selector(release, "server")).await.into_iter().filter(is_ready).collect::<Vec<_>>());
    ensure!(servers.len() == 3, "want 3 Ready server pods before evicting, found {servers:?}");
    for (i, pod) in servers.iter().enumerate().take(2) {
        let answer = evict(&pods, pod).await?;
        ensure!(
            answer.evicted(),
            "eviction {} of {pod} was refused ({} {}: {}) although the budget allowed it",
            i + 1,
            answer.code,
            answer.reason,
            answer.message
        );
    }
    // What the API server decides on, read just before asking.
    let seen_pdb = pdbs.get(&name).await?.status.unwrap_or_default();
    let seen_pod = pods.get(&servers[2]).await?;
    let third = evict(&pods, &servers[2]).await?;
    ensure!(
        third.blocked_by_budget(),
        "the third eviction ({}) answered {} {} {:?}: the PodDisruptionBudget did not hold with one server left \
         (just before: budget currentHealthy {} desiredHealthy {} disruptionsAllowed {}; pod {})",
        servers[2],
        third.code,
        third.reason,
        third.message,
        seen_pdb.current_healthy,
        seen_pdb.desired_healthy,
        seen_pdb.disruptions_allowed,
        certctl_harness::pods::pod_summary(&seen_pod)
    );
    ensure!(third.message.contains("disruption budget"), "429 without the budget's words: {}", third.message);
    let still = pods.get(&servers[2]).await?;
    ensure!(still.metadata.deletion_timestamp.is_none(), "{} is being deleted although its eviction was refused", servers[2]);
    // Replacements come up and the budget allows two disruptions again.
    wait_pods_ready(&pods, &selector(release, "server"), 3, Deadline::secs(180)).await?;
    allows(3, 2).await?;
    Ok(())
}

/// Positive control first: the release's own agent pod reaches the server
/// Service. Then a pod in the namespace without the agent's labels, and a
/// pod with the agent's labels in another namespace, are both blocked (held
/// 10 s). The server's egress is limited too: it cannot open the Kubernetes API.
async fn network_policy_holds(
    client: &kube::Client,
    ns: &str,
    service: &str,
    agent_pod: &str,
    release: &str,
    probe: &(String, ProbeTool),
) -> StepResult {
    let target = format!("{service}.{ns}.svc:8443");
    let (within, hold) = (Duration::from_secs(60), Duration::from_secs(10));
    ensure!(!agent_pod.is_empty(), "no agent pod of release {release} to probe from");
    let agent = ProbePod::existing(Api::namespaced(client.clone(), ns), agent_pod, "agent", ProbeTool::Bash);
    agent.expect(&target, Verdict::Connected, within, Duration::from_secs(5)).await?;

    let stranger = ProbePod::start(client.clone(), ns, "e2e-stranger", &[("app", "e2e-stranger")], &probe.0, probe.1).await?;
    let stranger_result = stranger.expect(&target, Verdict::TimedOut, within, hold).await;
    let _ = stranger.delete().await;
    stranger_result?;

    // Same labels as the agents, wrong namespace: the policy's podSelector is namespace-local.
    let other = format!("{ns}-outside");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": other, "labels": {"certctl.e2e/owner": ns}}}))?;
    match namespaces.create(&PostParams::default(), &namespace).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    let impostor_labels =
        [("app.kubernetes.io/name", "certctl"), ("app.kubernetes.io/instance", release), ("app.kubernetes.io/component", "agent")];
    let outside = async {
        let impostor = ProbePod::start(client.clone(), &other, "e2e-impostor", &impostor_labels, &probe.0, probe.1).await?;
        let verdict = impostor.expect(&target, Verdict::TimedOut, within, hold).await;
        let _ = impostor.delete().await;
        verdict
    }
    .await;
    let _ = namespaces.delete(&other, &DeleteParams::background()).await;
    outside?;

    // Egress: the server may resolve names and reach its database, nothing else.
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let server = list(&pods, &selector(release, "server"))
        .await
        .into_iter()
        .find(is_ready)
        .and_then(|p| p.metadata.name)
        .ok_or("no Ready server pod")?;
    let from_server = ProbePod::existing(pods, &server, "server", ProbeTool::Bash);
    from_server.expect("kubernetes.default.svc:443", Verdict::TimedOut, within, Duration::from_secs(5)).await?;
    Ok(())
}

/// Reads the ServiceMonitor as Prometheus would, resolves its bearer-token
/// Secret and CA Secret, and scrapes one server pod with exactly those
/// settings (TLS verified against the CA for `serverName`).
async fn service_monitor_scrapes(client: &kube::Client, ns: &str, full: &str) -> StepResult {
    let ScrapeSettings { token, ca, server_name, path, spec } = scrape_settings(client, ns, full).await?;
    let endpoint = &spec["endpoints"][0];
    ensure!(endpoint["scheme"] == "https", "ServiceMonitor scheme {}, want https", endpoint["scheme"]);
    ensure!(endpoint["tlsConfig"]["insecureSkipVerify"] != true, "ServiceMonitor skips TLS verification");
    ensure!(!server_name.is_empty(), "ServiceMonitor tlsConfig has no serverName");

    // The Service the monitor selects has the port it names.
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let selector_labels = spec["selector"]["matchLabels"].as_object().ok_or("ServiceMonitor has no matchLabels")?;
    let label_selector =
        selector_labels.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(",");
    let selected = services.list(&ListParams::default().labels(&label_selector)).await?.items;
    let port_name = endpoint["port"].as_str().unwrap_or_default();
    ensure!(
        selected.iter().any(|svc| svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .is_some_and(|ports| ports.iter().any(|p| p.name.as_deref() == Some(port_name)))),
        "no Service selected by {label_selector} has a port named {port_name:?}"
    );

    // Scrape a pod directly (as Prometheus does, per endpoint).
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod = list(&pods, &label_selector).await.into_iter().find(is_ready).and_then(|p| p.metadata.name).ok_or("no Ready server pod")?;
    let fwd = PortForward::to_pod(pods, &pod, 8443).await?;
    let http = https_client(&server_name, fwd.local_addr(), &ca, Duration::from_secs(10))?;
    let url = format!("https://{server_name}:{}{path}", fwd.local_addr().port());
    let response = http
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .map_err(|e| format!("scrape {url} with the ServiceMonitor's CA and serverName: {e}"))?;
    ensure!(response.status() == 200, "scrape with the ServiceMonitor's key: HTTP {}", response.status());
    let body = response.text().await?;
    ensure!(body.contains("certctl_db_pool_max_connections"), "scrape body lacks certctl metrics: {}", &body[..body.len().min(300)]);
    Ok(())
}

/// What Prometheus needs from a ServiceMonitor to scrape like the operator would.
struct ScrapeSettings {
    token: String,
    ca: String,
    server_name: String,
    path: String,
    /// The ServiceMonitor's whole spec, for checks beyond the scrape.
    spec: serde_json::Value,
}

async fn scrape_settings(client: &kube::Client, ns: &str, full: &str) -> StepResult<ScrapeSettings> {
    let gvk = GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor");
    let monitors: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk(&gvk));
    let sm = monitors.get(&format!("{full}-server")).await?;
    let endpoint = &sm.data["spec"]["endpoints"][0];
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let value = |sel: &serde_json::Value| {
        let (secrets, name, key) =
            (secrets.clone(), sel["name"].as_str().unwrap_or_default().to_string(), sel["key"].as_str().unwrap_or_default().to_string());
        async move {
            let secret = secrets.get(&name).await.map_err(|e| format!("Secret {name} named by the ServiceMonitor: {e}"))?;
            let bytes = secret
                .data
                .and_then(|d| d.get(&key).cloned())
                .ok_or_else(|| format!("Secret {name} has no key {key:?} (named by the ServiceMonitor)"))?;
            StepResult::Ok(String::from_utf8(bytes.0)?.trim().to_string())
        }
    };
    Ok(ScrapeSettings {
        token: value(&endpoint["bearerTokenSecret"]).await?,
        ca: value(&endpoint["tlsConfig"]["ca"]["secret"]).await?,
        server_name: endpoint["tlsConfig"]["serverName"].as_str().unwrap_or_default().to_string(),
        path: endpoint["path"].as_str().unwrap_or("/metrics").to_string(),
        spec: sm.data["spec"].clone(),
    })
}

/// Runs Prometheus in a namespace of its own with a static scrape of every
/// server pod, configured from the ServiceMonitor (bearer token file, CA file,
/// server name, path). The NetworkPolicy drops it (every `up` 0, held);
/// after `helm upgrade` with an extraIngress for that namespace and pod,
/// every `up` turns 1 and certctl's metrics are in Prometheus.
async fn prometheus_blocked_then_admitted(
    client: &kube::Client,
    ns: &str,
    full: &str,
    release: &str,
    image: &str,
    helm: &certctl_harness::helm::Helm,
    admitting: &Release,
) -> StepResult {
    let settings = scrape_settings(client, ns, full).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let targets: Vec<String> = list(&pods, &selector(release, "server"))
        .await
        .into_iter()
        .filter(is_ready)
        .filter_map(|p| p.status.and_then(|s| s.pod_ip))
        .map(|ip| format!("{ip}:8443"))
        .collect();
    ensure!(targets.len() == 3, "want 3 Ready server pods with IPs to scrape, found {targets:?}");
    let monitoring = format!("{ns}-monitoring");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": monitoring, "labels": {"certctl.e2e/owner": ns}}}))?;
    namespaces.create(&PostParams::default(), &namespace).await?;
    let result = async {
        let config = serde_json::json!({
            "global": {"scrape_interval": "3s", "scrape_timeout": "2s"},
            "scrape_configs": [{
                "job_name": "certctl",
                "scheme": "https",
                "metrics_path": settings.path,
                "authorization": {"credentials_file": "/etc/scrape/token"},
                "tls_config": {"ca_file": "/etc/scrape/ca.crt", "server_name": settings.server_name},
                "static_configs": [{"targets": targets}],
            }],
        });
        let objects: [serde_json::Value; 3] = [
            serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "scrape"}, "stringData": {"token": settings.token, "ca.crt": settings.ca}}),
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "prometheus"}, "data": {"prometheus.yml": serde_yaml_ng::to_string(&config)?}}),
            serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "prometheus", "labels": {"app": "e2e-prometheus"}}, "spec": {
                "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "fsGroup": 65532},
                "containers": [{"name": "prometheus", "image": image, "imagePullPolicy": "IfNotPresent",
                    "args": ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", "--web.listen-address=:9090"],
                    "readinessProbe": {"httpGet": {"path": "/-/ready", "port": 9090}, "periodSeconds": 2},
                    "volumeMounts": [{"name": "config", "mountPath": "/etc/prometheus"}, {"name": "scrape", "mountPath": "/etc/scrape"}, {"name": "data", "mountPath": "/prometheus"}]}],
                "volumes": [{"name": "config", "configMap": {"name": "prometheus"}}, {"name": "scrape", "secret": {"secretName": "scrape"}}, {"name": "data", "emptyDir": {}}],
            }}),
        ];
        Api::<Secret>::namespaced(client.clone(), &monitoring).create(&PostParams::default(), &serde_json::from_value(objects[0].clone())?).await?;
        Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), &monitoring).create(&PostParams::default(), &serde_json::from_value(objects[1].clone())?).await?;
        let prom_pods: Api<Pod> = Api::namespaced(client.clone(), &monitoring);
        prom_pods.create(&PostParams::default(), &serde_json::from_value(objects[2].clone())?).await?;
        wait_pods_ready(&prom_pods, "app=e2e-prometheus", 1, Deadline::secs(120)).await?;
        let fwd = PortForward::to_pod(prom_pods, "prometheus", 9090).await?;
        let query = |q: &'static str| {
            let url = format!("http://{}/api/v1/query", fwd.local_addr());
            async move {
                let url = reqwest::Url::parse_with_params(&url, &[("query", q)])?;
                let text = reqwest::Client::new().get(url).timeout(Duration::from_secs(10)).send().await?.text().await?;
                let body: serde_json::Value = serde_json::from_str(&text)?;
                StepResult::Ok(body["data"]["result"].as_array().cloned().unwrap_or_default().iter().map(|r| r["value"][1].as_str().unwrap_or_default().to_string()).collect::<Vec<_>>())
            }
        };
        let up = |want: &'static str| {
            let query = &query;
            async move {
                wait_until(&format!("Prometheus to see up == {want} for all 3 servers"), Deadline::secs(90).every_millis(2000), || async {
                    let values = query("up{job=\"certctl\"}").await.map_err(|e| kube::Error::Service(e.to_string().into()))?;
                    Ok(if values.len() == 3 && values.iter().all(|v| v == want) { Poll::Ready(()) } else { Poll::Pending(format!("up values {values:?}")) })
                })
                .await
            }
        };
        // Blocked first (the positive control comes second: same Prometheus, same settings).
        up("0").await?;
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let values = query("up{job=\"certctl\"}").await?;
            ensure!(values.iter().all(|v| v == "0"), "a server answered Prometheus while the NetworkPolicy should drop it: up {values:?}");
        }
        helm.upgrade(admitting).await?;
        up("1").await?;
        let pools = query("certctl_db_pool_max_connections").await?;
        ensure!(pools.len() == 3, "Prometheus scraped up == 1 but holds {} certctl_db_pool_max_connections series, want 3", pools.len());
        StepResult::Ok(())
    }
    .await;
    let _ = namespaces.delete(&monitoring, &DeleteParams::background()).await;
    result
}

/// An HTTPS client trusting only `ca`, TLS 1.3, `host` pinned to `addr`.
fn https_client(host: &str, addr: SocketAddr, ca: &str, timeout: Duration) -> StepResult<reqwest::Client> {
    let cfg = tls_config(ca, &[&rustls::version::TLS13])?;
    Ok(reqwest::Client::builder().use_preconfigured_tls(cfg).resolve(host, addr).timeout(timeout).build()?)
}

// --- external database ---------------------------------------------------------------------

/// `postgresql.enabled=false` with a PostgreSQL outside the cluster: nothing
/// of the bundled database is created, the server is Ready on the external
/// one, and its pool never holds more than `server.database.maxConnections`
/// connections — seen in the external database's own pg_stat_activity while
/// every pooled connection is held by a lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_db_mode_holds_live() {
    const MAX_CONNS: usize = 3;
    let env = env().await;
    let mut s = Scenario::start(env, "external-db").await.unwrap_or_else(|e| panic!("scenario external-db could not start: {e}"));
    let (ns, client) = (s.namespace.clone(), s.client.clone());
    let release = "x";
    let full = format!("{release}-certctl");
    let service = format!("{full}-server");

    let spec = ExternalDbSpec::new(&format!("{}-external-db", env.cluster.name), &env.images.postgres.to_string(), &kind_network());
    let Ok(external) = s.step("external PostgreSQL beside the cluster", async move { Ok(ExternalPostgres::start(spec).await?) }).await
    else {
        s.finish().await.unwrap();
        return;
    };
    let rel = mode_release(env, "scenarios/modes/external-db.yaml", release, &ns, &env.workspace.join("chart")).set(serde_json::json!({
        "externalDatabase": {"url": external.url(&external.spec.password)},
        "server": {"database": {"maxConnections": MAX_CONNS}},
    }));
    s.release = Some(release.into());
    let Ok(tls) = install_with_server_tls(&mut s, &rel, &service).await else {
        s.finish().await.unwrap();
        return;
    };
    let (c, n) = (client.clone(), ns.clone());
    if s.step("rollout on the external database", async move { rolled_out(&c, &n, release, 1, false).await }).await.is_err() {
        s.finish().await.unwrap();
        return;
    }
    let (c, n) = (client.clone(), ns.clone());
    let _ = s.step("no bundled PostgreSQL: no StatefulSet, no volume claim", async move { no_bundled_database(&c, &n).await }).await;

    let (c, n, svc) = (client.clone(), ns.clone(), service.clone());
    let Ok(fwd) = s.step("port-forward to the server Service", async move { Ok(PortForward::to_service(&c, &n, &svc, 8443).await?) }).await
    else {
        s.finish().await.unwrap();
        return;
    };
    let host = format!("{service}.{ns}.svc");
    let (h, a, ca) = (host.clone(), fwd.local_addr(), tls.ca_pem.clone());
    let _ = s.step("/ready says the external database is reachable", async move { ready_via_service(&h, a, &ca).await }).await;
    let (h, a, ca) = (host.clone(), fwd.local_addr(), tls.ca_pem.clone());
    let ext = &external;
    let _ = s
        .step(&format!("pool never exceeds maxConnections={MAX_CONNS} in pg_stat_activity"), async move {
            pool_bounded(ext, &h, a, &ca, MAX_CONNS).await
        })
        .await;
    drop(fwd);
    s.finish().await.unwrap();
    drop(external);
}

async fn no_bundled_database(client: &kube::Client, ns: &str) -> StepResult {
    let sets = Api::<StatefulSet>::namespaced(client.clone(), ns).list(&ListParams::default()).await?.items;
    ensure!(
        sets.is_empty(),
        "postgresql.enabled=false still created StatefulSets: {:?}",
        sets.iter().filter_map(|s| s.metadata.name.clone()).collect::<Vec<_>>()
    );
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns).list(&ListParams::default()).await?.items;
    ensure!(
        claims.is_empty(),
        "postgresql.enabled=false still created volume claims: {:?}",
        claims.iter().filter_map(|c| c.metadata.name.clone()).collect::<Vec<_>>()
    );
    Ok(())
}

const SERVER_CONNECTIONS: &str = "select count(*) from pg_stat_activity where application_name = 'certctl-server' and datname = 'certctl'";

/// Holds an exclusive lock on `certificates`, sends 4×max requests that each
/// need a pooled connection, and watches the external database: the
/// server's connections climb to exactly `max` and stay there (never more)
/// until the lock goes; then every request completes.
async fn pool_bounded(db: &ExternalPostgres, host: &str, addr: SocketAddr, ca: &str, max: usize) -> StepResult {
    let count = || async { StepResult::Ok(db.psql("certctl", SERVER_CONNECTIONS).await?.parse::<usize>()?) };
    let idle = count().await?;
    ensure!((1..=max).contains(&idle), "at rest the server holds {idle} connections, want 1..={max}");

    let mut lock = db.psql_background(
        "certctl",
        "e2e-lock",
        "BEGIN; LOCK TABLE certificates IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(600); COMMIT;",
    )?;
    wait_until("the test's lock on certificates to be granted", Deadline::secs(30).every_millis(250), || async {
        let granted = db
            .psql(
                "certctl",
                "select count(*) from pg_locks where relation = 'certificates'::regclass and mode = 'AccessExclusiveLock' and granted",
            )
            .await
            .map_err(|e| kube::Error::Service(Box::new(e)))?;
        Ok(if granted == "1" { Poll::Ready(()) } else { Poll::Pending(format!("granted locks: {granted}")) })
    })
    .await?;

    let http = https_client(host, addr, ca, Duration::from_secs(120))?;
    let url = format!("https://{host}:{}/api/v1/certificates", addr.port());
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..4 * max {
        let (http, url) = (http.clone(), url.clone());
        requests.spawn(async move {
            let response = http.get(&url).bearer_auth(API_KEY).send().await.map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            Ok::<_, String>((status, response.text().await.unwrap_or_default()))
        });
    }
    let observed = async {
        let peak = wait_until(&format!("the server's connections to reach {max}"), Deadline::secs(60).every_millis(250), || async {
            let n = count().await.map_err(|e| kube::Error::Service(e.to_string().into()))?;
            Ok(if n >= max { Poll::Ready(n) } else { Poll::Pending(format!("{n} connections named certctl-server")) })
        })
        .await?;
        ensure!(peak == max, "the server opened {peak} connections, more than maxConnections={max}");
        // Held: the queue of blocked requests must not open more.
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let n = count().await?;
            ensure!(n <= max, "the server opened {n} connections while saturated, more than maxConnections={max}");
        }
        StepResult::Ok(())
    }
    .await;
    // Release the lock whatever was seen, so the requests finish.
    let _ = db.psql("postgres", "select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'e2e-lock'").await;
    let _ = lock.kill().await;
    observed?;
    // Requests holding a connection finish once the lock goes; those that
    // waited longer than the acquire timeout (CERTCTL_DATABASE_CONNECT_TIMEOUT)
    // get 503 database_unavailable — a bounded wait, not a new connection.
    let mut answers = Vec::new();
    while let Some(done) = requests.join_next().await {
        answers.push(done?.map_err(|e| format!("a request queued behind the full pool failed: {e}"))?);
    }
    let unexpected: Vec<&(u16, String)> =
        answers.iter().filter(|(status, body)| !(*status == 200 || (*status == 503 && body.contains("database_unavailable")))).collect();
    ensure!(
        unexpected.is_empty(),
        "requests queued behind the full pool answered {unexpected:?}; want 200, or 503 database_unavailable after the acquire timeout"
    );
    ensure!(answers.iter().any(|(status, _)| *status == 200), "no request held a pooled connection through the lock: {answers:?}");
    let after = http.get(&url).bearer_auth(API_KEY).send().await?.status();
    ensure!(after == 200, "after the lock was released a new request answered {after}, want 200");
    Ok(())
}

// --- rotated password -------------------------------------------------------------------------

/// The incident the chart's docs warn about: `postgresql.auth.password` is
/// changed on an existing release, but PostgreSQL set the password at initdb
/// and keeps it. The new server pod logs the 28P01 diagnostic with the
/// remedy and stays unready while the old pod keeps serving; running the
/// remedy (ALTER ROLE) makes the new pod Ready without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_password_gives_28p01_and_alter_role_recovers_live() {
    const ROTATED: &str = "rotated-postgres-password-2";
    let env = env().await;
    let mut s =
        Scenario::start(env, "password-rotation").await.unwrap_or_else(|e| panic!("scenario password-rotation could not start: {e}"));
    let (ns, client) = (s.namespace.clone(), s.client.clone());
    let release = "r";
    let full = format!("{release}-certctl");
    let service = format!("{full}-server");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);

    let rel = mode_release(env, "scenarios/modes/default.yaml", release, &ns, &env.workspace.join("chart"));
    s.release = Some(release.into());
    let Ok(_tls) = install_with_server_tls(&mut s, &rel, &service).await else {
        s.finish().await.unwrap();
        return;
    };
    let (c, n) = (client.clone(), ns.clone());
    let Ok(before) = s.step("rollout", async move { rolled_out(&c, &n, release, 1, true).await }).await else {
        s.finish().await.unwrap();
        return;
    };
    let old_pod = names(&before).pop().unwrap_or_default();

    let mark = certctl_harness::logs::now();
    let helm = s.helm.clone();
    let rotated = rel.clone().set(serde_json::json!({"postgresql": {"auth": {"password": ROTATED}}}));
    if s.step("helm upgrade with a new postgresql.auth.password", async move { Ok(helm.upgrade(&rotated).await.map(|_| ())?) })
        .await
        .is_err()
    {
        s.finish().await.unwrap();
        return;
    }

    let (p, o) = (pods.clone(), old_pod.clone());
    let Ok(new_pod) =
        s.step("the new server pod logs SQLSTATE 28P01 with the remedy", async move { diagnosed_28p01(&p, release, &o, mark).await }).await
    else {
        s.finish().await.unwrap();
        return;
    };
    let (p, o, np) = (pods.clone(), old_pod.clone(), new_pod.clone());
    let _ = s.step("the old pod keeps serving while the new one is unready", async move { old_serves_new_waits(&p, &o, &np).await }).await;

    let db = PsqlTarget::new(&format!("{full}-postgres-0"), "postgres", "certctl", "certctl").over_socket();
    let p = pods.clone();
    let _ = s
        .step("ALTER ROLE with the configured password makes the new pod Ready without a restart", async move {
            db.query(&p, &format!("ALTER ROLE \"certctl\" WITH PASSWORD '{ROTATED}'")).await?;
            let ready = wait_until(&format!("{new_pod} to become Ready"), Deadline::secs(120).every_millis(1000), || async {
                let pod = p.get(&new_pod).await?;
                Ok(if is_ready(&pod) { Poll::Ready(pod) } else { Poll::Pending(certctl_harness::pods::pod_summary(&pod)) })
            })
            .await?;
            let restarts: i32 = ready.status.and_then(|s| s.container_statuses).unwrap_or_default().iter().map(|c| c.restart_count).sum();
            ensure!(restarts == 0, "{new_pod} recovered only after {restarts} container restart(s); the server must retry, not exit");
            Ok(())
        })
        .await;
    let (c, n) = (client.clone(), ns.clone());
    let _ =
        s.step("rollout completes on the rotated password", async move { rolled_out(&c, &n, release, 1, true).await.map(|_| ()) }).await;
    s.finish().await.unwrap();
}

/// Finds the server pod created by the upgrade and waits for its 28P01 line.
async fn diagnosed_28p01(pods: &Api<Pod>, release: &str, old_pod: &str, since: k8s_openapi::jiff::Timestamp) -> StepResult<String> {
    let new_pod = wait_until("the upgrade's new server pod", Deadline::secs(120), || async {
        let fresh: Vec<String> = names(&list(pods, &selector(release, "server")).await).into_iter().filter(|n| n != old_pod).collect();
        Ok(match fresh.first() {
            Some(n) => Poll::Ready(n.clone()),
            None => Poll::Pending(format!("only {old_pod}")),
        })
    })
    .await?;
    let line = wait_until(&format!("{new_pod} to log SQLSTATE 28P01"), Deadline::secs(120).every_millis(2000), || async {
        let text = logs_since(pods, &new_pod, "server", Some(since), Instance::Current).await.unwrap_or_default();
        Ok(match text.lines().find(|l| l.contains("SQLSTATE 28P01")) {
            Some(l) => Poll::Ready(l.to_string()),
            None => Poll::Pending(format!("last lines: {}", text.lines().rev().take(3).collect::<Vec<_>>().join(" | "))),
        })
    })
    .await?;
    ensure!(line.contains("ALTER ROLE"), "the 28P01 line does not give the ALTER ROLE remedy: {line}");
    ensure!(!line.contains("rotated-postgres-password"), "the 28P01 line leaks the configured password: {line}");
    Ok(new_pod)
}

async fn old_serves_new_waits(pods: &Api<Pod>, old_pod: &str, new_pod: &str) -> StepResult {
    let new = pods.get(new_pod).await?;
    ensure!(!is_ready(&new), "{new_pod} is Ready on a password PostgreSQL rejects");
    let old = pods.get(old_pod).await?;
    ensure!(
        is_ready(&old) && old.metadata.deletion_timestamp.is_none(),
        "the old pod {old_pod} stopped serving before its replacement was Ready: {}",
        certctl_harness::pods::pod_summary(&old)
    );
    Ok(())
}

// --- cert-manager ----------------------------------------------------------------------------

/// cert-manager issues the server certificate from a CA ClusterIssuer: the
/// chart's Certificate becomes Ready, its Secret carries `ca.crt`, the server
/// serves exactly that certificate (verified against that CA for the Service
/// name), the agent trusts it, and a re-issue reaches the running server
/// without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_manager_mode_holds_live() {
    let env = env().await;
    let mut s = Scenario::start(env, "cert-manager").await.unwrap_or_else(|e| panic!("scenario cert-manager could not start: {e}"));
    let (ns, client) = (s.namespace.clone(), s.client.clone());
    let release = "m";
    let full = format!("{release}-certctl");
    let service = format!("{full}-server");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);

    if s.step("cert-manager running with the scenario-ca ClusterIssuer Ready", async move { cert_manager_ready(env).await }).await.is_err()
    {
        s.finish().await.unwrap();
        return;
    }
    // Short reload poll so a renewal shows within the test's patience.
    let rel = mode_release(env, "scenarios/modes/cert-manager.yaml", release, &ns, &env.workspace.join("chart"))
        .set(serde_json::json!({"server": {"env": {"CERTCTL_SERVER_TLS_RELOAD_INTERVAL": "5s"}}}));
    s.release = Some(release.into());
    let helm = s.helm.clone();
    if s.step("install", async move { Ok(helm.install(&rel).await.map(|_| ())?) }).await.is_err() {
        s.finish().await.unwrap();
        return;
    }
    let certificate = format!("{full}-server-tls");
    let (c, n, cert) = (client.clone(), ns.clone(), certificate.clone());
    let _ = s.step("the chart's Certificate is Ready", async move { certificate_ready(&c, &n, &cert).await }).await;
    let (c, n) = (client.clone(), ns.clone());
    if s.step("rollout", async move { rolled_out(&c, &n, release, 1, true).await }).await.is_err() {
        s.finish().await.unwrap();
        return;
    }

    let (c, n, svc, cert) = (client.clone(), ns.clone(), service.clone(), certificate.clone());
    let Ok(issued) =
        s.step("the Secret holds a leaf for the Service that verifies against its ca.crt", async move {
            issued_pair(&c, &n, &svc, &cert).await
        })
        .await
    else {
        s.finish().await.unwrap();
        return;
    };
    let (c, n, svc, want) = (client.clone(), ns.clone(), service.clone(), issued.clone());
    let _ = s
        .step("the server serves that certificate (TLS 1.3, verified for the Service name)", async move {
            serves(&c, &n, &svc, &want, Deadline::secs(30)).await
        })
        .await;

    let agent_pod = list(&pods, &selector(release, "agent")).await.first().and_then(|p| p.metadata.name.clone()).unwrap_or_default();
    let db = PsqlTarget::new(&format!("{full}-postgres-0"), "postgres", "certctl", "certctl");
    let p = pods.clone();
    let _ =
        s.step("agent holds a certificate issued by the server's CA", async move { agent_certificate(&p, &agent_pod, &db).await }).await;

    let (c, n, svc, cert) = (client.clone(), ns.clone(), service.clone(), certificate.clone());
    let _ = s
        .step(
            "a re-issued certificate is served without a restart",
            async move { reissue_reaches_server(&c, &n, &svc, &cert, &issued).await },
        )
        .await;
    s.finish().await.unwrap();
}

/// The certificate material a Secret holds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Issued {
    leaf_pem: String,
    ca_pem: String,
}

/// cert-manager and the scenario's CA issuer, once per cluster: offline our
/// controller build (CRDs, manifests), online the official chart.
async fn cert_manager_ready(env: &TestEnv) -> StepResult {
    let kubectl = |args: Vec<String>| kubectl(env, args);
    match &env.images.cert_manager {
        Some(offline) => {
            kubectl(vec![
                "apply".into(),
                "--server-side".into(),
                "--force-conflicts".into(),
                "-f".into(),
                offline.crds.display().to_string(),
            ])
            .await?;
            kubectl(s(&[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/certificates.cert-manager.io",
                "crd/certificaterequests.cert-manager.io",
                "crd/issuers.cert-manager.io",
                "crd/clusterissuers.cert-manager.io",
            ]))
            .await?;
            kubectl(vec![
                "apply".into(),
                "--server-side".into(),
                "--force-conflicts".into(),
                "-f".into(),
                offline.manifests.display().to_string(),
            ])
            .await?;
            kubectl(s(&["-n", "cert-manager", "rollout", "status", "deploy/cert-manager-controller", "--timeout=180s"])).await?;
        }
        None => {
            // Online: the official chart at the pinned version (webhook and cainjector included).
            let version = certctl_harness::tools::PinnedVersions::load()?.get("CERT_MANAGER_VERSION")?.to_string();
            let out = tokio::process::Command::new(&env.tools.helm.path)
                .args(["--kubeconfig"])
                .arg(&env.cluster.kubeconfig)
                .args(["upgrade", "--install", "cert-manager", "oci://quay.io/jetstack/charts/cert-manager", "--version", &version])
                .args(["--namespace", "cert-manager", "--create-namespace", "--set", "crds.enabled=true", "--wait", "--timeout=300s"])
                .output()
                .await?;
            ensure!(
                out.status.success(),
                "installing cert-manager {version} (online) failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    let issuers = env.workspace.join("ci/offline/cert-manager/examples/scenario-ca.yaml");
    kubectl(vec!["apply".into(), "-f".into(), issuers.display().to_string()]).await?;
    kubectl(s(&["-n", "cert-manager", "wait", "--for=condition=Ready", "--timeout=120s", "certificate/scenario-ca"])).await?;
    kubectl(s(&["wait", "--for=condition=Ready", "--timeout=60s", "clusterissuer/scenario-ca"])).await?;
    Ok(())
}

fn s(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// The pinned kubectl against the test cluster; a failure carries its stderr.
async fn kubectl(env: &TestEnv, args: Vec<String>) -> StepResult<String> {
    let out =
        tokio::process::Command::new(&env.tools.kubectl.path).arg("--kubeconfig").arg(&env.cluster.kubeconfig).args(&args).output().await?;
    ensure!(out.status.success(), "kubectl {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn certificates(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("cert-manager.io", "v1", "Certificate");
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk(&gvk))
}

/// Waits for the Certificate's Ready condition; returns its status.
async fn certificate_ready(client: &kube::Client, ns: &str, name: &str) -> StepResult<serde_json::Value> {
    let api = certificates(client, ns);
    Ok(wait_until(&format!("Certificate {name} to be Ready"), Deadline::secs(120).every_millis(1000), || async {
        let cert = api.get(name).await?;
        let status = cert.data["status"].clone();
        let ready = status["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == "Ready");
        Ok(match ready {
            Some(c) if c["status"] == "True" => Poll::Ready(status.clone()),
            Some(c) => Poll::Pending(format!("Ready={} {}: {}", c["status"], c["reason"], c["message"])),
            None => Poll::Pending(format!("no Ready condition yet; status {status}")),
        })
    })
    .await?)
}

/// Reads the server TLS Secret, checks the leaf names the Service and
/// verifies against the Secret's own ca.crt.
async fn issued_pair(client: &kube::Client, ns: &str, service: &str, certificate: &str) -> StepResult<Issued> {
    let secret = Api::<Secret>::namespaced(client.clone(), ns).get(&certificate_secret(client, ns, certificate).await?).await?;
    let data = secret.data.unwrap_or_default();
    let field = |k: &str| {
        data.get(k).map(|b| String::from_utf8_lossy(&b.0).into_owned()).ok_or_else(|| format!("the server TLS Secret has no {k}"))
    };
    let (leaf_pem, ca_pem) = (field("tls.crt")?, field("ca.crt")?);
    field("tls.key")?;
    let (_, ca) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).map_err(|e| format!("ca.crt is not PEM: {e}"))?;
    let ca = ca.parse_x509().map_err(|e| format!("ca.crt: {e}"))?;
    let (_, leaf) = x509_parser::pem::parse_x509_pem(leaf_pem.as_bytes()).map_err(|e| format!("tls.crt is not PEM: {e}"))?;
    let leaf = leaf.parse_x509().map_err(|e| format!("tls.crt: {e}"))?;
    leaf.verify_signature(Some(ca.public_key())).map_err(|e| format!("tls.crt does not verify against ca.crt: {e}"))?;
    let host = format!("{service}.{ns}.svc");
    let sans: Vec<String> = leaf
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| if let x509_parser::extensions::GeneralName::DNSName(d) = n { Some(d.to_string()) } else { None })
                .collect()
        })
        .unwrap_or_default();
    ensure!(sans.contains(&host), "tls.crt SANs {sans:?} lack {host}");
    Ok(Issued { leaf_pem, ca_pem })
}

/// Until `deadline`, handshakes through a port-forward to the Service
/// (trusting only the issued CA, for the Service name) until the served leaf
/// is `want`'s; then checks /ready.
async fn serves(client: &kube::Client, ns: &str, service: &str, want: &Issued, deadline: Deadline) -> StepResult {
    let fwd = PortForward::to_service(client, ns, service, 8443).await?;
    let host = format!("{service}.{ns}.svc");
    let want_der = pem_der(&want.leaf_pem)?;
    let (h, addr, ca) = (host.clone(), fwd.local_addr(), want.ca_pem.clone());
    wait_until(&format!("{host} to serve the issued certificate"), deadline.every_millis(2000), || async {
        let served = served_leaf(&h, addr, &ca).await.map_err(|e| kube::Error::Service(e.to_string().into()))?;
        Ok(if served == want_der { Poll::Ready(()) } else { Poll::Pending("a different certificate is served".into()) })
    })
    .await?;
    ready_via_service(&host, addr, &want.ca_pem).await
}

fn pem_der(pem: &str) -> StepResult<Vec<u8>> {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| format!("not PEM: {e}"))?;
    Ok(parsed.contents)
}

/// The leaf the server presents, after verifying it against `ca` for `host`.
async fn served_leaf(host: &str, addr: SocketAddr, ca: &str) -> StepResult<Vec<u8>> {
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls_config(ca, &[&rustls::version::TLS13])?));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let stream = connector.connect(rustls_pki_types::ServerName::try_from(host.to_string())?, tcp).await?;
    let leaf = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).ok_or("no certificate presented")?;
    Ok(leaf.as_ref().to_vec())
}

/// Deletes the Secret; cert-manager re-issues (a new key and serial), the
/// kubelet updates the mounted files, and the running server pod — same
/// container, zero restarts — serves the new leaf.
async fn reissue_reaches_server(client: &kube::Client, ns: &str, service: &str, certificate: &str, before: &Issued) -> StepResult {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let server_pods = |pods: Vec<Pod>| {
        pods.into_iter()
            .filter(|p| {
                p.metadata.labels.as_ref().is_some_and(|l| l.get("app.kubernetes.io/component").map(String::as_str) == Some("server"))
            })
            .collect::<Vec<_>>()
    };
    let before_pods = server_pods(pods.list(&ListParams::default()).await?.items);
    let secret_name = certificate_secret(client, ns, certificate).await?;
    Api::<Secret>::namespaced(client.clone(), ns).delete(&secret_name, &DeleteParams::default()).await?;
    let secrets = Api::<Secret>::namespaced(client.clone(), ns);
    let reissued = wait_until(&format!("cert-manager to re-issue {secret_name}"), Deadline::secs(120).every_millis(1000), || async {
        Ok(match secrets.get_opt(&secret_name).await? {
            Some(s) => {
                let leaf =
                    s.data.as_ref().and_then(|d| d.get("tls.crt")).map(|b| String::from_utf8_lossy(&b.0).into_owned()).unwrap_or_default();
                if !leaf.is_empty() && leaf != before.leaf_pem {
                    Poll::Ready(leaf)
                } else {
                    Poll::Pending("Secret recreated without a new tls.crt yet".into())
                }
            }
            None => Poll::Pending("Secret not recreated yet".into()),
        })
    })
    .await?;
    let after = Issued { leaf_pem: reissued, ca_pem: before.ca_pem.clone() };
    // The kubelet refreshes Secret volumes on its sync period (about a minute), then the server's poll.
    serves(client, ns, service, &after, Deadline::secs(180)).await?;
    let after_pods = server_pods(pods.list(&ListParams::default()).await?.items);
    let names_before = names(&before_pods);
    ensure!(
        names(&after_pods) == names_before,
        "server pods changed from {names_before:?} to {:?}: the new certificate came with a restart",
        names(&after_pods)
    );
    let restarts: i32 =
        after_pods.iter().flat_map(|p| p.status.iter().flat_map(|s| s.container_statuses.iter().flatten())).map(|c| c.restart_count).sum();
    ensure!(restarts == 0, "server containers restarted {restarts} time(s) to pick up the certificate");
    Ok(())
}

/// `spec.secretName` of the Certificate.
async fn certificate_secret(client: &kube::Client, ns: &str, certificate: &str) -> StepResult<String> {
    let cert = certificates(client, ns).get(certificate).await?;
    Ok(cert.data["spec"]["secretName"].as_str().ok_or("Certificate without spec.secretName")?.to_string())
}
