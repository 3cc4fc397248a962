//! Waiting for workloads: rollouts of Deployments, DaemonSets and
//! StatefulSets, pods Ready, objects deleted — each with a timeout that says
//! what it last saw.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::Resource;

use crate::wait::{wait_until, Deadline, Poll, WaitError};

/// One line per pod: phase, Ready, and each container's state and restarts.
///
/// # Example
/// ```
/// let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
///   "metadata": {"name": "p"},
///   "status": {"phase": "Running", "containerStatuses": [{"name": "c", "ready": false, "restartCount": 2,
///      "image": "i", "imageID": "", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}})).unwrap();
/// assert_eq!(certctl_harness::pods::pod_summary(&pod), "p: Running ready=false [c: waiting CrashLoopBackOff, restarts 2]");
/// ```
pub fn pod_summary(pod: &Pod) -> String {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let containers: Vec<String> = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .map(|c| {
            let state = c.state.clone().unwrap_or_default();
            let s = if let Some(w) = state.waiting {
                format!("waiting {}", w.reason.unwrap_or_default())
            } else if let Some(t) = state.terminated {
                format!("terminated {} (exit {})", t.reason.unwrap_or_default(), t.exit_code)
            } else if state.running.is_some() {
                "running".to_string()
            } else {
                "unknown".to_string()
            };
            format!("{}: {s}, restarts {}", c.name, c.restart_count)
        })
        .collect();
    format!("{name}: {} ready={} [{}]", status.phase.unwrap_or_default(), is_ready(pod), containers.join("; "))
}

/// Restarts of all the pod's containers together (0 for a pod without status).
///
/// # Example
/// ```
/// let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({"status": {"containerStatuses": [
///   {"name": "a", "ready": true, "restartCount": 2, "image": "i", "imageID": ""},
///   {"name": "b", "ready": true, "restartCount": 1, "image": "i", "imageID": ""}]}})).unwrap();
/// assert_eq!(certctl_harness::pods::restarts(&pod), 3);
/// ```
pub fn restarts(pod: &Pod) -> i32 {
    pod.status.iter().flat_map(|s| s.container_statuses.iter().flatten()).map(|c| c.restart_count).sum()
}

