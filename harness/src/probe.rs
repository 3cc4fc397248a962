//! Probe pods: connect from a chosen namespace with chosen labels to a
//! host:port and get a verdict, polled until expected and then held for a
//! window (NetworkPolicy enforcement often lags pod start).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};

use crate::exec::{exec, ExecError};
use crate::wait::{Deadline, WaitError};

/// What a connection attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// TCP connection established.
    Connected,
    /// Actively refused (RST): reachable host, closed port.
    Refused,
    /// No answer in time: what a NetworkPolicy drop looks like.
    TimedOut,
    /// Anything else (DNS failure, ...), with the tool's words.
    Other(String),
}

impl Verdict {
    /// Blocked in the NetworkPolicy sense: refused or dropped.
    ///
    /// # Example
    /// ```
    /// assert!(certctl_harness::probe::Verdict::TimedOut.blocked());
    /// assert!(!certctl_harness::probe::Verdict::Connected.blocked());
    /// ```
    pub fn blocked(&self) -> bool {
        matches!(self, Self::Refused | Self::TimedOut)
    }
}

/// Which tool inside the probe image makes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeTool {
    /// The offline `netprobe` binary (`netprobe idle`, `netprobe connect`).
    Netprobe,
    /// bash's `/dev/tcp` under coreutils `timeout` (any Debian-based image).
    Bash,
}

/// Errors running probes.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Creating or deleting the pod failed.
    #[error("probe pod {name}: {source}")]
    Api {
        /// Pod name.
        name: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
    /// The pod never became ready.
    #[error(transparent)]
    Wait(#[from] WaitError),
    /// exec failed.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// The verdict changed during the hold window, or never came.
    #[error("probe {from} -> {to}: {detail}")]
    Unexpected {
        /// Source pod.
        from: String,
        /// Target.
        to: String,
        /// What happened.
        detail: String,
    },
}

/// A running probe pod.
///
/// # Example
/// ```no_run
/// # async fn f(client: kube::Client) -> Result<(), certctl_harness::probe::ProbeError> {
/// use certctl_harness::probe::{ProbePod, ProbeTool, Verdict};
/// use std::time::Duration;
/// let p = ProbePod::start(client, "other-ns", "stranger", &[("app", "stranger")], "certctl/netprobe:x", ProbeTool::Netprobe).await?;
/// p.expect("c-certctl-server.ns.svc:8443", Verdict::TimedOut, Duration::from_secs(60), Duration::from_secs(10)).await?;
/// p.delete().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ProbePod {
    pods: Api<Pod>,
    name: String,
    container: String,
    namespace: String,
    tool: ProbeTool,
    /// Created by [`ProbePod::start`] (deleted by [`ProbePod::delete`]), or
    /// a workload's pod borrowed by [`ProbePod::existing`] (never deleted).
    owned: bool,
}

