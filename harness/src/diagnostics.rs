//! The failure bundle: everything needed to understand a failed scenario
//! without the cluster — events sorted by time, a describe-equivalent of each
//! pod, current and previous logs, helm values and manifest, workloads, PDB
//! and NetworkPolicy status. Collection never fails the caller: what could
//! not be gathered is listed in `collection-errors.txt`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams};

use crate::helm::Helm;
use crate::logs::{logs_since, Instance};
use crate::pods::pod_summary;

/// The artifacts root: `$CERTCTL_ARTIFACTS`, else `target/e2e-artifacts` in
/// the workspace.
///
/// # Example
/// ```
/// assert!(certctl_harness::diagnostics::artifacts_root().to_string_lossy().contains("artifacts")
///     || std::env::var("CERTCTL_ARTIFACTS").is_ok());
/// ```
pub fn artifacts_root() -> PathBuf {
    match std::env::var_os("CERTCTL_ARTIFACTS") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/e2e-artifacts"),
    }
}

/// What to collect.
///
/// # Example
/// ```no_run
/// # async fn f(client: kube::Client, helm: certctl_harness::helm::Helm) {
/// use certctl_harness::diagnostics::Collect;
/// let dir = Collect { namespace: "default-mode".into(), releases: vec!["c".into()] }
///     .write(&client, Some(&helm), "/tmp/bundle".as_ref(), "install failed").await;
/// println!("bundle at {}", dir.display());
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Collect {
    /// Namespace of the scenario.
    pub namespace: String,
    /// Helm releases installed in it (values and manifest of each are collected).
    pub releases: Vec<String>,
}

impl Collect {
    /// Writes the bundle into `dir` (created; replaced if present) and returns
    /// `dir`. `reason` goes first in `README.txt`.
    ///
    /// # Example
    /// ```no_run
    /// # async fn f(client: kube::Client) {
    /// let c = certctl_harness::diagnostics::Collect { namespace: "ns".into(), releases: Vec::new() };
    /// c.write(&client, None, "/tmp/b".as_ref(), "why").await;
    /// # }
    /// ```
    pub async fn write(&self, client: &kube::Client, helm: Option<&Helm>, dir: &Path, reason: &str) -> PathBuf {
        let _ = std::fs::remove_dir_all(dir);
        let mut errors = Vec::new();
        let mut files = Vec::new();
        let mut put = |name: &str, body: &str, errors: &mut Vec<String>| {
            let path = dir.join(name);
            if let Some(parent) = path.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            match std::fs::write(&path, body) {
                Ok(()) => files.push(name.to_string()),
                Err(e) => errors.push(format!("write {name}: {e}")),
            }
        };
        let ns = &self.namespace;
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);

        match Api::<Event>::namespaced(client.clone(), ns).list(&ListParams::default()).await {
            Ok(list) => put("events.txt", &events_text(list.items), &mut errors),
            Err(e) => errors.push(format!("events: {e}")),
        }

        match pods.list(&ListParams::default()).await {
            Ok(list) => {
                let mut summary = String::new();
                for pod in &list.items {
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    let _ = writeln!(summary, "{}", pod_summary(pod));
                    put(&format!("pods/{name}.describe.txt"), &describe(pod), &mut errors);
                    put(&format!("pods/{name}.json"), &serde_json::to_string_pretty(pod).unwrap_or_default(), &mut errors);
                    for (container, restarts) in containers(pod) {
                        match logs_since(&pods, &name, &container, None, Instance::Current).await {
                            Ok(text) => put(&format!("logs/{name}.{container}.log"), &text, &mut errors),
                            Err(e) => errors.push(format!("logs {name}/{container}: {e}")),
                        }
                        if restarts > 0 {
                            match logs_since(&pods, &name, &container, None, Instance::Previous).await {
                                Ok(text) => put(&format!("logs/{name}.{container}.previous.log"), &text, &mut errors),
                                Err(e) => errors.push(format!("previous logs {name}/{container}: {e}")),
                            }
                        }
                    }
                }
                put("pods.txt", &summary, &mut errors);
            }
            Err(e) => errors.push(format!("pods: {e}")),
        }

