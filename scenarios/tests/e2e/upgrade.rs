//! The most common chart regression users hit is the upgrade. Install the
//! chart users run today (the newest `chart-v*` tag, else the chart before
//! its last change), write real data, upgrade to the working tree's chart
//! with the same values, change one value with `--reuse-values`, roll back
//! twice — and after every step each row is still there.

use std::collections::BTreeMap;

use certctl_harness::ensure;
use certctl_harness::exec::exec;
use certctl_harness::names::Component;
use certctl_harness::previous_chart::PreviousChart;
use certctl_harness::scenario::{Scenario, StepResult};
use certctl_scenarios::modes::Mode;

use crate::support::data::{Ledger, Snapshot};
use crate::support::live::{database_password, Install, Live};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_from_the_previous_chart_and_back_keeps_every_row() {
    Scenario::run("upgrade", async |s| {
        let previous = s.require("the previous chart", async { Ok(PreviousChart::find(&certctl_harness::workspace::root())?) }).await?;
        eprintln!("upgrade: from {}", previous.source);
        let known = s.require("the previous chart's values", async { Ok(previous.values()?) }).await?;
        let install = Install::mode(Mode::Default).chart(previous.path()).known_to(known);
        let old = s.require(&format!("install the previous chart ({})", previous.source), install.run(s)).await?;
        s.require("rollout of the previous chart", old.rolled_out()).await?;
        let ledger = s.require("certificates issued to the agents through the API", Ledger::write(&old, 3)).await?;
        let agents_before = s.require("the agent pods before", agent_pods(&old)).await?;

        let new = s.require("helm upgrade to the working tree's chart, same values", Install::mode(Mode::Default).upgrade(s)).await?;
        s.require("rollout after the upgrade", new.rolled_out()).await?;
        s.check("every row intact after the upgrade", async { ledger.intact(&new).await.map(drop) }).await;
        s.check("an agent that kept its pod kept its identity; no agent registered twice", kept_identity(&new, &agents_before)).await;
        s.check("no container restarted", no_restarts(&new)).await;
        let upgraded =
            s.require("the upgraded revision", async { Ok(s.helm.revision(&new.names.release, &new.names.namespace).await?) }).await?;

        let debug = new.reusing_values(serde_json::json!({"server": {"log": {"level": "debug"}}}));
        s.require("helm upgrade --reuse-values with server.log.level=debug", async { Ok(s.helm.upgrade(&debug).await.map(drop)?) }).await?;
        s.require("rollout", new.rolled_out()).await?;
        s.check("every row intact after --reuse-values", async { ledger.intact(&new).await.map(drop) }).await;
        s.check("the changed value reached the server", log_level_is(&new, "debug")).await;

        for (what, revision) in [("the upgraded chart", upgraded), ("the previous chart", 1)] {
            s.require(&format!("helm rollback to revision {revision} ({what})"), async {
                Ok(s.helm.rollback(&new.names.release, &new.names.namespace, revision).await?)
            })
            .await?;
            s.require("rollout", new.rolled_out()).await?;
            s.check(&format!("every row intact after the rollback to {what}"), async { ledger.intact(&new).await.map(drop) }).await;
        }
        Ok(())
    })
    .await
    .unwrap();
}

/// Agent pod name -> agent id, for the Ready agent pods.
async fn agent_pods(live: &Live<'_>) -> StepResult<BTreeMap<String, String>> {
    let ready = live.ready(Component::Agent).await?;
    let ids = registered(&Snapshot::take(live).await?);
    Ok(ready.into_iter().filter_map(|pod| ids.get(&pod).map(|id| (pod, id.clone()))).collect())
}

/// Agent name -> id, as registered.
fn registered(snapshot: &Snapshot) -> BTreeMap<String, String> {
    snapshot.table("agents").filter_map(|r| Some((r["name"].as_str()?.to_string(), r["id"].as_str()?.to_string()))).collect()
}

/// Agents are named after their pod (keys live in the pod's emptyDir): a pod
/// the upgrade kept must keep its registration; a replaced pod registers as
/// a new agent — exactly once.
async fn kept_identity(live: &Live<'_>, before: &BTreeMap<String, String>) -> StepResult {
    let now = registered(&Snapshot::take(live).await?);
    let ready = live.ready(Component::Agent).await?;
    ensure!(!ready.is_empty(), "no Ready agent pod after the upgrade");
    let mut replaced = 0;
    for pod in &ready {
        match (before.get(pod), now.get(pod)) {
            (Some(was), Some(is)) => ensure!(was == is, "agent {pod} was {was} before the upgrade, is {is} after"),
            (None, Some(_)) => replaced += 1,
            (_, None) => return Err(format!("Ready agent pod {pod} is not registered").into()),
        }
    }
    eprintln!("upgrade: {} agent pod(s) kept, {replaced} replaced and registered anew", ready.len() - replaced);
    Ok(())
}

/// Every container of the release's pods has restart count 0: the rollout
/// replaced pods, nothing crashed.
async fn no_restarts(live: &Live<'_>) -> StepResult {
    let mut restarted = Vec::new();
    for component in [Component::Server, Component::Agent, Component::Postgres] {
        for pod in live.pods_of(component).await? {
            for c in pod.status.and_then(|s| s.container_statuses).unwrap_or_default() {
                if c.restart_count > 0 {
                    restarted.push(format!("{}/{}: {} restart(s)", pod.metadata.name.clone().unwrap_or_default(), c.name, c.restart_count));
                }
            }
        }
    }
    ensure!(restarted.is_empty(), "containers restarted across the upgrade: {}", restarted.join(", "));
    Ok(())
}

/// Every Ready server runs with `level` (the ConfigMap change rolled the
/// pods), and `--reuse-values` kept the other values.
async fn log_level_is(live: &Live<'_>, level: &str) -> StepResult {
    for pod in live.ready(Component::Server).await? {
        let out = exec(&live.pods(), &pod, "server", &["printenv", "CERTCTL_LOG_LEVEL"]).await?;
        ensure!(out.stdout.trim() == level, "{pod} runs with CERTCTL_LOG_LEVEL={:?}, want {level:?}", out.stdout.trim());
    }
    let values = live.s.helm.values(&live.names.release, &live.names.namespace).await?;
    let kept = values["postgresql"]["auth"]["password"].as_str().unwrap_or_default();
    let want = database_password(live.s, &live.names.release);
    ensure!(kept == want, "--reuse-values lost the other values: postgresql.auth.password is {kept:?}, want {want:?}");
    Ok(())
}