impl ProbePod {
    /// Creates a probe pod with `labels` in `namespace` and waits until it runs.
    ///
    /// # Errors
    /// [`ProbeError::Api`] or a [`WaitError`] with the pod's last state.
    ///
    /// # Example
    /// ```no_run
    /// # async fn f(client: kube::Client) -> Result<(), certctl_harness::probe::ProbeError> {
    /// let p = certctl_harness::probe::ProbePod::start(client, "ns", "as-agent",
    ///     &[("app.kubernetes.io/component", "agent")], "certctl/agent:x", certctl_harness::probe::ProbeTool::Bash).await?;
    /// # Ok(()) }
    /// ```
    pub async fn start(
        client: kube::Client,
        namespace: &str,
        name: &str,
        labels: &[(&str, &str)],
        image: &str,
        tool: ProbeTool,
    ) -> Result<Self, ProbeError> {
        let pods: Api<Pod> = Api::namespaced(client, namespace);
        let labels: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let command = match tool {
            ProbeTool::Netprobe => serde_json::json!(["netprobe", "idle"]),
            ProbeTool::Bash => serde_json::json!(["sleep", "infinity"]),
        };
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "terminationGracePeriodSeconds": 0,
                "automountServiceAccountToken": false,
                // Pod Security "restricted": scenario namespaces enforce it.
                "securityContext": {"runAsNonRoot": true, "runAsUser": 65534, "runAsGroup": 65534, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "probe", "image": image, "imagePullPolicy": "IfNotPresent", "command": command,
                    "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}}
                }]
            }
        }))
        .expect("static pod shape");
        let api_err = |source| ProbeError::Api { name: name.to_string(), source };
        pods.create(&PostParams::default(), &pod).await.map_err(api_err)?;
        crate::pods::wait_pods_ready(&pods, &selector_of(&labels).to_string(), 1, Deadline::secs(120)).await?;
        Ok(Self { pods, name: name.to_string(), container: "probe".into(), namespace: namespace.to_string(), tool, owned: true })
    }

    /// Probes from a pod that already runs (a workload's own pod, so the
    /// check travels the path the workload uses); `container` must have the
    /// tool (`bash` and `timeout` for [`ProbeTool::Bash`]).
    ///
    /// # Example
    /// ```no_run
    /// # async fn f(client: kube::Client) -> Result<(), certctl_harness::probe::ProbeError> {
    /// use certctl_harness::probe::{ProbePod, ProbeTool, Verdict};
    /// let agent = ProbePod::existing(kube::Api::namespaced(client, "ns"), "c-certctl-agent-x", "agent", ProbeTool::Bash);
    /// agent.expect("c-certctl-server.ns.svc:8443", Verdict::Connected, std::time::Duration::from_secs(30), std::time::Duration::from_secs(5)).await?;
    /// # Ok(()) }
    /// ```
    pub fn existing(pods: Api<Pod>, pod: &str, container: &str, tool: ProbeTool) -> Self {
        let namespace = pods.namespace().unwrap_or_default().to_string();
        Self { pods, name: pod.to_string(), container: container.to_string(), namespace, tool, owned: false }
    }

    /// One connection attempt to `target` (`host:port`).
    ///
    /// # Errors
    /// [`ExecError`] when the tool cannot run.
    ///
    /// # Example
    /// ```no_run
    /// # async fn f(p: certctl_harness::probe::ProbePod) -> Result<(), certctl_harness::probe::ProbeError> {
    /// let v = p.connect("kubernetes.default.svc:443", std::time::Duration::from_secs(3)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(&self, target: &str, timeout: Duration) -> Result<Verdict, ExecError> {
        let secs = timeout.as_secs().max(1).to_string();
        let out = match self.tool {
            ProbeTool::Netprobe => {
                exec(&self.pods, &self.name, &self.container, &["netprobe", "connect", target, &format!("{secs}s")]).await?
            }
            ProbeTool::Bash => {
                let (host, port) = target.rsplit_once(':').unwrap_or((target, "80"));
                let script = format!("exec 3<>/dev/tcp/{host}/{port}");
                exec(&self.pods, &self.name, &self.container, &["timeout", &secs, "bash", "-c", &script]).await?
            }
        };
        Ok(classify(self.tool, out.code, &format!("{}{}", out.stdout, out.stderr)))
    }

    /// Polls until the verdict is `want` (within `within`), then keeps
    /// probing for `hold` and fails if it changes — so a late-applied
    /// policy or a flapping one cannot pass by luck.
    ///
    /// # Errors
    /// [`ProbeError::Unexpected`] with the last verdict seen.
    ///
    /// # Example
    /// ```no_run
    /// # async fn f(p: certctl_harness::probe::ProbePod) -> Result<(), certctl_harness::probe::ProbeError> {
    /// use std::time::Duration;
    /// p.expect("svc:8443", certctl_harness::probe::Verdict::Connected, Duration::from_secs(30), Duration::from_secs(5)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn expect(&self, target: &str, want: Verdict, within: Duration, hold: Duration) -> Result<(), ProbeError> {
        let attempt = Duration::from_secs(3);
        let unexpected =
            |detail: String| ProbeError::Unexpected { from: format!("{}/{}", self.namespace, self.name), to: target.to_string(), detail };
        let matches = |v: &Verdict| if want.blocked() { v.blocked() } else { *v == want };
        let start = Instant::now();
        let mut last;
        loop {
            last = self.connect(target, attempt).await?;
            if matches(&last) {
                break;
            }
            if start.elapsed() >= within {
                return Err(unexpected(format!("wanted {want:?} within {within:?}; last saw {last:?}")));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let held = Instant::now();
        while held.elapsed() < hold {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let v = self.connect(target, attempt).await?;
            if !matches(&v) {
                return Err(unexpected(format!("got {last:?} but it changed to {v:?} after {:?} of a {hold:?} hold", held.elapsed())));
            }
            last = v;
        }
        Ok(())
    }

    /// Deletes the pod (a borrowed one is left alone).
    ///
    /// # Errors
    /// [`ProbeError::Api`].
    ///
    /// # Example
    /// ```no_run
    /// # async fn f(p: certctl_harness::probe::ProbePod) -> Result<(), certctl_harness::probe::ProbeError> {
    /// p.delete().await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete(self) -> Result<(), ProbeError> {
        if !self.owned {
            return Ok(());
        }
        self.pods
            .delete(&self.name, &DeleteParams::default())
            .await
            .map(|_| ())
            .map_err(|source| ProbeError::Api { name: self.name.clone(), source })
    }
}

fn selector_of(labels: &BTreeMap<String, String>) -> String {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// Maps a tool's exit code and words to a verdict.
fn classify(tool: ProbeTool, code: i32, text: &str) -> Verdict {
    let lower = text.to_ascii_lowercase();
    if code == 0 || (tool == ProbeTool::Netprobe && lower.contains("connected to")) {
        Verdict::Connected
    } else if lower.contains("refused") {
        Verdict::Refused
    } else if code == 124 || lower.contains("timeout") || lower.contains("timed out") {
        Verdict::TimedOut
    } else {
        Verdict::Other(text.trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        assert_eq!(classify(ProbeTool::Netprobe, 0, "reached x"), Verdict::Connected);
        assert_eq!(classify(ProbeTool::Netprobe, 1, "connected to x:1 but read failed: EOF"), Verdict::Connected);
        assert_eq!(classify(ProbeTool::Netprobe, 1, "dial tcp 10.0.0.1:8443: i/o timeout"), Verdict::TimedOut);
        assert_eq!(classify(ProbeTool::Bash, 1, "bash: connect: Connection refused"), Verdict::Refused);
        assert_eq!(classify(ProbeTool::Bash, 124, ""), Verdict::TimedOut);
        assert!(matches!(classify(ProbeTool::Bash, 1, "bash: x: Name or service not known"), Verdict::Other(_)));
    }
}
