//! HA across nodes. The servers spread over the workers; when the worker set
//! aside for disruption is killed outright, the Service keeps answering
//! through the replicas left; `kubectl drain` of it waits on the
//! PodDisruptionBudget and never leaves fewer than minAvailable servers
//! ready; a deleted database pod makes the servers unready until it is back,
//! and they recover by themselves. Every row is still there after it all.

use std::collections::BTreeSet;
use std::time::Duration;

use certctl_harness::availability::{Sampler, Samples};
use certctl_harness::disruption::kill_node;
use certctl_harness::ensure;
use certctl_harness::names::Component;
use certctl_harness::pods::{pod_summary, wait_pods_ready};
use certctl_harness::scenario::{Flow, Scenario, StepResult};
use certctl_harness::wait::{wait_until, Classify, Deadline, Poll, PollError};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams};

use crate::support::data::Ledger;
use crate::support::kubectl::kubectl;
use crate::support::live::Live;

/// What the HA release adds so its servers and agents may run on the
/// set-aside worker (no other release does, so disrupting it touches only HA).
pub fn tolerate_the_set_aside_worker() -> serde_json::Value {
    let t = certctl_harness::disruption::toleration();
    serde_json::json!({"server": {"tolerations": [t.clone()]}, "agent": {"tolerations": [t]}})
}

pub async fn promises(s: &Scenario, live: &Live<'_>) -> Flow {
    let victim = s
        .require("a worker set aside for disruption", async {
            s.env.disruptable.clone().ok_or_else(|| {
                format!(
                    "cluster {} has fewer than two workers; a kept cluster of an older shape? delete it: kind delete cluster --name {}",
                    s.env.cluster.name, s.env.cluster.name
                )
                .into()
            })
        })
        .await?;
    s.require("the server replicas spread across nodes, one or more on the set-aside worker", spread(live, &victim)).await?;
    s.require("networkPolicy.extraIngress admits the API server's proxy (the control plane's address)", admit_api_server(s, live)).await?;
    let ledger = s.require("certificates issued to the agents through the API", Ledger::write(live, 2)).await?;
    s.check("a worker killed outright: the Service answers through the replicas left", node_lost(live, &victim)).await;
    s.check("kubectl drain waits on the PodDisruptionBudget: never fewer than minAvailable ready", drain(s, live, &victim)).await;
    s.check("the database pod deleted: servers answer 503, then recover by themselves", database_pod_deleted(live)).await;
    s.check("every row intact after node loss, drain and the database pod's deletion", async { ledger.intact(live).await.map(drop) }).await;
    Ok(())
}

/// Where the Ready server pods run.
async fn server_nodes(live: &Live<'_>) -> StepResult<Vec<String>> {
    let pods = live.pods_of(Component::Server).await?;
    Ok(pods.into_iter().filter(certctl_harness::pods::is_ready).filter_map(|p| p.spec?.node_name).collect())
}

async fn spread(live: &Live<'_>, victim: &str) -> StepResult {
    let nodes = server_nodes(live).await?;
    let distinct: BTreeSet<&String> = nodes.iter().collect();
    ensure!(distinct.len() >= 2, "all {} server replicas run on {distinct:?}: the chart's spread did not spread them", nodes.len());
    ensure!(nodes.iter().any(|n| n == victim), "no server replica on the set-aside worker {victim} (they run on {nodes:?})");
    let postgres = live.pods().get(&live.names.postgres_pod(0)).await?.spec.and_then(|s| s.node_name).unwrap_or_default();
    ensure!(postgres != victim, "the database runs on the set-aside worker {victim}: it does not tolerate its taint");
    eprintln!("nodes: servers on {nodes:?}, database on {postgres}, set aside {victim}");
    Ok(())
}