        let mut workloads = String::new();
        dump::<Deployment>(client, ns, "deployments", &mut workloads, &mut errors).await;
        dump::<DaemonSet>(client, ns, "daemonsets", &mut workloads, &mut errors).await;
        dump::<StatefulSet>(client, ns, "statefulsets", &mut workloads, &mut errors).await;
        put("workloads.json", &workloads, &mut errors);
        let mut policy = String::new();
        dump::<PodDisruptionBudget>(client, ns, "poddisruptionbudgets", &mut policy, &mut errors).await;
        dump::<NetworkPolicy>(client, ns, "networkpolicies", &mut policy, &mut errors).await;
        put("policy.json", &policy, &mut errors);

        for (helm, release) in helm.iter().flat_map(|h| self.releases.iter().map(move |r| (*h, r))) {
            match helm.values(release, ns).await {
                Ok(v) => put(&format!("helm/{release}.values.json"), &serde_json::to_string_pretty(&v).unwrap_or_default(), &mut errors),
                Err(e) => errors.push(format!("helm values {release}: {e}")),
            }
            match helm.manifest(release, ns).await {
                Ok(m) => put(&format!("helm/{release}.manifest.yaml"), &m, &mut errors),
                Err(e) => errors.push(format!("helm manifest {release}: {e}")),
            }
        }
        if !errors.is_empty() {
            put("collection-errors.txt", &errors.join("\n"), &mut Vec::new());
        }
        let mut readme = format!("Failure bundle for namespace {ns}\n\nreason:\n{reason}\n\nfiles:\n");
        for f in &files {
            let _ = writeln!(readme, "  {f}");
        }
        let _ = std::fs::create_dir_all(dir);
        let _ = std::fs::write(dir.join("README.txt"), readme);
        dir.to_path_buf()
    }
}

/// Appends `kind` objects of `ns` as pretty JSON under a heading.
async fn dump<K>(client: &kube::Client, ns: &str, kind: &str, out: &mut String, errors: &mut Vec<String>)
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    match Api::<K>::namespaced(client.clone(), ns).list(&ListParams::default()).await {
        Ok(list) => {
            let _ = writeln!(out, "// {kind}: {}\n{}", list.items.len(), serde_json::to_string_pretty(&list.items).unwrap_or_default());
        }
        Err(e) => errors.push(format!("{kind}: {e}")),
    }
}

/// (container name, restart count) of every init and app container.
fn containers(pod: &Pod) -> Vec<(String, i32)> {
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let restarts = |name: &str| {
        status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(status.container_statuses.iter().flatten())
            .find(|c| c.name == name)
            .map_or(0, |c| c.restart_count)
    };
    spec.init_containers.iter().flatten().chain(spec.containers.iter()).map(|c| (c.name.clone(), restarts(&c.name))).collect()
}

/// Events oldest first, one line each.
///
/// # Example
/// ```
/// let e: k8s_openapi::api::core::v1::Event = serde_json::from_value(serde_json::json!({
///   "metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "p"},
///   "type": "Warning", "reason": "BackOff", "message": "Back-off restarting", "count": 3,
///   "lastTimestamp": "2026-01-01T00:00:00Z"})).unwrap();
/// let text = certctl_harness::diagnostics::events_text(vec![e]);
/// assert!(text.contains("Warning BackOff Pod/p: Back-off restarting (x3)"));
/// ```
pub fn events_text(mut events: Vec<Event>) -> String {
    let when = |e: &Event| {
        e.last_timestamp
            .as_ref()
            .map(|t| t.0)
            .or_else(|| e.event_time.as_ref().map(|t| t.0))
            .or_else(|| e.first_timestamp.as_ref().map(|t| t.0))
            .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
    };
    events.sort_by_key(|e| when(e));
    let mut out = String::new();
    for e in &events {
        let _ = writeln!(
            out,
            "{} {} {} {}/{}: {} (x{})",
            when(e).map_or("-".to_string(), |t| t.to_string()),
            e.type_.clone().unwrap_or_default(),
            e.reason.clone().unwrap_or_default(),
            e.involved_object.kind.clone().unwrap_or_default(),
            e.involved_object.name.clone().unwrap_or_default(),
            e.message.clone().unwrap_or_default().trim(),
            e.count.unwrap_or(1)
        );
    }
    out
}

