//! The chart's backup, proven by a restore: the CronJob's run writes a
//! `pg_dump -Fc` to the operator's claim; the database is then lost (the
//! release uninstalled, its volume deleted) and a fresh release gets the
//! dump back by the chart README's restore procedure — every row identical.

use std::time::Instant;

use certctl_harness::command;
use certctl_harness::ensure;
use certctl_harness::scenario::{Scenario, StepResult};
use certctl_scenarios::modes::Mode;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, DeleteParams, PostParams};

use crate::support::data::Ledger;
use crate::support::kubectl::kubectl;
use crate::support::live::{Install, Live};

/// The operator's claim the dumps go to.
const SINK: &str = "certctl-backups";
/// The pod the README restores through.
const READER: &str = "certctl-backup-reader";

fn with_backup() -> Install {
    Install::mode(Mode::Default).set(serde_json::json!({"backup": {"enabled": true, "sink": {"existingClaim": SINK}}}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_restores_into_a_fresh_release_row_for_row() {
    Scenario::run("backup", async |s| {
        s.require("the operator's claim for the dumps", sink_claim(s)).await?;
        let live = s.require("install with backup.enabled", with_backup().run(s)).await?;
        s.require("rollout", live.rolled_out()).await?;
        let ledger = s.require("certificates issued to the agents through the API", Ledger::write(&live, 10)).await?;
        let dump = s.require("a run started from the CronJob completes and names its dump", run_backup(&live)).await?;

        s.require("the database is lost: uninstall, delete its volume", lose_database(s, &live)).await?;
        let fresh = s.require("a fresh release on an empty database", with_backup().run(s)).await?;
        s.require("rollout", fresh.rolled_out()).await?;
        s.require("restore the newest dump by the README's procedure", restore(&fresh, &dump)).await?;
        s.require("rollout after the restore", fresh.rolled_out()).await?;
        s.check("every row of the backed-up database is in the fresh release", async { ledger.intact(&fresh).await.map(drop) }).await;
        Ok(())
    })
    .await
    .unwrap();
}

async fn sink_claim(s: &Scenario) -> StepResult {
    let claim: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
        "metadata": {"name": SINK},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }))?;
    Api::<PersistentVolumeClaim>::namespaced(s.client.clone(), &s.namespace).create(&PostParams::default(), &claim).await?;
    Ok(())
}

/// `kubectl create job --from=cronjob/..`, waits for it, and returns the
/// dump its log names.
async fn run_backup(live: &Live<'_>) -> StepResult<String> {
    let (env, ns) = (live.s.env, live.names.namespace.as_str());
    let cron = format!("{}-backup", live.names.fullname());
    let job = format!("{cron}-now");
    let started = Instant::now();
    kubectl(env, &["-n", ns, "create", "job", &format!("--from=cronjob/{cron}"), &job]).await?;
    if let Err(e) = kubectl(env, &["-n", ns, "wait", "--for=condition=complete", &format!("job/{job}"), "--timeout=300s"]).await {
        let logs = kubectl(env, &["-n", ns, "logs", &format!("job/{job}"), "--tail=20"]).await.unwrap_or_default();
        return Err(format!("{e}\nthe job's log:\n{logs}").into());
    }
    let logs = kubectl(env, &["-n", ns, "logs", &format!("job/{job}")]).await?;
    let line =
        logs.lines().find(|l| l.starts_with("certctl-backup: wrote ")).ok_or_else(|| format!("the backup log names no dump:\n{logs}"))?;
    eprintln!("backup: {line} in {:.1?}", started.elapsed());
    let dump = line.trim_start_matches("certctl-backup: wrote ").split(' ').next().unwrap_or_default().to_string();
    ensure!(dump.starts_with("/backup/certctl-") && dump.ends_with(".dump"), "unexpected dump path {dump:?} in: {line}");
    Ok(dump)
}