/// The sampler asks the Service through the API server's proxy, which
/// connects from the control plane node's address: the HA policy admits only
/// agents, so the operator's way in, `extraIngress`, admits that address.
async fn admit_api_server(s: &Scenario, live: &Live<'_>) -> StepResult {
    let nodes =
        Api::<Node>::all(live.s.client.clone()).list(&ListParams::default().labels("node-role.kubernetes.io/control-plane")).await?;
    let ip = nodes
        .items
        .iter()
        .flat_map(|n| n.status.as_ref().and_then(|st| st.addresses.clone()).unwrap_or_default())
        .find(|a| a.type_ == "InternalIP" && !a.address.contains(':'))
        .map(|a| a.address)
        .ok_or("the control plane node has no IPv4 InternalIP")?;
    let rule = serde_json::json!([{"from": [{"ipBlock": {"cidr": format!("{ip}/32")}}], "ports": [{"port": 8443, "protocol": "TCP"}]}]);
    s.helm.upgrade(&live.reusing_values(serde_json::json!({"networkPolicy": {"extraIngress": rule}}))).await?;
    // Admitted once the proxy answers (a new policy takes a moment to be programmed).
    wait_until("the API server's proxy to reach the Service", Deadline::secs(60).every_millis(1000), || async {
        // Stopped at once, a sampler still makes its first request.
        let seen = sampler(live).stop().await;
        Ok::<_, PollError>(if seen.answered > 0 { Poll::Ready(()) } else { Poll::Pending(seen.to_string()) })
    })
    .await?;
    Ok(())
}

fn sampler(live: &Live<'_>) -> Sampler {
    Sampler::start(live.s.client.clone(), &live.names.namespace, &live.names.server(), 8443, "/ready", Duration::from_millis(250))
}

