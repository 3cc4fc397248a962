//! The pinned kubectl against the test cluster, for what is clearer as a
//! kubectl line than as API calls (applying add-on manifests).

use certctl_harness::ensure;
use certctl_harness::env::TestEnv;
use certctl_harness::scenario::StepResult;

/// Runs `kubectl <args>`; a failure carries its stderr.
pub async fn kubectl(env: &TestEnv, args: &[&str]) -> StepResult<String> {
    let out =
        tokio::process::Command::new(&env.tools.kubectl.path).arg("--kubeconfig").arg(&env.cluster.kubeconfig).args(args).output().await?;
    ensure!(out.status.success(), "kubectl {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
