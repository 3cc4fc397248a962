//! The names and selectors the chart gives one release's objects, in one
//! typed place, so no test spells `format!("{release}-certctl-server")`.
//! Mirrors `certctl.fullname` and `certctl.selectorLabels` in
//! `chart/templates/_helpers.tpl`; the render tier checks the two agree.

use std::fmt;

/// The chart's name, the suffix of every object's name.
pub const CHART: &str = "certctl";

/// A component of the chart, as its `app.kubernetes.io/component` label says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Component {
    /// The API server Deployment.
    Server,
    /// The agent DaemonSet.
    Agent,
    /// The bundled PostgreSQL StatefulSet.
    Postgres,
}

impl Component {
    /// The label value.
    ///
    /// # Example
    /// ```
    /// assert_eq!(certctl_harness::names::Component::Postgres.label(), "postgresql");
    /// ```
    pub fn label(self) -> &'static str {
        match self {
            Component::Server => "server",
            Component::Agent => "agent",
            Component::Postgres => "postgresql",
        }
    }

    /// The container that runs the component's process.
    ///
    /// # Example
    /// ```
    /// assert_eq!(certctl_harness::names::Component::Postgres.container(), "postgres");
    /// ```
    pub fn container(self) -> &'static str {
        match self {
            Component::Server => "server",
            Component::Agent => "agent",
            Component::Postgres => "postgres",
        }
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// One release's object names.
///
/// # Example
/// ```
/// use certctl_harness::names::{Component, ReleaseNames};
/// let n = ReleaseNames::new("c", "e2e-default");
/// assert_eq!(n.server(), "c-certctl-server");
/// assert_eq!(n.postgres_pod(0), "c-certctl-postgres-0");
/// assert_eq!(n.server_host(), "c-certctl-server.e2e-default.svc");
/// assert_eq!(n.selector(Component::Agent), "app.kubernetes.io/name=certctl,app.kubernetes.io/instance=c,app.kubernetes.io/component=agent");
/// // A release whose name holds the chart's name is the full name itself.
/// assert_eq!(ReleaseNames::new("my-certctl", "ns").server(), "my-certctl-server");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseNames {
    /// The helm release.
    pub release: String,
    /// Its namespace.
    pub namespace: String,
    fullname: String,
}

impl ReleaseNames {
    /// Names of release `release` in `namespace` (no `fullnameOverride`).
    pub fn new(release: &str, namespace: &str) -> Self {
        let mut fullname = if release.contains(CHART) { release.to_string() } else { format!("{release}-{CHART}") };
        fullname.truncate(63);
        let fullname = fullname.trim_end_matches('-').to_string();
        Self { release: release.into(), namespace: namespace.into(), fullname }
    }

    /// The chart's full name, the prefix of every object.
    pub fn fullname(&self) -> &str {
        &self.fullname
    }

    /// Server Deployment, Service, ConfigMap, PodDisruptionBudget, ServiceMonitor, NetworkPolicy.
    pub fn server(&self) -> String {
        format!("{}-server", self.fullname)
    }

    /// Agent DaemonSet and ConfigMap.
    pub fn agent(&self) -> String {
        format!("{}-agent", self.fullname)
    }

    /// Bundled PostgreSQL StatefulSet and Service.
    pub fn postgres(&self) -> String {
        format!("{}-postgres", self.fullname)
    }

    /// Pod `ordinal` of the bundled PostgreSQL StatefulSet.
    pub fn postgres_pod(&self, ordinal: u32) -> String {
        format!("{}-{ordinal}", self.postgres())
    }

    /// The data volume claim of PostgreSQL pod `ordinal` (`data` is the claim template).
    ///
    /// # Example
    /// ```
    /// assert_eq!(certctl_harness::names::ReleaseNames::new("c", "n").postgres_claim(0), "data-c-certctl-postgres-0");
    /// ```
    pub fn postgres_claim(&self, ordinal: u32) -> String {
        format!("data-{}", self.postgres_pod(ordinal))
    }

    /// The cert-manager Certificate (and its Secret) of the server.
    pub fn server_certificate(&self) -> String {
        format!("{}-tls", self.server())
    }

    /// The server Service's in-cluster host name (what its certificate names).
    pub fn server_host(&self) -> String {
        format!("{}.{}.svc", self.server(), self.namespace)
    }

    /// `host:port` of the server Service's HTTPS port.
    pub fn server_address(&self) -> String {
        format!("{}:8443", self.server_host())
    }

    /// `host:port` of the bundled PostgreSQL Service.
    pub fn postgres_address(&self) -> String {
        format!("{}.{}.svc:5432", self.postgres(), self.namespace)
    }

    /// The label selector of one component's pods.
    pub fn selector(&self, component: Component) -> String {
        format!(
            "app.kubernetes.io/name={CHART},app.kubernetes.io/instance={},app.kubernetes.io/component={}",
            self.release,
            component.label()
        )
    }

    /// The labels of one component's pods (what an impostor copies).
    pub fn labels(&self, component: Component) -> [(&'static str, String); 3] {
        [
            ("app.kubernetes.io/name", CHART.to_string()),
            ("app.kubernetes.io/instance", self.release.clone()),
            ("app.kubernetes.io/component", component.label().to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_cut_like_helm_does() {
        let n = ReleaseNames::new(&"r".repeat(70), "ns");
        assert_eq!(n.fullname().len(), 63);
    }
}
