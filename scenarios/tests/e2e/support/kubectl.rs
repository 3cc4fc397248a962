//! The pinned kubectl against the test cluster, for what is clearer as a
//! kubectl line than as API calls (applying add-on manifests).

use certctl_harness::command;
use certctl_harness::env::TestEnv;
use certctl_harness::scenario::StepResult;

/// Runs `kubectl <args>`; a failure carries its stderr.
pub async fn kubectl(env: &TestEnv, args: &[&str]) -> StepResult<String> {
    let mut cmd = tokio::process::Command::new(&env.tools.kubectl.path);
    cmd.arg("--kubeconfig").arg(&env.cluster.kubeconfig).args(args);
    Ok(command::stdout(&command::run_async(&mut cmd).await?))
}
