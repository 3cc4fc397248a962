//! The API server's own verdict on the chart, live: every mode's rendered manifests pass a
//! server-side apply dry run with strict field validation on the cluster's Kubernetes
//! version (a removed API version, a field that version lacks, a duplicate list-map key
//! such as two env entries of one name: each is refused here, never applied). Run on each
//! pinned version with `CERTCTL_KUBERNETES=<version>` (cluster `certctl-k8s-<minor>`,
//! docs/harness.md).
use std::process::Command;

use certctl_harness::command;
use certctl_harness::env::{Shape, TestEnv};
use certctl_scenarios::crd::CachedCrd;
use certctl_scenarios::modes::Mode;
use certctl_scenarios::render::Render;

const NAMESPACE: &str = "certctl-api-validation";
const FIELD_MANAGER: &str = "certctl-api-validation";

/// kubectl on the shared cluster, `stdin` fed in; its stdout, or its stderr as the error.
fn kubectl(env: &TestEnv, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut cmd = Command::new(&env.tools.kubectl.path);
    cmd.args(args).env("KUBECONFIG", &env.cluster.kubeconfig);
    let out = match stdin {
        Some(text) => command::run_with_input(&mut cmd, text.as_bytes()),
        None => command::run(&mut cmd),
    };
    out.map(|o| command::stdout(&o)).map_err(|e| e.to_string())
}

/// The CRDs of the custom resources the chart renders, served and Established.
fn install_crds(env: &TestEnv) -> Result<(), String> {
    let mut names = Vec::new();
    for crd in [CachedCrd::Certificate, CachedCrd::ServiceMonitor] {
        let path = crd.path().map_err(|e| e.to_string())?;
        let path = path.to_str().ok_or("non-UTF-8 cache path")?;
        let applied = kubectl(
            env,
            &["apply", "--server-side", "--force-conflicts", "--field-manager", FIELD_MANAGER, "-f", path, "-o", "name"],
            None,
        )?;
        names.extend(applied.split_whitespace().map(str::to_owned));
    }
    let mut args = vec!["wait", "--for=condition=Established", "--timeout=60s"];
    args.extend(names.iter().map(String::as_str));
    kubectl(env, &args, None).map(|_| ())
}

/// Every mode's manifests, rendered for this cluster's version by the run's helm, are
/// accepted by a server-side apply dry run with `--validate=strict`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mode_passes_server_side_strict_validation() {
    let env = TestEnv::shared_async(Shape::default()).await.unwrap_or_else(|e| panic!("{e}"));
    install_crds(env).unwrap_or_else(|e| panic!("the chart's CRDs could not be installed: {e}"));
    let namespace = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n");
    kubectl(env, &["apply", "-f", "-"], Some(&namespace)).unwrap_or_else(|e| panic!("namespace {NAMESPACE}: {e}"));

    let mut refused = Vec::new();
    for mode in Mode::ALL {
        let rendered =
            Render::mode(mode).namespace(NAMESPACE).run(&env.tools.helm).unwrap_or_else(|e| panic!("{mode}: render failed: {e}"));
        let args = [
            "apply",
            "--server-side",
            "--dry-run=server",
            "--validate=strict",
            "--field-manager",
            FIELD_MANAGER,
            "-n",
            NAMESPACE,
            "-f",
            "-",
        ];
        match kubectl(env, &args, Some(&rendered.yaml)) {
            Ok(out) => eprintln!("{mode}: {} objects accepted (dry run):\n{}", rendered.objects.len(), out.trim()),
            Err(e) => refused.push(format!("{mode}: {e}")),
        }
    }
    // Nothing was applied but the namespace; it goes whatever the verdict.
    let _ = kubectl(env, &["delete", "namespace", NAMESPACE, "--wait=false"], None);
    assert!(
        refused.is_empty(),
        "the API server of Kubernetes {} refused rendered manifests:\n{}",
        env.tools.kubectl.version,
        refused.join("\n\n")
    );
}
