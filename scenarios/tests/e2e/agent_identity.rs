//! The chart README's "Agent identity" promise: agents run as a StatefulSet
//! with a claim per pod keep who they are when their pods are replaced —
//! deleted, rolled by an upgrade, or uninstalled and installed again. Each
//! time the same agent ids answer with their stored credential (their
//! heartbeats are accepted again), nobody registers twice, and every row is
//! still there.

use std::collections::BTreeMap;

use certctl_harness::ensure;
use certctl_harness::names::Component;
use certctl_harness::scenario::{Scenario, StepResult};
use certctl_harness::wait::{wait_until, Classify, Deadline, Poll, PollError};
use certctl_scenarios::modes::Mode;
use kube::api::DeleteParams;

use crate::support::data::Ledger;
use crate::support::live::{Install, Live};

const AGENTS: usize = 2;

fn stateful_agents() -> Install {
    Install::mode(Mode::Default)
        .set(serde_json::json!({"agent": {"kind": "StatefulSet", "replicas": AGENTS, "persistence": {"enabled": true, "size": "16Mi"}}}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateful_agents_keep_their_identity_across_pod_replacement() {
    Scenario::run("agent-identity", async |s| {
        let live = s.require("install with agents as a StatefulSet with a claim per pod", stateful_agents().run(s)).await?;
        s.require("rollout", live.rolled_out()).await?;
        let ledger = s.require("certificates issued to each agent through the API", Ledger::write(&live, 2)).await?;
        let before = s
            .require("each agent pod's registration", async {
                let before = registrations(&live).await?;
                ensure!(before.len() == AGENTS, "{AGENTS} agents registered, found {before:?}");
                Ok(before)
            })
            .await?;

        let since = now();
        s.require("delete every agent pod; the StatefulSet makes new ones", replace_agent_pods(&live)).await?;
        s.check("the replaced pods are the same agents, heartbeating", same_agents(&live, &before, &since)).await;
        s.check("every row intact after the pods were replaced", async { ledger.intact(&live).await.map(drop) }).await;

        let since = now();
        let debug = live.reusing_values(serde_json::json!({"agent": {"log": {"level": "debug"}}}));
        s.require("helm upgrade --reuse-values with agent.log.level=debug (rolls every agent)", async {
            Ok(s.helm.upgrade(&debug).await.map(drop)?)
        })
        .await?;
        s.require("rollout", live.rolled_out()).await?;
        s.check("the rolled pods are the same agents, heartbeating", same_agents(&live, &before, &since)).await;
        s.check("every row intact after the upgrade", async { ledger.intact(&live).await.map(drop) }).await;

        s.require("helm uninstall", async { Ok(s.helm.uninstall(&live.names.release, &live.names.namespace).await?) }).await?;
        let since = now();
        let again = s.require("reinstall with the same values", stateful_agents().run(s)).await?;
        s.require("rollout", again.rolled_out()).await?;
        s.check("after the reinstall each ordinal is the agent it was, heartbeating", same_agents(&again, &before, &since)).await;
        s.check("every row intact after the reinstall", async { ledger.intact(&again).await.map(drop) }).await;
        Ok(())
    })
    .await
    .unwrap();
}

/// Agent name -> id, as registered.
async fn registrations(live: &Live<'_>) -> StepResult<BTreeMap<String, String>> {
    let rows = live.sql("select name || ' ' || id from agents order by name").await?;
    Ok(rows.lines().filter_map(|l| l.split_once(' ')).map(|(n, id)| (n.to_string(), id.to_string())).collect())
}

/// Now, as the database will compare it: kind's nodes are containers of
/// this host and share its clock.
fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

/// Deletes every agent pod, then waits until the StatefulSet has made a new
/// pod (another uid) under each name and all are Ready.
async fn replace_agent_pods(live: &Live<'_>) -> StepResult {
    let mut old = BTreeMap::new();
    for pod in live.pods_of(Component::Agent).await? {
        let (name, uid) = (pod.metadata.name.unwrap_or_default(), pod.metadata.uid.unwrap_or_default());
        live.pods().delete(&name, &DeleteParams::default()).await?;
        old.insert(name, uid);
    }
    wait_until("a new Ready pod under each agent pod's name", Deadline::secs(180).every_millis(1000), || async {
        let pods = live.pods_of(Component::Agent).await.transient()?;
        let new_ready: Vec<String> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && certctl_harness::pods::is_ready(p))
            .filter_map(|p| {
                let name = p.metadata.name.clone()?;
                (old.get(&name) != p.metadata.uid.as_ref()).then_some(name)
            })
            .collect();
        Ok::<_, PollError>(if new_ready.len() == old.len() && pods.len() == old.len() {
            Poll::Ready(())
        } else {
            Poll::Pending(format!("{} pod(s), new and Ready: {new_ready:?}", pods.len()))
        })
    })
    .await?;
    Ok(())
}

/// The registrations are exactly `before` (no agent lost, none added, no id
/// changed), and every agent's heartbeat was accepted after `since` and
/// after its current pod started — the server checks the stored credential
/// on each heartbeat, so the new pods prove the identity, not just carry the
/// name. (`since` alone would let an old pod's last heartbeat during a
/// rolling update pass for its successor's.)
async fn same_agents(live: &Live<'_>, before: &BTreeMap<String, String>, since: &str) -> StepResult {
    let started = pod_start_times(live).await?;
    ensure!(
        started.keys().eq(before.keys()),
        "agent pods are {:?}, registered agents {:?}",
        started.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    let ids = before.values().map(|id| format!("'{id}'")).collect::<Vec<_>>().join(",");
    let pods = started.iter().map(|(name, at)| format!("('{name}', '{at}'::timestamptz)")).collect::<Vec<_>>().join(",");
    // A pod's startTime is whole seconds, floored: one second more keeps a
    // heartbeat its predecessor sent in that same second from counting.
    let fresh = format!(
        "select a.name from agents a join (values {pods}) as p(name, started) on a.name = p.name \
         where a.id in ({ids}) and a.last_heartbeat_at > greatest('{since}'::timestamptz, p.started + interval '1 second') \
         order by a.name"
    );
    wait_until(
        &format!("every agent's heartbeat after {since} and after its pod started"),
        Deadline::secs(120).every_millis(1000),
        || async {
            let names: Vec<String> = live.sql(&fresh).await.fatal()?.lines().map(str::to_string).collect();
            Ok::<_, PollError>(if names.len() == before.len() {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("fresh heartbeats from {names:?} of pods started at {started:?}"))
            })
        },
    )
    .await?;
    let now = registrations(live).await?;
    ensure!(now == *before, "agents were {before:?}, are now {now:?}: an agent lost its identity or registered anew");
    Ok(())
}

/// Agent pod name (= agent name) -> when its current pod started.
async fn pod_start_times(live: &Live<'_>) -> StepResult<BTreeMap<String, String>> {
    let mut started = BTreeMap::new();
    for pod in live.pods_of(Component::Agent).await? {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = pod.metadata.name.unwrap_or_default();
        let Some(at) = pod.status.and_then(|s| s.start_time) else {
            return Err(format!("agent pod {name} has no start time yet").into());
        };
        started.insert(name, at.0.to_string());
    }
    Ok(started)
}
