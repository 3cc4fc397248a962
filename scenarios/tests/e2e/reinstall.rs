//! The chart README's promise about `helm uninstall`: the database claim is
//! retained, so a reinstall preserves the database. With the same password
//! the old rows are simply there; with a different one the server names
//! SQLSTATE 28P01 and the remedy, and the remedy brings the rows back.

use certctl_harness::ensure;
use certctl_harness::scenario::{Scenario, StepResult};
use certctl_scenarios::modes::Mode;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::Api;

use crate::password_rotation::{alter_role_recovers, diagnosed_28p01};
use crate::support::data::Ledger;
use crate::support::live::{Install, Live};

const OTHER_PASSWORD: &str = "reinstalled-postgres-password-3";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uninstall_keeps_the_database_for_a_reinstall() {
    Scenario::run("reinstall", async |s| {
        let live = s.require("install", Install::mode(Mode::Default).run(s)).await?;
        s.require("rollout", live.rolled_out()).await?;
        let ledger = s.require("certificates issued to the agents through the API", Ledger::write(&live, 3)).await?;

        s.require("helm uninstall keeps the database claim", uninstall_keeps_claim(s, &live)).await?;
        let again = s.require("reinstall with the same password", Install::mode(Mode::Default).run(s)).await?;
        s.require("rollout", again.rolled_out()).await?;
        s.check("every row is back after the reinstall", async { ledger.intact(&again).await.map(drop) }).await;

        s.require("helm uninstall again", uninstall_keeps_claim(s, &again)).await?;
        let since = certctl_harness::logs::now();
        let other = Install::mode(Mode::Default).set(serde_json::json!({"postgresql": {"auth": {"password": OTHER_PASSWORD}}}));
        let third = s.require("reinstall with a different password", other.run(s)).await?;
        let pod = s.require("the server logs SQLSTATE 28P01 with the remedy", diagnosed_28p01(&third, &[], since, OTHER_PASSWORD)).await?;
        s.require("the remedy (ALTER ROLE) makes it Ready", alter_role_recovers(&third, &pod, OTHER_PASSWORD)).await?;
        s.require("rollout", third.rolled_out()).await?;
        s.check("every row is back after the remedy", async { ledger.intact(&third).await.map(drop) }).await;
        Ok(())
    })
    .await
    .unwrap();
}

/// `helm uninstall --wait`, then the postgres claim is still there and Bound.
async fn uninstall_keeps_claim(s: &Scenario, live: &Live<'_>) -> StepResult {
    s.helm.uninstall(&live.names.release, &live.names.namespace).await?;
    let claim = live.names.postgres_claim(0);
    let found = Api::<PersistentVolumeClaim>::namespaced(s.client.clone(), &live.names.namespace).get_opt(&claim).await?;
    let phase = found.as_ref().and_then(|c| c.status.as_ref()).and_then(|st| st.phase.clone());
    ensure!(
        phase.as_deref() == Some("Bound"),
        "after helm uninstall, claim {claim} is {phase:?} (present: {}), want Bound",
        found.is_some()
    );
    let meta = found.map(|c| c.metadata).unwrap_or_default();
    ensure!(meta.deletion_timestamp.is_none(), "after helm uninstall, claim {claim} is being deleted");
    // An owner left on the claim means the garbage collector deletes it soon.
    let owners: Vec<String> = meta.owner_references.unwrap_or_default().into_iter().map(|o| format!("{}/{}", o.kind, o.name)).collect();
    ensure!(owners.is_empty(), "after helm uninstall, claim {claim} is owned by {owners:?}: it will be garbage-collected");
    Ok(())
}
