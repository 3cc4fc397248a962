//! Helm 4 applies server-side and waits with kstatus. A release Helm 3
//! installed must upgrade with Helm 4 — first as Helm 4 does by default for
//! it (client-side, as installed), then moved to server-side apply — with no
//! field-manager conflict, `--wait=watcher` completing, and every row intact.

use certctl_harness::ensure;
use certctl_harness::helm::Helm;
use certctl_harness::scenario::{Scenario, StepResult};
use certctl_harness::tools::{PinnedVersions, Tool, ToolName};
use certctl_scenarios::modes::Mode;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;

use crate::support::data::Ledger;
use crate::support::live::{Install, Live};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helm3_release_upgrades_with_helm4_server_side() {
    Scenario::run("helm-majors", async |s| {
        let (helm3, helm4) = s.require("both pinned helms", async { Ok((helm(s, ToolName::Helm)?, helm(s, ToolName::Helm4)?)) }).await?;
        let live = s.require("install with Helm 3", Install::mode(Mode::Default).with_helm(helm3).run(s)).await?;
        s.require("rollout", live.rolled_out()).await?;
        let ledger = s.require("certificates issued to the agents through the API", Ledger::write(&live, 2)).await?;

        for (step, level, args) in [
            ("helm 4 upgrade as installed (client-side), --wait=watcher", "debug", &["--wait=watcher"][..]),
            ("helm 4 upgrade moved to server-side apply, --wait=watcher", "info", &["--server-side=true", "--wait=watcher"][..]),
        ] {
            let mut upgrade = live.release.clone().set(serde_json::json!({"server": {"log": {"level": level}}}));
            for a in args {
                upgrade = upgrade.arg(a);
            }
            s.require(step, async { Ok(helm4.upgrade(&upgrade).await.map(drop)?) }).await?;
            s.require("rollout", live.rolled_out()).await?;
            s.check(&format!("every row intact after: {step}"), async { ledger.intact(&live).await.map(drop) }).await;
        }
        s.check("the server Deployment is now managed by helm's server-side apply", applied_server_side(&live)).await;
        Ok(())
    })
    .await
    .unwrap();
}

fn helm(s: &Scenario, name: ToolName) -> StepResult<Helm> {
    let tool = Tool::locate(name, &PinnedVersions::load()?)?;
    Ok(Helm::new(&tool.path, &s.env.cluster.kubeconfig))
}

/// The Deployment's managed fields name manager `helm` with operation Apply.
async fn applied_server_side(live: &Live<'_>) -> StepResult {
    let d = Api::<Deployment>::namespaced(live.s.client.clone(), &live.names.namespace).get(&live.names.server()).await?;
    let managers: Vec<(String, String)> = d
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .map(|m| (m.manager.unwrap_or_default(), m.operation.unwrap_or_default()))
        .collect();
    ensure!(
        managers.iter().any(|(m, op)| m == "helm" && op == "Apply"),
        "no `helm` Apply manager on {}: {managers:?}",
        live.names.server()
    );
    Ok(())
}
