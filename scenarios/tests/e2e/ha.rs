//! HA: three replicas behind a PodDisruptionBudget, a NetworkPolicy and a
//! ServiceMonitor. The budget refuses the eviction that would break it; the
//! policy admits this release's agents and nobody else; the ServiceMonitor's
//! settings make a working scrape, and a real Prometheus is dropped by the
//! policy until `networkPolicy.extraIngress` admits it.

use std::time::Duration;

use certctl_harness::conditions::{await_condition, budget_allows};
use certctl_harness::ensure;
use certctl_harness::evict::evict;
use certctl_harness::names::Component;
use certctl_harness::pods::{pod_summary, wait_pods_ready};
use certctl_harness::portforward::PortForward;
use certctl_harness::probe::{ProbePod, ProbeTool, Verdict};
use certctl_harness::scenario::{Flow, Scenario, StepResult};
use certctl_harness::wait::{wait_until, Classify, Deadline, Poll, PollError};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};

use crate::support::http::https_client;
use crate::support::live::Live;

pub async fn promises(s: &Scenario, live: &Live<'_>) -> Flow {
    s.check("PodDisruptionBudget refuses the eviction that would break it", budget_holds(live)).await;
    s.check("NetworkPolicy admits this release's agents and nobody else", network_policy_holds(s, live)).await;
    s.check("ServiceMonitor's key, CA and server name make a working scrape", service_monitor_scrapes(live)).await;
    s.check(
        "a real Prometheus with the ServiceMonitor's settings: blocked by the policy, scraping once extraIngress admits it",
        prometheus_blocked_then_admitted(s, live),
    )
    .await;
    Ok(())
}

/// With 3 Ready servers and minAvailable 1, two evictions go through (the
/// positive control) and the third, made before any replacement is Ready,
/// is refused with 429; the budget then recovers.
async fn budget_holds(live: &Live<'_>) -> StepResult {
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(live.s.client.clone(), &live.names.namespace);
    let pods = live.pods();
    let name = live.names.server();
    await_condition(&pdbs, &name, &budget_allows(3, 2), Deadline::secs(120)).await?;
    let servers = live.ready(Component::Server).await?;
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
        pod_summary(&seen_pod)
    );
    ensure!(third.message.contains("disruption budget"), "429 without the budget's words: {}", third.message);
    let still = pods.get(&servers[2]).await?;
    ensure!(still.metadata.deletion_timestamp.is_none(), "{} is being deleted although its eviction was refused", servers[2]);
    // Replacements come up and the budget allows two disruptions again.
    wait_pods_ready(&pods, &live.names.selector(Component::Server), 3, Deadline::secs(180)).await?;
    await_condition(&pdbs, &name, &budget_allows(3, 2), Deadline::secs(120)).await?;
    Ok(())
}

/// The probe image: netprobe offline, the agent image (bash) online.
pub fn probe_image(s: &Scenario) -> (String, ProbeTool) {
    let images = &s.env.images;
    images.netprobe.as_ref().map(|i| (i.to_string(), ProbeTool::Netprobe)).unwrap_or((images.agent.to_string(), ProbeTool::Bash))
}