/// A `kubectl describe pod`-like text: node, phase, conditions, and per
/// container image, state, last state, restarts and securityContext.
///
/// # Example
/// ```
/// let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
///   "metadata": {"name": "p", "namespace": "ns"},
///   "spec": {"nodeName": "n1", "securityContext": {"runAsNonRoot": true},
///            "containers": [{"name": "c", "image": "i", "securityContext": {"readOnlyRootFilesystem": true}}]},
///   "status": {"phase": "Running"}})).unwrap();
/// let d = certctl_harness::diagnostics::describe(&pod);
/// assert!(d.contains("Node: n1") && d.contains("readOnlyRootFilesystem") && d.contains("runAsNonRoot"));
/// ```
pub fn describe(pod: &Pod) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Name: {}\nNamespace: {}",
        pod.metadata.name.clone().unwrap_or_default(),
        pod.metadata.namespace.clone().unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "Node: {}\nPhase: {}\nLabels: {:?}",
        spec.node_name.clone().unwrap_or_default(),
        status.phase.clone().unwrap_or_default(),
        pod.metadata.labels.clone().unwrap_or_default()
    );
    let _ = writeln!(out, "Pod securityContext: {}", serde_json::to_string(&spec.security_context).unwrap_or_default());
    let _ = writeln!(out, "Conditions:");
    for c in status.conditions.iter().flatten() {
        let _ =
            writeln!(out, "  {}={} {} {}", c.type_, c.status, c.reason.clone().unwrap_or_default(), c.message.clone().unwrap_or_default());
    }
    let statuses: Vec<_> =
        status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten()).cloned().collect();
    for c in spec.init_containers.iter().flatten().chain(spec.containers.iter()) {
        let st = statuses.iter().find(|s| s.name == c.name);
        let _ = writeln!(out, "Container {}:\n  Image: {}", c.name, c.image.clone().unwrap_or_default());
        let _ = writeln!(out, "  securityContext: {}", serde_json::to_string(&c.security_context).unwrap_or_default());
        if let Some(st) = st {
            let _ = writeln!(out, "  Ready: {}  Restarts: {}", st.ready, st.restart_count);
            let _ = writeln!(out, "  State: {}", serde_json::to_string(&st.state).unwrap_or_default());
            let _ = writeln!(out, "  Last state: {}", serde_json::to_string(&st.last_state).unwrap_or_default());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_sort_oldest_first_whatever_timestamp_they_carry() {
        let ev = |name: &str, field: &str, t: &str| -> Event {
            serde_json::from_value(
                serde_json::json!({"metadata": {"name": name}, "involvedObject": {"kind": "Pod", "name": name}, field: t}),
            )
            .unwrap()
        };
        let text = events_text(vec![
            ev("late", "lastTimestamp", "2026-01-01T00:00:09Z"),
            ev("early", "eventTime", "2026-01-01T00:00:01.000000Z"),
            ev("mid", "firstTimestamp", "2026-01-01T00:00:05Z"),
        ]);
        let order: Vec<&str> = text.lines().map(|l| l.split("Pod/").nth(1).unwrap().split(':').next().unwrap()).collect();
        assert_eq!(order, ["early", "mid", "late"]);
    }

    #[test]
    fn previous_logs_are_only_asked_for_restarted_containers() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "init"}]},
            "status": {"containerStatuses": [{"name": "b", "restartCount": 2, "ready": false, "image": "", "imageID": ""}]}}))
        .unwrap();
        assert_eq!(containers(&pod), [("init".to_string(), 0), ("a".to_string(), 0), ("b".to_string(), 2)]);
    }
}