/// Whether the pod's Ready condition is True.
///
/// # Example
/// ```
/// assert!(!certctl_harness::pods::is_ready(&Default::default()));
/// ```
pub fn is_ready(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits until at least `min` pods match `selector` and all of them are
/// Ready; returns them.
///
/// # Errors
/// [`WaitError`] whose `last_seen` lists every pod's state.
///
/// # Example
/// ```no_run
/// # async fn f(client: kube::Client) -> Result<(), certctl_harness::wait::WaitError> {
/// use certctl_harness::{pods::wait_pods_ready, wait::Deadline};
/// let pods = kube::Api::namespaced(client, "ns");
/// let ready = wait_pods_ready(&pods, "app.kubernetes.io/component=server", 1, Deadline::secs(180)).await?;
/// # Ok(()) }
/// ```
pub async fn wait_pods_ready(pods: &Api<Pod>, selector: &str, min: usize, deadline: Deadline) -> Result<Vec<Pod>, WaitError> {
    let what = format!("{min}+ Ready pods matching {selector}");
    wait_until(&what, deadline, || async {
        let list = pods.list(&ListParams::default().labels(selector)).await?;
        let ready = list.items.len() >= min && list.items.iter().all(is_ready);
        Ok::<_, kube::Error>(if ready {
            Poll::Ready(list.items)
        } else if list.items.is_empty() {
            Poll::Pending("no pods match".into())
        } else {
            Poll::Pending(list.items.iter().map(pod_summary).collect::<Vec<_>>().join(" | "))
        })
    })
    .await
}

/// A workload whose rollout can be awaited.
pub trait Rollout: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug {
    /// `Some(description)` while rolling out, `None` when done.
    fn pending(&self) -> Option<String>;
}

impl Rollout for Deployment {
    fn pending(&self) -> Option<String> {
        let want = self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let gen = self.metadata.generation.unwrap_or(0);
        let st = self.status.clone().unwrap_or_default();
        let (updated, ready, avail) =
            (st.updated_replicas.unwrap_or(0), st.ready_replicas.unwrap_or(0), st.available_replicas.unwrap_or(0));
        let done = st.observed_generation.unwrap_or(0) >= gen
            && updated == want
            && ready == want
            && avail == want
            && st.replicas.unwrap_or(0) == want;
        (!done).then(|| format!("want {want}, updated {updated}, ready {ready}, available {avail}, total {}", st.replicas.unwrap_or(0)))
    }
}

impl Rollout for DaemonSet {
    fn pending(&self) -> Option<String> {
        let gen = self.metadata.generation.unwrap_or(0);
        let st = self.status.clone().unwrap_or_default();
        let want = st.desired_number_scheduled;
        let (updated, ready) = (st.updated_number_scheduled.unwrap_or(0), st.number_ready);
        let done = st.observed_generation.unwrap_or(0) >= gen && want > 0 && updated == want && ready == want;
        (!done).then(|| format!("desired {want}, updated {updated}, ready {ready}"))
    }
}

impl Rollout for StatefulSet {
    fn pending(&self) -> Option<String> {
        let want = self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let gen = self.metadata.generation.unwrap_or(0);
        let st = self.status.clone().unwrap_or_default();
        let ready = st.ready_replicas.unwrap_or(0);
        let done = st.observed_generation.unwrap_or(0) >= gen && ready == want && st.current_revision == st.update_revision;
        (!done).then(|| format!("want {want}, ready {ready}, revision {:?} -> {:?}", st.current_revision, st.update_revision))
    }
}

/// Waits for the rollout of the named workload. While waiting, the pods of
/// the namespace are part of what it "last saw".
///
/// # Errors
/// [`WaitError`] naming the workload, its counters and the pods' states.
///
/// # Example
/// ```no_run
/// # async fn f(client: kube::Client) -> Result<(), certctl_harness::wait::WaitError> {
/// use k8s_openapi::api::apps::v1::Deployment;
/// let deploys: kube::Api<Deployment> = kube::Api::namespaced(client.clone(), "ns");
/// let pods = kube::Api::namespaced(client, "ns");
/// certctl_harness::pods::wait_rollout(&deploys, &pods, "c-certctl-server", certctl_harness::wait::Deadline::secs(300)).await?;
/// # Ok(()) }
/// ```
pub async fn wait_rollout<K: Rollout>(api: &Api<K>, pods: &Api<Pod>, name: &str, deadline: Deadline) -> Result<K, WaitError> {
    let what = format!("rollout of {} {name}", K::kind(&()));
    wait_until(&what, deadline, || async {
        let Some(obj) = api.get_opt(name).await? else {
            return Ok::<_, kube::Error>(Poll::Pending(format!("{name} does not exist")));
        };
        Ok(match obj.pending() {
            None => Poll::Ready(obj),
            Some(state) => {
                let list = pods.list(&ListParams::default()).await?;
                let pods: Vec<String> = list.items.iter().map(pod_summary).collect();
                Poll::Pending(format!("{state}; pods: {}", pods.join(" | ")))
            }
        })
    })
    .await
}

/// Waits until the named object no longer exists.
///
/// # Errors
/// [`WaitError`] saying it still exists (and its deletion timestamp).
///
/// # Example
/// ```no_run
/// # async fn f(client: kube::Client) -> Result<(), certctl_harness::wait::WaitError> {
/// use k8s_openapi::api::core::v1::Namespace;
/// let nss: kube::Api<Namespace> = kube::Api::all(client);
/// certctl_harness::pods::wait_deleted(&nss, "old-scenario", certctl_harness::wait::Deadline::secs(120)).await?;
/// # Ok(()) }
/// ```
pub async fn wait_deleted<K>(api: &Api<K>, name: &str, deadline: Deadline) -> Result<(), WaitError>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let what = format!("{name} to be deleted");
    wait_until(&what, deadline, || async {
        Ok::<_, kube::Error>(match api.get_opt(name).await? {
            None => Poll::Ready(()),
            Some(o) => Poll::Pending(format!(
                "{name} still exists (deletionTimestamp {:?})",
                o.meta().deletion_timestamp.as_ref().map(|t| t.0.to_string())
            )),
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_rollout_needs_every_counter() {
        let mut d: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "d", "generation": 2},
            "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 1, "availableReplicas": 1}
        }))
        .unwrap();
        assert_eq!(d.pending().unwrap(), "want 2, updated 2, ready 1, available 1, total 2");
        d.status.as_mut().unwrap().ready_replicas = Some(2);
        d.status.as_mut().unwrap().available_replicas = Some(2);
        assert!(d.pending().is_none());
        d.metadata.generation = Some(3);
        assert!(d.pending().is_some(), "a newer spec not yet observed is still rolling out");
    }

    #[test]
    fn daemonset_with_nothing_scheduled_is_not_done() {
        let ds: DaemonSet = serde_json::from_value(serde_json::json!({"metadata": {"name": "a"},
            "status": {"desiredNumberScheduled": 0, "numberReady": 0, "currentNumberScheduled": 0, "numberMisscheduled": 0}}))
        .unwrap();
        assert!(ds.pending().is_some());
    }
}
