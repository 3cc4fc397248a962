//! One worker set aside for the scenarios that take nodes away (drain, an
//! abrupt stop): it carries the taint [`TAINT`], which only a release that
//! tolerates it schedules onto, so killing it disrupts that release and no
//! other scenario running beside it. And the docker-level node operations.

use std::path::Path;
use std::process::Command;

use crate::cluster::ClusterError;
use crate::command::{self, run};

/// Taint key (effect NoSchedule) and label of the set-aside worker.
pub const TAINT: &str = "certctl.io/disruptable";

/// The toleration a release adds to run on the set-aside worker.
///
/// # Example
/// ```
/// assert_eq!(certctl_harness::disruption::toleration()["key"], "certctl.io/disruptable");
/// ```
pub fn toleration() -> serde_json::Value {
    serde_json::json!({"key": TAINT, "operator": "Exists", "effect": "NoSchedule"})
}

/// Taints and labels the last of `workers` (kind node names, sorted), when
/// there are at least two, and returns it; with fewer, sets none aside.
///
/// # Errors
/// kubectl's failure.
pub fn set_aside(kubectl: &Path, kubeconfig: &Path, workers: &[String]) -> Result<Option<String>, ClusterError> {
    let [_, .., last] = workers else { return Ok(None) };
    let kc = |args: &[&str]| {
        let mut cmd = Command::new(kubectl);
        cmd.env("KUBECONFIG", kubeconfig).args(args);
        cmd
    };
    run(&mut kc(&["taint", "node", last, &format!("{TAINT}=true:NoSchedule"), "--overwrite"]))?;
    run(&mut kc(&["label", "node", last, &format!("{TAINT}=true"), "--overwrite"]))?;
    Ok(Some(last.clone()))
}

/// The worker nodes of a kind cluster's node list (`kind get nodes`), sorted.
///
/// # Example
/// ```
/// let nodes = ["c-worker2", "c-control-plane", "c-worker"].map(String::from);
/// assert_eq!(certctl_harness::disruption::workers(&nodes), ["c-worker", "c-worker2"]);
/// ```
pub fn workers(nodes: &[String]) -> Vec<String> {
    let mut w: Vec<String> = nodes.iter().filter(|n| !n.ends_with("-control-plane")).cloned().collect();
    w.sort();
    w
}

/// A killed kind node: start it again with [`KilledNode::start`].
#[derive(Debug)]
#[must_use = "a killed node stays down until started"]
pub struct KilledNode {
    /// The node (its container's name).
    pub name: String,
    addresses: String,
}

/// Kills a kind node's container (SIGKILL: no kubelet goodbye, no drain).
///
/// # Errors
/// docker's failure.
pub async fn kill_node(node: &str) -> Result<KilledNode, ClusterError> {
    let addresses = addresses(node).await?;
    docker(&["kill", node]).await?;
    Ok(KilledNode { name: node.to_string(), addresses })
}

impl KilledNode {
    /// Starts the node's container again. Its kubelet was set up for its
    /// address: if Docker gave it another one (a container created meanwhile
    /// took the freed address), that is an error naming both.
    ///
    /// # Errors
    /// docker's failure, or a changed address.
    pub async fn start(self) -> Result<(), ClusterError> {
        docker(&["start", &self.name]).await?;
        let now = addresses(&self.name).await?;
        if now != self.addresses {
            return Err(ClusterError::NodeMoved { node: self.name, was: self.addresses, now });
        }
        Ok(())
    }
}

/// The container's addresses on its networks.
async fn addresses(node: &str) -> Result<String, ClusterError> {
    docker(&["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", node]).await.map(|s| s.trim().to_string())
}

async fn docker(args: &[&str]) -> Result<String, ClusterError> {
    Ok(command::stdout(&command::run_async(tokio::process::Command::new("docker").args(args)).await?))
}
