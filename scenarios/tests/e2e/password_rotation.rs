//! The incident the chart's docs warn about: `postgresql.auth.password` is
//! changed on an existing release, but PostgreSQL set the password at initdb
//! and keeps it. The new server pod logs the 28P01 diagnostic with the
//! remedy and stays unready while the old pod keeps serving; running the
//! remedy (ALTER ROLE) makes the new pod Ready without a restart.

use certctl_harness::ensure;
use certctl_harness::logs::{logs_since, Instance};
use certctl_harness::names::Component;
use certctl_harness::pods::{is_ready, pod_summary};
use certctl_harness::scenario::{Scenario, StepResult};
use certctl_harness::wait::{wait_until, Deadline, Poll};
use certctl_scenarios::modes::Mode;

use crate::support::live::{Install, Live};

const ROTATED: &str = "rotated-postgres-password-2";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_password_gives_28p01_and_alter_role_recovers() {
    Scenario::run("password-rotation", async |s| {
        let live = s.require("install", Install::mode(Mode::Default).run(s)).await?;
        s.require("rollout", live.rolled_out()).await?;
        let old_pod = s.require("the serving pod", live.one_ready(Component::Server)).await?;

        let since = certctl_harness::logs::now();
        let rotated = live.release.clone().set(serde_json::json!({"postgresql": {"auth": {"password": ROTATED}}}));
        s.require("helm upgrade with a new postgresql.auth.password", async { Ok(s.helm.upgrade(&rotated).await.map(drop)?) }).await?;
        let new_pod = s.require("the new server pod logs SQLSTATE 28P01 with the remedy", diagnosed_28p01(&live, &old_pod, since)).await?;
        s.check("the old pod keeps serving while the new one is unready", old_serves_new_waits(&live, &old_pod, &new_pod)).await;
        s.check("ALTER ROLE with the configured password makes the new pod Ready without a restart", alter_role_recovers(&live, &new_pod))
            .await;
        s.check("rollout completes on the rotated password", live.rolled_out()).await;
        Ok(())
    })
    .await
    .unwrap();
}

/// Finds the server pod created by the upgrade and waits for its 28P01 line.
async fn diagnosed_28p01(live: &Live<'_>, old_pod: &str, since: k8s_openapi::jiff::Timestamp) -> StepResult<String> {
    let pods = live.pods();
    let new_pod = wait_until("the upgrade's new server pod", Deadline::secs(120), || async {
        let fresh: Vec<String> = pods
            .list(&kube::api::ListParams::default().labels(&live.names.selector(Component::Server)))
            .await?
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .filter(|n| n != old_pod)
            .collect();
        Ok::<_, kube::Error>(match fresh.into_iter().next() {
            Some(n) => Poll::Ready(n),
            None => Poll::Pending(format!("only {old_pod}")),
        })
    })
    .await?;
    let line = wait_until(&format!("{new_pod} to log SQLSTATE 28P01"), Deadline::secs(120).every_millis(2000), || async {
        // A container that has not started has no log yet: keep looking.
        let text = logs_since(&pods, &new_pod, "server", Some(since), Instance::Current).await.unwrap_or_default();
        Ok::<_, kube::Error>(match text.lines().find(|l| l.contains("SQLSTATE 28P01")) {
            Some(l) => Poll::Ready(l.to_string()),
            None => Poll::Pending(format!("last lines: {}", text.lines().rev().take(3).collect::<Vec<_>>().join(" | "))),
        })
    })
    .await?;
    ensure!(line.contains("ALTER ROLE"), "the 28P01 line does not give the ALTER ROLE remedy: {line}");
    ensure!(!line.contains("rotated-postgres-password"), "the 28P01 line leaks the configured password: {line}");
    Ok(new_pod)
}

async fn old_serves_new_waits(live: &Live<'_>, old_pod: &str, new_pod: &str) -> StepResult {
    let pods = live.pods();
    let new = pods.get(new_pod).await?;
    ensure!(!is_ready(&new), "{new_pod} is Ready on a password PostgreSQL rejects");
    let old = pods.get(old_pod).await?;
    ensure!(
        is_ready(&old) && old.metadata.deletion_timestamp.is_none(),
        "the old pod {old_pod} stopped serving before its replacement was Ready: {}",
        pod_summary(&old)
    );
    Ok(())
}

async fn alter_role_recovers(live: &Live<'_>, new_pod: &str) -> StepResult {
    let pods = live.pods();
    live.database().over_socket().query(&pods, &format!("ALTER ROLE \"certctl\" WITH PASSWORD '{ROTATED}'")).await?;
    let ready = wait_until(&format!("{new_pod} to become Ready"), Deadline::secs(120), || async {
        let pod = pods.get(new_pod).await?;
        Ok::<_, kube::Error>(if is_ready(&pod) { Poll::Ready(pod) } else { Poll::Pending(pod_summary(&pod)) })
    })
    .await?;
    let restarts: i32 = ready.status.and_then(|s| s.container_statuses).unwrap_or_default().iter().map(|c| c.restart_count).sum();
    ensure!(restarts == 0, "{new_pod} recovered only after {restarts} container restart(s); the server must retry, not exit");
    Ok(())
}
