//! Port-forward a pod (or a Service, through one of its Ready pods) to a
//! local port, one API stream per local connection, like `kubectl
//! port-forward` but owned by the test and closed on drop.

use std::net::SocketAddr;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::pods::is_ready;

/// Errors setting up a forward.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// Local listener failed.
    #[error("cannot listen on 127.0.0.1: {0}")]
    Listen(#[source] std::io::Error),
    /// The API failed.
    #[error("looking up {what}: {source}")]
    Api {
        /// What was looked up.
        what: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
    /// The Service cannot be mapped to a pod port.
    #[error("service {service}: {why}")]
    Service {
        /// The Service.
        service: String,
        /// What is missing.
        why: String,
    },
}

/// A running forward; stops when dropped.
///
/// # Example
/// ```no_run
/// # async fn f(client: kube::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use certctl_harness::portforward::PortForward;
/// let fwd = PortForward::to_service(&client, "ns", "c-certctl-server", 8443).await?;
/// println!("server at https://{}", fwd.local_addr());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PortForward {
    local: SocketAddr,
    target: String,
    task: JoinHandle<()>,
}

impl PortForward {
    /// Forwards a local port to `port` of `pod`.
    ///
    /// # Errors
    /// [`ForwardError::Listen`].
    ///
    /// # Example
    /// ```no_run
    /// # async fn f(client: kube::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let pods = kube::Api::namespaced(client, "ns");
    /// let fwd = certctl_harness::portforward::PortForward::to_pod(pods, "c-certctl-postgres-0", 5432).await?;
    /// # Ok(()) }
    /// ```
    pub async fn to_pod(pods: Api<Pod>, pod: &str, port: u16) -> Result<Self, ForwardError> {
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(ForwardError::Listen)?;
        let local = listener.local_addr().map_err(ForwardError::Listen)?;
        let pod_name = pod.to_string();
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let pods = pods.clone();
                let pod = pod_name.clone();
                tokio::spawn(async move {
                    let Ok(mut pf) = pods.portforward(&pod, &[port]).await else { return };
                    if let Some(mut upstream) = pf.take_stream(port) {
                        let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
                    }
                    drop(pf);
                });
            }
        });
        Ok(Self { local, target: format!("pod/{pod}:{port}"), task })
    }

    /// Forwards a local port to Service `service`'s `port`, through a Ready
    /// pod its selector picks (the port mapped through `targetPort`, numeric
    /// or named).
    ///
    /// # Errors
    /// [`ForwardError::Service`] when no Ready pod or no such port exists.
    ///
    /// # Example
    /// ```no_run
    /// # async fn f(client: kube::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let fwd = certctl_harness::portforward::PortForward::to_service(&client, "ns", "svc", 443).await?;
    /// # Ok(()) }
    /// ```
    pub async fn to_service(client: &kube::Client, namespace: &str, service: &str, port: u16) -> Result<Self, ForwardError> {
        let svcs: Api<Service> = Api::namespaced(client.clone(), namespace);
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let svc = svcs.get(service).await.map_err(|source| ForwardError::Api { what: format!("service {service}"), source })?;
        let bad = |why: String| ForwardError::Service { service: service.to_string(), why };
        let spec = svc.spec.unwrap_or_default();
        let selector = spec.selector.unwrap_or_default();
        if selector.is_empty() {
            return Err(bad("has no selector".into()));
        }
        let svc_port = spec
            .ports
            .unwrap_or_default()
            .into_iter()
            .find(|p| p.port == i32::from(port))
            .ok_or_else(|| bad(format!("has no port {port}")))?;
        let labels = selector.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
        let list = pods
            .list(&ListParams::default().labels(&labels))
            .await
            .map_err(|source| ForwardError::Api { what: format!("pods {labels}"), source })?;
        let pod = list.items.into_iter().find(is_ready).ok_or_else(|| bad(format!("no Ready pod matches {labels}")))?;
        let pod_port = match svc_port.target_port {
            None => port,
            Some(IntOrString::Int(p)) => u16::try_from(p).map_err(|_| bad(format!("targetPort {p} out of range")))?,
            Some(IntOrString::String(name)) => named_port(&pod, &name).ok_or_else(|| bad(format!("no container port named {name}")))?,
        };
        let name = pod.metadata.name.clone().unwrap_or_default();
        let mut fwd = Self::to_pod(pods, &name, pod_port).await?;
        fwd.target = format!("service/{service}:{port} via pod/{name}:{pod_port}");
        Ok(fwd)
    }

    /// The local address to connect to.
    ///
    /// # Example
    /// ```no_run
    /// # fn f(fwd: certctl_harness::portforward::PortForward) {
    /// let url = format!("https://{}/health", fwd.local_addr());
    /// # }
    /// ```
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// What it forwards to, e.g. `service/x:8443 via pod/y:8443`.
    ///
    /// # Example
    /// ```no_run
    /// # fn f(fwd: certctl_harness::portforward::PortForward) {
    /// println!("forwarding {}", fwd.target());
    /// # }
    /// ```
    pub fn target(&self) -> &str {
        &self.target
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn named_port(pod: &Pod, name: &str) -> Option<u16> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some(name))
        .and_then(|p| u16::try_from(p.container_port).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_ports_resolve() {
        let pod: Pod = serde_json::from_value(serde_json::json!({"spec": {"containers": [
            {"name": "server", "ports": [{"name": "https", "containerPort": 8443}]}]}}))
        .unwrap();
        assert_eq!(named_port(&pod, "https"), Some(8443));
        assert_eq!(named_port(&pod, "http"), None);
    }
}
