//! The incident the chart's README warns about: `postgresql.auth.password` is
//! changed on an existing release, but PostgreSQL set the password at initdb
//! and keeps it. The new server pod logs the 28P01 diagnostic with the
//! remedy and stays unready while the old pod keeps serving; the README's
//! non-destructive remedy (ALTER ROLE, then the same value again with
//! `--reuse-values`, then a restart) brings it back with every row intact.
//! The destructive one (a new volume) leaves an empty database the new
//! password opens.

use certctl_harness::ensure;
use certctl_harness::logs::{logs_since, Instance};
use certctl_harness::names::Component;
use certctl_harness::pods::{is_ready, pod_summary};
use certctl_harness::scenario::{Scenario, StepResult};
use certctl_harness::wait::{wait_until, Deadline, Poll};
use certctl_scenarios::modes::Mode;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, DeleteParams, ListParams};

use crate::support::data::{Ledger, Snapshot};
use crate::support::live::{Install, Live};

const ROTATED: &str = "rotated-postgres-password-2";

fn password(value: &str) -> serde_json::Value {
    serde_json::json!({"postgresql": {"auth": {"password": value}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_password_gives_28p01_and_the_remedies_work() {
    Scenario::run("password-rotation", async |s| {
        let live = s.require("install", Install::mode(Mode::Default).run(s)).await?;
        s.require("rollout", live.rolled_out()).await?;
        let ledger = s.require("certificates issued to the agents through the API", Ledger::write(&live, 3)).await?;
        let old_pod = s.require("the serving pod", live.one_ready(Component::Server)).await?;

        let since = certctl_harness::logs::now();
        let rotated = live.release.clone().set(password(ROTATED));
        s.require("helm upgrade with a new postgresql.auth.password", async { Ok(s.helm.upgrade(&rotated).await.map(drop)?) }).await?;
        let new_pod = s
            .require(
                "the new server pod logs SQLSTATE 28P01 with the remedy",
                diagnosed_28p01(&live, std::slice::from_ref(&old_pod), since, ROTATED),
            )
            .await?;
        s.check("the old pod keeps serving while the new one is unready", old_serves_new_waits(&live, &old_pod, &new_pod)).await;
        s.require(
            "ALTER ROLE with the configured password makes the new pod Ready without a restart",
            alter_role_recovers(&live, &new_pod, ROTATED),
        )
        .await?;
        let again = live.reusing_values(password(ROTATED));
        s.require("helm upgrade --reuse-values with the same password", async { Ok(s.helm.upgrade(&again).await.map(drop)?) }).await?;
        s.require("rollout restart of the servers", live.restart_servers()).await?;
        s.require("rollout completes on the rotated password", live.rolled_out()).await?;
        s.check("every row written before the rotation is intact", async { ledger.intact(&live).await.map(drop) }).await;

        s.require(
            "destructive remedy: uninstall, delete the database volume, install with the new password",
            destroy_and_reinstall(s, &live),
        )
        .await?;
        let fresh = s.require("reinstall", Install::mode(Mode::Default).set(password(ROTATED)).run(s)).await?;
        s.require("rollout on an empty volume", fresh.rolled_out()).await?;
        s.check("the new password opens the new database over TCP", async {
            fresh.database().scalar(&fresh.pods(), "select 1").await?;
            Ok(())
        })
        .await;
        s.check("no row of the old database survives", none_survive(&ledger, &fresh)).await;
        Ok(())
    })
    .await
    .unwrap();
}

/// Waits for a server pod not in `except` and for its 28P01 line, which must
/// name the remedy and not `password`.
pub async fn diagnosed_28p01(
    live: &Live<'_>,
    except: &[String],
    since: k8s_openapi::jiff::Timestamp,
    password: &str,
) -> StepResult<String> {
    let pods = live.pods();
    let new_pod = wait_until("a new server pod", Deadline::secs(120), || async {
        let listed = pods.list(&ListParams::default().labels(&live.names.selector(Component::Server))).await?;
        // Created since `since` and not on its way out: a pod of an uninstalled release
        // may still be terminating (timestamps have whole seconds).
        let fresh: Vec<String> = listed
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| p.metadata.creation_timestamp.as_ref().is_some_and(|t| t.0.as_second() >= since.as_second()))
            .filter_map(|p| p.metadata.name)
            .filter(|n| !except.contains(n))
            .collect();
        Ok::<_, kube::Error>(match fresh.into_iter().next() {
            Some(n) => Poll::Ready(n),
            None => Poll::Pending(format!("only {except:?}")),
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
    ensure!(!line.contains(password), "the 28P01 line leaks the configured password: {line}");
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

/// The README's remedy through the pod's local socket, then `pod` becomes
/// Ready on its own: the server retries, it does not exit.
pub async fn alter_role_recovers(live: &Live<'_>, pod: &str, new_password: &str) -> StepResult {
    let pods = live.pods();
    live.sql(&format!("ALTER ROLE \"certctl\" WITH PASSWORD '{new_password}'")).await?;
    let ready = wait_until(&format!("{pod} to become Ready"), Deadline::secs(120), || async {
        let p = pods.get(pod).await?;
        Ok::<_, kube::Error>(if is_ready(&p) { Poll::Ready(p) } else { Poll::Pending(pod_summary(&p)) })
    })
    .await?;
    let restarts = certctl_harness::pods::restarts(&ready);
    ensure!(restarts == 0, "{pod} recovered only after {restarts} container restart(s); the server must retry, not exit");
    Ok(())
}

/// `helm uninstall`, then the database claim the chart keeps is deleted and
/// awaited until gone.
async fn destroy_and_reinstall(s: &Scenario, live: &Live<'_>) -> StepResult {
    s.helm.uninstall(&live.names.release, &live.names.namespace).await?;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(s.client.clone(), &live.names.namespace);
    let claim = live.names.postgres_claim(0);
    claims.delete(&claim, &DeleteParams::foreground()).await?;
    wait_until(&format!("claim {claim} to be deleted"), Deadline::secs(120), || async {
        Ok::<_, kube::Error>(match claims.get_opt(&claim).await? {
            None => Poll::Ready(()),
            Some(c) => Poll::Pending(format!("phase {:?}, finalizers {:?}", c.status.and_then(|s| s.phase), c.metadata.finalizers)),
        })
    })
    .await?;
    Ok(())
}

/// The ledger's certificates and CA are absent from the new database.
async fn none_survive(ledger: &Ledger, fresh: &Live<'_>) -> StepResult {
    let now = Snapshot::take(fresh).await?;
    let survivors: Vec<&String> = ledger.certificates.iter().filter(|id| now.table("certificates").any(|r| r["id"] == **id)).collect();
    ensure!(survivors.is_empty(), "certificates {survivors:?} survived a new volume");
    let old_ca = ledger.snapshot.table("ca").next().map(|r| r["cert_pem"].clone());
    ensure!(now.table("ca").next().map(|r| r["cert_pem"].clone()) != old_ca, "the new database holds the old CA");
    Ok(())
}