/// Ready server endpoints on `node`.
async fn ready_endpoints_on(live: &Live<'_>, node: &str) -> Result<usize, kube::Error> {
    let slices: Api<EndpointSlice> = Api::namespaced(live.s.client.clone(), &live.names.namespace);
    let list = slices.list(&ListParams::default().labels(&format!("kubernetes.io/service-name={}", live.names.server()))).await?;
    Ok(list
        .items
        .iter()
        .flat_map(|s| &s.endpoints)
        .filter(|e| e.node_name.as_deref() == Some(node) && e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
        .count())
}

/// Kills the worker, waits until the control plane takes its replicas out
/// of the Service, then holds the Service to answering every request for
/// 10 s; then starts the worker again and waits for it and the replicas.
async fn node_lost(live: &Live<'_>, victim: &str) -> StepResult {
    let during = sampler(live);
    let killed = kill_node(victim).await?;
    let gone = wait_until(&format!("the Service to drop the replicas on {victim}"), Deadline::secs(240).every_millis(1000), || async {
        let n = ready_endpoints_on(live, victim).await?;
        Ok::<_, kube::Error>(if n == 0 { Poll::Ready(()) } else { Poll::Pending(format!("{n} ready endpoint(s) on {victim}")) })
    })
    .await;
    let converged = during.stop().await;
    eprintln!("node loss of {victim}: until the Service dropped its replicas: {converged}");
    let held = if gone.is_ok() {
        let after = sampler(live);
        // A fixed observation window, not a wait for a condition.
        tokio::time::sleep(Duration::from_secs(10)).await;
        Some(after.stop().await)
    } else {
        None
    };
    killed.start().await?;
    gone?;
    let held = held.expect("sampled once the Service converged");
    eprintln!("node loss of {victim}: afterwards: {held}");
    ensure!(
        held.failed == 0 && held.answered > 0,
        "with {victim} gone the Service did not answer every request through the replicas left: {held}"
    );
    node_ready(live, victim).await?;
    wait_pods_ready(&live.pods(), &live.names.selector(Component::Server), live.server_replicas(), Deadline::secs(300)).await?;
    live.rolled_out().await
}

async fn node_ready(live: &Live<'_>, node: &str) -> StepResult {
    let nodes: Api<Node> = Api::all(live.s.client.clone());
    wait_until(&format!("node {node} to be Ready again"), Deadline::secs(240).every_millis(2000), || async {
        let n = nodes.get(node).await?;
        let ready = n.status.and_then(|s| s.conditions).unwrap_or_default().into_iter().find(|c| c.type_ == "Ready");
        Ok::<_, kube::Error>(match ready {
            Some(c) if c.status == "True" => Poll::Ready(()),
            other => Poll::Pending(format!("Ready condition {:?}", other.map(|c| (c.status, c.reason)))),
        })
    })
    .await?;
    Ok(())
}

/// With minAvailable raised to 2 (`--reuse-values`), `kubectl drain` of the
/// worker must wait for replacements before each further eviction: the
/// Service never lists fewer than 2 ready servers.
async fn drain(s: &Scenario, live: &Live<'_>, victim: &str) -> StepResult {
    const MIN_AVAILABLE: usize = 2;
    s.helm.upgrade(&live.reusing_values(serde_json::json!({"podDisruptionBudget": {"minAvailable": MIN_AVAILABLE}}))).await?;
    let on_victim = server_nodes(live).await?.iter().filter(|n| *n == victim).count();
    let during = sampler(live);
    let drained = kubectl(s.env, &["drain", victim, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=300s"]).await;
    let seen: Samples = during.stop().await;
    kubectl(s.env, &["uncordon", victim]).await?;
    let output = drained?;
    eprintln!("drain of {victim} ({on_victim} server replica(s) on it): {seen}");
    ensure!(
        seen.fewest_ready >= MIN_AVAILABLE,
        "during the drain the Service listed {} ready servers, fewer than minAvailable={MIN_AVAILABLE}: {seen}",
        seen.fewest_ready
    );
    ensure!(server_nodes(live).await?.iter().all(|n| n != victim), "a Ready server still runs on the drained {victim}");
    wait_pods_ready(&live.pods(), &live.names.selector(Component::Server), live.server_replicas(), Deadline::secs(300)).await?;
    if on_victim > 1 {
        // Two replicas on the node and one disruption allowed: the second eviction waited.
        ensure!(output.contains("evicted"), "kubectl drain evicted nothing: {output}");
    }
    Ok(())
}

/// Deletes the postgres pod: a server, asked directly, answers /ready 503
/// while it is gone and 200 once it is back, without restarting.
async fn database_pod_deleted(live: &Live<'_>) -> StepResult {
    let server = live.one_ready(Component::Server).await?;
    let endpoint = live.server_pod(&server).await?;
    let http = endpoint.client_with_timeout(Duration::from_secs(5))?;
    let ready = || async {
        let r = http.get(endpoint.url("/ready")).send().await.transient()?;
        Ok::<_, PollError>(r.status().as_u16())
    };
    let pods = live.pods();
    let old_uid = pods.get(&live.names.postgres_pod(0)).await?.metadata.uid;
    pods.delete(&live.names.postgres_pod(0), &DeleteParams::default()).await?;
    wait_until(&format!("{server} to answer /ready 503 with the database gone"), Deadline::secs(60).every_millis(250), || async {
        let code = ready().await?;
        Ok::<_, PollError>(if code == 503 { Poll::Ready(()) } else { Poll::Pending(format!("/ready {code}")) })
    })
    .await?;
    wait_until("the new postgres pod to be Ready", Deadline::secs(180).every_millis(1000), || async {
        let p = pods.get(&live.names.postgres_pod(0)).await?;
        let ready = p.metadata.uid != old_uid && certctl_harness::pods::is_ready(&p);
        Ok::<_, kube::Error>(if ready { Poll::Ready(()) } else { Poll::Pending(pod_summary(&p)) })
    })
    .await?;
    wait_until(&format!("{server} to answer /ready 200 by itself"), Deadline::secs(120).every_millis(500), || async {
        let code = ready().await?;
        Ok::<_, PollError>(if code == 200 { Poll::Ready(()) } else { Poll::Pending(format!("/ready {code}")) })
    })
    .await?;
    let restarts = certctl_harness::pods::restarts(&pods.get(&server).await?);
    ensure!(restarts == 0, "{server} restarted {restarts} time(s) while the database was away; it must wait, not exit");
    Ok(())
}