async fn lose_database(s: &Scenario, live: &Live<'_>) -> StepResult {
    s.helm.uninstall(&live.names.release, &live.names.namespace).await?;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(s.client.clone(), &live.names.namespace);
    claims.delete(&live.names.postgres_claim(0), &DeleteParams::foreground()).await?;
    kubectl(
        s.env,
        &["-n", &live.names.namespace, "wait", "--for=delete", &format!("pvc/{}", live.names.postgres_claim(0)), "--timeout=120s"],
    )
    .await?;
    Ok(())
}

/// The chart README's restore, step by step: a reader pod on the sink, the
/// servers scaled to zero, the dump copied into the postgres pod and
/// restored in one transaction, the servers back.
async fn restore(live: &Live<'_>, dump: &str) -> StepResult {
    let (env, ns) = (live.s.env, live.names.namespace.as_str());
    let started = Instant::now();
    let reader = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": READER},
        "spec": {
            "restartPolicy": "Never", "automountServiceAccountToken": false,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 999, "runAsGroup": 999, "fsGroup": 999, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "reader", "image": live.s.env.images.postgres.to_string(), "command": ["sleep", "3600"],
                "securityContext": {"readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [{"name": "sink", "mountPath": "/backup", "readOnly": true}],
            }],
            "volumes": [{"name": "sink", "persistentVolumeClaim": {"claimName": SINK, "readOnly": true}}],
        },
    });
    let manifest = tempfile::Builder::new().suffix(".json").tempfile()?;
    std::fs::write(manifest.path(), reader.to_string())?;
    kubectl(env, &["-n", ns, "apply", "-f", &manifest.path().to_string_lossy()]).await?;
    kubectl(env, &["-n", ns, "wait", "--for=condition=Ready", &format!("pod/{READER}"), "--timeout=300s"]).await?;
    let newest = kubectl(env, &["-n", ns, "exec", READER, "--", "sh", "-c", "ls -1 /backup/certctl-*.dump | sort | tail -n 1"]).await?;
    ensure!(newest.trim() == dump, "the newest dump in the sink is {:?}, the backup wrote {dump:?}", newest.trim());

    let server = format!("deployment/{}", live.names.server());
    let servers = format!("app.kubernetes.io/instance={},app.kubernetes.io/component=server", live.names.release);
    kubectl(env, &["-n", ns, "scale", &server, "--replicas=0"]).await?;
    kubectl(env, &["-n", ns, "wait", "--for=delete", "pod", "-l", &servers, "--timeout=300s"]).await?;
    let postgres = live.names.postgres_pod(0);
    let kubectl_bin = env.tools.kubectl.path.to_string_lossy().into_owned();
    let kubeconfig = env.cluster.kubeconfig.to_string_lossy().into_owned();
    // The README pipes one exec into another: pg_restore wants a seekable file.
    let copy = format!(
        "\"$1\" --kubeconfig \"$2\" -n \"$3\" exec {READER} -- cat \"$4\" | \"$1\" --kubeconfig \"$2\" -n \"$3\" exec -i \"$5\" -c postgres -- sh -c 'cat > /tmp/restore.dump'"
    );
    command::run_async(tokio::process::Command::new("sh").args(["-c", &copy, "copy", &kubectl_bin, &kubeconfig, ns, dump, &postgres]))
        .await?;
    kubectl(
        env,
        &[
            "-n",
            ns,
            "exec",
            &postgres,
            "-c",
            "postgres",
            "--",
            "pg_restore",
            "-U",
            "certctl",
            "-d",
            "certctl",
            "--clean",
            "--if-exists",
            "--no-owner",
            "--single-transaction",
            "--exit-on-error",
            "/tmp/restore.dump",
        ],
    )
    .await?;
    kubectl(env, &["-n", ns, "exec", &postgres, "-c", "postgres", "--", "rm", "-f", "/tmp/restore.dump"]).await?;
    kubectl(env, &["-n", ns, "scale", &server, &format!("--replicas={}", live.server_replicas())]).await?;
    kubectl(env, &["-n", ns, "delete", "pod", READER, "--wait=false"]).await?;
    eprintln!("backup: restored {dump} in {:.1?}", started.elapsed());
    Ok(())
}
