//! Volumes a Pod Security "restricted" pod can write, on a kind cluster whose
//! default StorageClass is the in-tree `kubernetes.io/host-path` provisioner
//! (kind's fallback when the node image ships no storage manifest, as our
//! offline node image does).
//!
//! host-path volumes are root-owned 0750 directories and kubelet never
//! applies `fsGroup` to them, so only a root init container could hand them
//! to PostgreSQL — which "restricted" forbids. kubelet does apply `fsGroup`
//! to `local` volumes: this module makes StorageClass `certctl-local`
//! (no provisioner, bound when the pod is scheduled, retained) the default
//! and keeps a pool of local PersistentVolumes on every node. Claims bind
//! exactly as they would to a provisioner; a Released volume is wiped and
//! made Available again at the next setup.
//!
//! A cluster whose default class is anything else (kind online ships
//! local-path-provisioner; a real cluster its CSI driver) is left alone.

use std::path::Path;
use std::process::Command;

use crate::command::{self, run, CommandError};

/// The StorageClass made default.
pub const STORAGE_CLASS: &str = "certctl-local";
/// Volumes kept Available or Bound on each node.
pub const POOL_PER_NODE: usize = 16;
/// Where on a node the volumes live.
const ROOT: &str = "/var/local/certctl-pv";
/// Label of the pool's volumes.
const POOL_LABEL: &str = "certctl.io/volume-pool";
const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";

/// Errors preparing storage.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// kubectl or docker could not run, or failed.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// kubectl printed what is not JSON.
    #[error("kubectl printed unparsable JSON for {what}: {source}")]
    Json {
        /// What was read.
        what: &'static str,
        /// The parse error.
        source: serde_json::Error,
    },
}

/// What [`ensure`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    /// The default class is not host-path: nothing touched.
    Untouched {
        /// The default class's provisioner (empty when none is default).
        provisioner: String,
    },
    /// `certctl-local` is the default; the pool is topped up.
    LocalPool {
        /// Volumes created now.
        created: usize,
        /// Released volumes wiped and recreated.
        recycled: usize,
    },
}

/// Makes `certctl-local` the default class and tops up its volume pool on
/// each of `nodes` (running kind node containers; volumes of other nodes are
/// left as they are), when the cluster's default class
/// is host-path or already `certctl-local`.
///
/// # Errors
/// kubectl or docker failures, with the command and its stderr.
pub fn ensure(kubectl: &Path, kubeconfig: &Path, nodes: &[String]) -> Result<Prepared, StorageError> {
    let kc = |args: &[&str]| {
        let mut cmd = Command::new(kubectl);
        cmd.env("KUBECONFIG", kubeconfig).args(args);
        cmd
    };
    let classes = json(run(&mut kc(&["get", "storageclass", "-o", "json"]))?.stdout, "storage classes")?;
    let default =
        classes["items"].as_array().into_iter().flatten().find(|c| c["metadata"]["annotations"][DEFAULT_CLASS] == "true").map(|c| {
            (c["metadata"]["name"].as_str().unwrap_or_default().to_string(), c["provisioner"].as_str().unwrap_or_default().to_string())
        });
    match &default {
        Some((name, _)) if name == STORAGE_CLASS => {}
        Some((name, provisioner)) if provisioner == "kubernetes.io/host-path" => {
            run(&mut kc(&["annotate", "--overwrite", "storageclass", name, &format!("{DEFAULT_CLASS}=false")]))?;
        }
        other => return Ok(Prepared::Untouched { provisioner: other.as_ref().map(|(_, p)| p.clone()).unwrap_or_default() }),
    }
    apply(&mut kc(&["apply", "-f", "-"]), &storage_class())?;

    let volumes = json(run(&mut kc(&["get", "pv", "-l", POOL_LABEL, "-o", "json"]))?.stdout, "persistent volumes")?;
    let mut recycled = 0;
    let mut live: Vec<(String, String)> = Vec::new();
    for pv in volumes["items"].as_array().into_iter().flatten() {
        let name = pv["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let node = pv["metadata"]["labels"][POOL_LABEL].as_str().unwrap_or_default().to_string();
        // Only where the node runs now: a volume is never made Available again unwiped.
        if matches!(pv["status"]["phase"].as_str(), Some("Released" | "Failed")) && nodes.contains(&node) {
            run(&mut kc(&["delete", "pv", &name, "--wait=true"]))?;
            run(Command::new("docker").args(["exec", &node, "rm", "-rf", &format!("{ROOT}/{name}")]))?;
            recycled += 1;
        } else {
            live.push((node, name));
        }
    }
    let mut created = 0;
    for node in nodes {
        let mut have: Vec<&str> = live.iter().filter(|(n, _)| n == node).map(|(_, v)| v.as_str()).collect();
        let mut next = 0;
        while have.len() < POOL_PER_NODE {
            let name = format!("{STORAGE_CLASS}-{node}-{next}");
            next += 1;
            if have.contains(&name.as_str()) {
                continue;
            }
            // Root-owned 0755: kubelet gives it to the pod's fsGroup on mount.
            run(Command::new("docker").args(["exec", node, "mkdir", "-p", "-m", "0755", &format!("{ROOT}/{name}")]))?;
            apply(&mut kc(&["apply", "-f", "-"]), &volume(&name, node))?;
            live.push((node.clone(), name));
            have = live.iter().filter(|(n, _)| n == node).map(|(_, v)| v.as_str()).collect();
            created += 1;
        }
    }
    Ok(Prepared::LocalPool { created, recycled })
}

fn json(stdout: Vec<u8>, what: &'static str) -> Result<serde_json::Value, StorageError> {
    serde_json::from_slice(&stdout).map_err(|source| StorageError::Json { what, source })
}

fn apply(cmd: &mut Command, object: &serde_json::Value) -> Result<(), StorageError> {
    command::run_with_input(cmd, object.to_string().as_bytes())?;
    Ok(())
}

/// The default class: no provisioner, bound where the pod lands, retained
/// (a claim deleted by mistake leaves its data on the node).
fn storage_class() -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS, "annotations": {DEFAULT_CLASS: "true"}},
        "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "WaitForFirstConsumer",
        "reclaimPolicy": "Retain",
    })
}

/// One pool volume pinned to `node`. 10Gi satisfies any claim the chart's
/// tests make; a local volume is not size-enforced.
fn volume(name: &str, node: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "labels": {POOL_LABEL: node}},
        "spec": {
            "capacity": {"storage": "10Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": STORAGE_CLASS,
            "local": {"path": format!("{ROOT}/{name}")},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
            ]}]}},
        },
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_volume_is_pinned_to_its_node_under_the_pool_root() {
        let v = super::volume("certctl-local-n1-0", "n1");
        assert_eq!(v["spec"]["local"]["path"], "/var/local/certctl-pv/certctl-local-n1-0");
        assert_eq!(v["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0], "n1");
        assert_eq!(v["metadata"]["labels"]["certctl.io/volume-pool"], "n1");
    }
}