/// Positive control first: the release's own agent pod reaches the server
/// Service. Then a pod in the namespace without the agent's labels, and a
/// pod with the agent's labels in another namespace, are both blocked (held
/// 10 s). The server's egress is limited too: it cannot open the Kubernetes API.
async fn network_policy_holds(s: &Scenario, live: &Live<'_>) -> StepResult {
    let target = live.names.server_address();
    let (within, hold) = (Duration::from_secs(60), Duration::from_secs(10));
    let (image, tool) = probe_image(s);
    let agent = ProbePod::existing(live.pods(), &live.one_ready(Component::Agent).await?, "agent", ProbeTool::Bash);
    agent.expect(&target, Verdict::Connected, within, Duration::from_secs(5)).await?;

    let stranger = s.probe_pod(&live.names.namespace, "e2e-stranger", &[("app", "e2e-stranger")], &image, tool).await?;
    stranger.expect(&target, Verdict::TimedOut, within, hold).await?;

    // Same labels as the agents, wrong namespace: the policy's podSelector is namespace-local.
    let outside = s.namespace("outside").await?;
    let labels = live.names.labels(Component::Agent);
    let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let impostor = s.probe_pod(&outside, "e2e-impostor", &labels, &image, tool).await?;
    impostor.expect(&target, Verdict::TimedOut, within, hold).await?;

    // Egress: the server may resolve names and reach its database, nothing else.
    let from_server = ProbePod::existing(live.pods(), &live.one_ready(Component::Server).await?, "server", ProbeTool::Bash);
    from_server.expect("kubernetes.default.svc:443", Verdict::TimedOut, within, Duration::from_secs(5)).await?;
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

async fn scrape_settings(live: &Live<'_>) -> StepResult<ScrapeSettings> {
    let (client, ns) = (&live.s.client, &live.names.namespace);
    let gvk = GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor");
    let monitors: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk(&gvk));
    let sm = monitors.get(&live.names.server()).await?;
    let endpoint = &sm.data["spec"]["endpoints"][0];
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let value = async |sel: &serde_json::Value| {
        let (name, key) = (sel["name"].as_str().unwrap_or_default(), sel["key"].as_str().unwrap_or_default());
        let secret = secrets.get(name).await.map_err(|e| format!("Secret {name} named by the ServiceMonitor: {e}"))?;
        let bytes = secret
            .data
            .and_then(|d| d.get(key).cloned())
            .ok_or_else(|| format!("Secret {name} has no key {key:?} (named by the ServiceMonitor)"))?;
        StepResult::Ok(String::from_utf8(bytes.0)?.trim().to_string())
    };
    Ok(ScrapeSettings {
        token: value(&endpoint["bearerTokenSecret"]).await?,
        ca: value(&endpoint["tlsConfig"]["ca"]["secret"]).await?,
        server_name: endpoint["tlsConfig"]["serverName"].as_str().unwrap_or_default().to_string(),
        path: endpoint["path"].as_str().unwrap_or("/metrics").to_string(),
        spec: sm.data["spec"].clone(),
    })
}

/// Reads the ServiceMonitor as Prometheus would, resolves its bearer-token
/// Secret and CA Secret, and scrapes one server pod with exactly those
/// settings (TLS verified against the CA for `serverName`).
async fn service_monitor_scrapes(live: &Live<'_>) -> StepResult {
    let ScrapeSettings { token, ca, server_name, path, spec } = scrape_settings(live).await?;
    let endpoint = &spec["endpoints"][0];
    ensure!(endpoint["scheme"] == "https", "ServiceMonitor scheme {}, want https", endpoint["scheme"]);
    ensure!(endpoint["tlsConfig"]["insecureSkipVerify"] != true, "ServiceMonitor skips TLS verification");
    ensure!(!server_name.is_empty(), "ServiceMonitor tlsConfig has no serverName");

    // The Service the monitor selects has the port it names.
    let services: Api<Service> = Api::namespaced(live.s.client.clone(), &live.names.namespace);
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
    let fwd = PortForward::to_pod(live.pods(), &live.one_ready(Component::Server).await?, 8443).await?;
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

/// Runs Prometheus in a namespace of its own with a static scrape of every
/// server pod, configured from the ServiceMonitor (bearer token file, CA file,
/// server name, path). The NetworkPolicy drops it (every `up` 0, held);
/// after `helm upgrade` with an extraIngress for that namespace and pod,
/// every `up` turns 1 and certctl's metrics are in Prometheus.
async fn prometheus_blocked_then_admitted(s: &Scenario, live: &Live<'_>) -> StepResult {
    let image =
        s.env.images.prometheus.as_ref().ok_or("images.env has no PROMETHEUS_IMAGE: run `bash ci/offline/ensure.sh apps`")?.to_string();
    let settings = scrape_settings(live).await?;
    let targets: Vec<String> = live
        .pods_of(Component::Server)
        .await?
        .into_iter()
        .filter(certctl_harness::pods::is_ready)
        .filter_map(|p| p.status.and_then(|s| s.pod_ip))
        .map(|ip| format!("{ip}:8443"))
        .collect();
    ensure!(targets.len() == 3, "want 3 Ready server pods with IPs to scrape, found {targets:?}");
    let monitoring = s.namespace("monitoring").await?;
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
    let client = &s.client;
    let secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "scrape"}, "stringData": {"token": settings.token, "ca.crt": settings.ca}});
    Api::<Secret>::namespaced(client.clone(), &monitoring).create(&PostParams::default(), &serde_json::from_value(secret)?).await?;
    let config_map = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "prometheus"}, "data": {"prometheus.yml": serde_yaml_ng::to_string(&config)?}});
    Api::<ConfigMap>::namespaced(client.clone(), &monitoring).create(&PostParams::default(), &serde_json::from_value(config_map)?).await?;
    let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "prometheus", "labels": {"app": "e2e-prometheus"}}, "spec": {
        // Pod Security "restricted", like every pod in a scenario namespace.
        "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "fsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "prometheus", "image": image, "imagePullPolicy": "IfNotPresent",
            "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
            "args": ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", "--web.listen-address=:9090"],
            "readinessProbe": {"httpGet": {"path": "/-/ready", "port": 9090}, "periodSeconds": 2},
            "volumeMounts": [{"name": "config", "mountPath": "/etc/prometheus"}, {"name": "scrape", "mountPath": "/etc/scrape"}, {"name": "data", "mountPath": "/prometheus"}]}],
        "volumes": [{"name": "config", "configMap": {"name": "prometheus"}}, {"name": "scrape", "secret": {"secretName": "scrape"}}, {"name": "data", "emptyDir": {}}],
    }});
    let prom_pods: Api<Pod> = Api::namespaced(client.clone(), &monitoring);
    prom_pods.create(&PostParams::default(), &serde_json::from_value(pod)?).await?;
    wait_pods_ready(&prom_pods, "app=e2e-prometheus", 1, Deadline::secs(120)).await?;
    let fwd = PortForward::to_pod(prom_pods, "prometheus", 9090).await?;
    let query = async |q: &str| {
        let url = reqwest::Url::parse_with_params(&format!("http://{}/api/v1/query", fwd.local_addr()), &[("query", q)])?;
        let text = reqwest::Client::new().get(url).timeout(Duration::from_secs(10)).send().await?.text().await?;
        let body: serde_json::Value = serde_json::from_str(&text)?;
        StepResult::Ok(
            body["data"]["result"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|r| r["value"][1].as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>(),
        )
    };
    let up = async |want: &str| {
        wait_until(&format!("Prometheus to see up == {want} for all 3 servers"), Deadline::secs(90).every_millis(2000), || async {
            let values = query("up{job=\"certctl\"}").await.transient()?;
            Ok::<_, PollError>(if values.len() == 3 && values.iter().all(|v| v == want) {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("up values {values:?}"))
            })
        })
        .await
    };
    // Blocked first (the positive control comes second: same Prometheus, same settings), held 15 s.
    up("0").await?;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let values = query("up{job=\"certctl\"}").await?;
        ensure!(values.iter().all(|v| v == "0"), "a server answered Prometheus while the NetworkPolicy should drop it: up {values:?}");
    }
    let admitting = live.release.clone().set(serde_json::json!({"networkPolicy": {"extraIngress": [{
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": monitoring}},
                  "podSelector": {"matchLabels": {"app": "e2e-prometheus"}}}],
        "ports": [{"protocol": "TCP", "port": 8443}],
    }]}}));
    s.helm.upgrade(&admitting).await?;
    up("1").await?;
    let pools = query("certctl_db_pool_max_connections").await?;
    ensure!(pools.len() == 3, "Prometheus scraped up == 1 but holds {} certctl_db_pool_max_connections series, want 3", pools.len());
    Ok(())
}
