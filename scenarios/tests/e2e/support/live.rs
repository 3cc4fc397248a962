//! Installing a mode and the typed handle to what it installed: names,
//! selectors, pods, containers, the server's CA and a forwarded endpoint —
//! so a test says `live.rolled_out()` and never builds a name by hand.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use certctl_harness::conditions::{await_condition, crd_established};
use certctl_harness::ensure;
use certctl_harness::external_db::{kind_network, ExternalDbSpec, ExternalPostgres};
use certctl_harness::helm::{Helm, Installed, Release};
use certctl_harness::names::{Component, ReleaseNames};
use certctl_harness::pods::{is_ready, wait_pods_ready, wait_rollout};
use certctl_harness::portforward::PortForward;
use certctl_harness::scenario::{Scenario, StepResult};
use certctl_harness::sql::PsqlTarget;
use certctl_harness::tls::TlsMaterial;
use certctl_harness::wait::Deadline;
use certctl_scenarios::crd::CachedCrd;
use certctl_scenarios::modes::Mode;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};

use super::http::https_client;

/// The Secret the TLS-from-a-Secret modes name (`server.tls.existingSecret`).
pub const TLS_SECRET: &str = "scenario-server-tls";
/// The API key the mode files configure.
pub const API_KEY: &str = "scenario-api-key-0001";
/// A second key holding only agent permissions (proves metrics need metrics.read).
pub const AGENT_ONLY_KEY: &str = "e2e-agent-only-key-0001";
/// Where the agent keeps its key, certificate and identity.
pub const AGENT_KEY_DIR: &str = "/var/lib/certctl/keys";

/// What to install: a mode's values file, the run's images, and anything a
/// test adds on top.
#[derive(Debug, Clone)]
pub struct Install {
    mode: Mode,
    release: String,
    chart: Option<PathBuf>,
    values: Vec<serde_json::Value>,
    helm_args: Vec<String>,
    known_keys: Option<serde_json::Value>,
    helm: Option<Helm>,
}

impl Install {
    /// Mode `mode` as release `c` (one release per scenario namespace).
    pub fn mode(mode: Mode) -> Self {
        Self { mode, release: "c".into(), chart: None, values: Vec::new(), helm_args: Vec::new(), known_keys: None, helm: None }
    }

    /// Another release name.
    pub fn release(mut self, name: &str) -> Self {
        self.release = name.into();
        self
    }

    /// Another chart directory (a deliberately broken copy, an older release).
    pub fn chart(mut self, dir: PathBuf) -> Self {
        self.chart = Some(dir);
        self
    }

    /// Values on top of the mode file and the run's overrides.
    pub fn set(mut self, values: serde_json::Value) -> Self {
        self.values.push(values);
        self
    }

    /// An extra `helm install` argument.
    pub fn helm_arg(mut self, arg: &str) -> Self {
        self.helm_args.push(arg.into());
        self
    }

    /// Another helm than the run's (a release one major installs and another upgrades).
    pub fn with_helm(mut self, helm: Helm) -> Self {
        self.helm = Some(helm);
        self
    }

    /// Only the values keys an older chart knows (`known`: its values.yaml;
    /// see [`certctl_harness::previous_chart::prune`]).
    pub fn known_to(mut self, known: serde_json::Value) -> Self {
        self.known_keys = Some(known);
        self
    }

    /// Creates what the mode needs first (the server's TLS Secret, the
    /// external database, the ServiceMonitor CRD, cert-manager and its
    /// issuer), then `helm install`s it.
    ///
    /// # Errors
    /// Whatever setup or helm said.
    pub async fn run(self, s: &Scenario) -> StepResult<Live<'_>> {
        self.apply(s, false).await
    }

    /// The same values as [`Install::run`], applied with `helm upgrade` to a
    /// release of this mode that is installed already (the setup it needs
    /// is there: it is checked, not made again).
    ///
    /// # Errors
    /// External-DB mode (its database belongs to the install), or whatever helm said.
    pub async fn upgrade(self, s: &Scenario) -> StepResult<Live<'_>> {
        ensure!(
            self.mode != Mode::ExternalDb,
            "upgrade the external-DB release from its Live (release.set(..)): its database belongs to the install"
        );
        self.apply(s, true).await
    }

    async fn apply(self, s: &Scenario, upgrade: bool) -> StepResult<Live<'_>> {
        let names = s.release(&self.release);
        let env = s.env;
        let chart = self.chart.clone().unwrap_or_else(certctl_scenarios::modes::chart_dir);
        let mut release = Release::new(&self.release, &s.namespace, &chart).values_file(&self.mode.values_file()).set(run_overrides(s));
        if self.mode != Mode::ExternalDb {
            release = release.set(serde_json::json!({"postgresql": {"auth": {"password": database_password(s, &self.release)}}}));
        }
        let mut external = None;
        match self.mode {
            Mode::Default | Mode::Ha | Mode::ExternalDb => {
                let tls = TlsMaterial::self_signed(
                    "certctl e2e CA",
                    &TlsMaterial::service_names(&names.server(), &s.namespace).iter().map(String::as_str).collect::<Vec<_>>(),
                )?;
                // A reinstall finds the Secret an earlier install created: the operator's
                // Secret outlives `helm uninstall`, so it is kept as it is.
                match Api::<Secret>::namespaced(s.client.clone(), &s.namespace)
                    .create(&PostParams::default(), &tls.secret(TLS_SECRET))
                    .await
                {
                    Err(kube::Error::Api(e)) if e.code == 409 => {}
                    other => drop(other?),
                }
            }
            Mode::CertManager => {
                crate::cert_manager::issuer_ready(env).await?;
                // Short reload poll so a re-issue shows within the test's patience.
                release = release.set(serde_json::json!({"server": {"env": {"CERTCTL_SERVER_TLS_RELOAD_INTERVAL": "5s"}}}));
            }
        }
        if self.mode == Mode::Ha {
            install_crd(s, CachedCrd::ServiceMonitor).await?;
        }
        if self.mode == Mode::ExternalDb {
            let spec =
                ExternalDbSpec::new(&format!("{}-{}-db", env.cluster.name, s.namespace), &env.images.postgres.to_string(), &kind_network());
            let db = s.own(ExternalPostgres::start(spec).await?);
            release = release.set(serde_json::json!({"externalDatabase": {"url": db.url(&db.spec.password)}}));
            external = Some(db);
        }
        for v in self.values {
            release = release.set(v);
        }
        for a in &self.helm_args {
            release = release.arg(a);
        }
        if let Some(known) = &self.known_keys {
            release = known_values_only(release, known)?;
        }
        let helm = self.helm.as_ref().unwrap_or(&s.helm);
        let installed = if upgrade { helm.upgrade(&release).await? } else { helm.install(&release).await? };
        Ok(Live { s, mode: self.mode, names, release, installed, external })
    }
}

/// `release` with its values files and values merged into one value that
/// holds only the keys `known` has.
fn known_values_only(release: Release, known: &serde_json::Value) -> StepResult<Release> {
    let pruned = certctl_harness::previous_chart::prune(&merged_values(&release)?, known);
    Ok(Release { values_files: Vec::new(), values: pruned, ..release })
}

/// Everything `release` gives helm as one value: its values files in order,
/// then its values, merged as helm merges them.
///
/// # Errors
/// A values file that cannot be read or parsed.
pub fn merged_values(release: &Release) -> StepResult<serde_json::Value> {
    let mut all = serde_json::json!({});
    for file in &release.values_files {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        certctl_harness::helm::merge(&mut all, serde_yaml_ng::from_str(&text)?);
    }
    certctl_harness::helm::merge(&mut all, release.values.clone());
    Ok(all)
}

/// The bundled database's password of release `release` in scenario `s`:
/// one per release, so a server that reaches another release's database
/// (a reused Service address still routed to old endpoints, as seen under
/// load) is refused with 28P01 instead of using the wrong data.
pub fn database_password(s: &Scenario, release: &str) -> String {
    format!("pg-{}-{release}", s.namespace)
}

/// What every live install adds to a mode file: the images this run built
/// (or the upstream ones online), a small volume, and a second, agent-only
/// API key. Nothing about Pod Security: the chart's default ("restricted")
/// holds, on volumes the pod's fsGroup can write (see
/// `certctl_harness::storage`).
fn run_overrides(s: &Scenario) -> serde_json::Value {
    let images = &s.env.images;
    serde_json::json!({
        "server": {
            "image": images.server.values(),
            "env": {"CERTCTL_AUTH_SCOPED_KEYS": format!("{AGENT_ONLY_KEY}=agent.register,agent.heartbeat,agent.job.poll")},
        },
        "agent": {"image": images.agent.values()},
        "postgresql": {"image": images.postgres.values(), "storage": {"size": "1Gi"}},
    })
}

/// Creates (or updates) a CRD from the cache, registered with the scenario,
/// and waits until it is Established.
async fn install_crd(s: &Scenario, crd: CachedCrd) -> StepResult {
    let object: CustomResourceDefinition = serde_yaml_ng::from_str(&crd.read()?)?;
    let name = object.metadata.name.clone().unwrap_or_default();
    let crds: Api<CustomResourceDefinition> = Api::all(s.client.clone());
    s.crd(&name);
    crds.patch(&name, &PatchParams::apply("certctl-e2e").force(), &Patch::Apply(&object)).await?;
    await_condition(&crds, &name, &crd_established(), Deadline::secs(60)).await?;
    Ok(())
}

/// One installed release of a mode.
pub struct Live<'s> {
    /// The scenario it belongs to.
    pub s: &'s Scenario,
    /// The mode installed.
    pub mode: Mode,
    /// Its object names and selectors.
    pub names: ReleaseNames,
    /// The release as installed (upgrade from it with `.set(..)`).
    pub release: Release,
    /// What helm reported.
    pub installed: Installed,
    /// The external database (external-DB mode).
    pub external: Option<Arc<ExternalPostgres>>,
}

impl Live<'_> {
    /// The namespace's pods.
    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.s.client.clone(), &self.names.namespace)
    }

    /// Whether the release runs the bundled PostgreSQL.
    pub fn bundled_database(&self) -> bool {
        self.installed.values["postgresql"]["enabled"].as_bool().unwrap_or(true)
    }

    /// Server replicas the values ask for.
    pub fn server_replicas(&self) -> usize {
        self.installed.values["server"]["replicas"].as_u64().unwrap_or(1) as usize
    }

    /// The agent workload's kind (`agent.kind`), or `None` with agents off.
    pub fn agent_kind(&self) -> Option<&str> {
        let agent = &self.installed.values["agent"];
        agent["enabled"].as_bool().unwrap_or(true).then(|| agent["kind"].as_str().unwrap_or("DaemonSet"))
    }

    /// Waits for the postgres StatefulSet (when bundled), the server
    /// Deployment and the agent workload (of its kind) to roll out, and for
    /// every server replica to be Ready.
    ///
    /// # Errors
    /// A wait error naming the workload and what its pods last showed.
    pub async fn rolled_out(&self) -> StepResult {
        let (client, ns, pods) = (&self.s.client, &self.names.namespace, self.pods());
        let rollout = Deadline::secs(300);
        if self.bundled_database() {
            wait_rollout(&Api::<StatefulSet>::namespaced(client.clone(), ns), &pods, &self.names.postgres(), rollout).await?;
        }
        wait_rollout(&Api::<Deployment>::namespaced(client.clone(), ns), &pods, &self.names.server(), rollout).await?;
        let agent = &self.names.agent();
        match self.agent_kind() {
            None => {}
            Some("StatefulSet") => drop(wait_rollout(&Api::<StatefulSet>::namespaced(client.clone(), ns), &pods, agent, rollout).await?),
            Some("Deployment") => drop(wait_rollout(&Api::<Deployment>::namespaced(client.clone(), ns), &pods, agent, rollout).await?),
            Some(_) => drop(wait_rollout(&Api::<DaemonSet>::namespaced(client.clone(), ns), &pods, agent, rollout).await?),
        }
        wait_pods_ready(&pods, &self.names.selector(Component::Server), self.server_replicas(), Deadline::secs(120)).await?;
        Ok(())
    }

    /// The release as it is, changed by `change` through `helm upgrade
    /// --reuse-values` (the chart README's way to change one value).
    pub fn reusing_values(&self, change: serde_json::Value) -> Release {
        Release::new(&self.names.release, &self.names.namespace, &self.release.chart).set(change).arg("--reuse-values")
    }

    /// `kubectl rollout restart` of the server Deployment: a new pod template
    /// annotation, so every replica is replaced by the Deployment's strategy.
    ///
    /// # Errors
    /// API errors.
    pub async fn restart_servers(&self) -> StepResult {
        let at = k8s_openapi::jiff::Timestamp::now().to_string();
        let patch = serde_json::json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": at}}}}});
        Api::<Deployment>::namespaced(self.s.client.clone(), &self.names.namespace)
            .patch(&self.names.server(), &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    /// Every pod of `component`, in any state.
    ///
    /// # Errors
    /// API errors.
    pub async fn pods_of(&self, component: Component) -> StepResult<Vec<Pod>> {
        Ok(self.pods().list(&ListParams::default().labels(&self.names.selector(component))).await?.items)
    }

    /// Names of the Ready pods of `component`.
    ///
    /// # Errors
    /// API errors.
    pub async fn ready(&self, component: Component) -> StepResult<Vec<String>> {
        Ok(self.pods_of(component).await?.into_iter().filter(is_ready).filter_map(|p| p.metadata.name).collect())
    }

    /// One Ready pod of `component`.
    ///
    /// # Errors
    /// None Ready.
    pub async fn one_ready(&self, component: Component) -> StepResult<String> {
        self.ready(component)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| format!("no Ready {component} pod of release {}", self.names.release).into())
    }

    /// Every container of the Ready pods of `components`, with the uid the
    /// values configure for it.
    ///
    /// # Errors
    /// API errors, or no Ready pod of a component.
    pub async fn containers(&self, components: &[Component]) -> StepResult<Vec<Container>> {
        let mut out = Vec::new();
        for &component in components {
            let values_key = match component {
                Component::Postgres => "postgresql",
                other => other.label(),
            };
            let uid = self.installed.values[values_key]["securityContext"]["runAsUser"].as_i64().unwrap_or(-1);
            let pods: Vec<Pod> = self.pods_of(component).await?.into_iter().filter(is_ready).collect();
            ensure!(!pods.is_empty(), "no Ready {component} pod of release {}", self.names.release);
            for pod in pods {
                let pod_name = pod.metadata.name.clone().unwrap_or_default();
                for c in pod.spec.map(|s| s.containers).unwrap_or_default() {
                    out.push(Container { pods: self.pods(), pod: pod_name.clone(), name: c.name, component, uid });
                }
            }
        }
        Ok(out)
    }

    /// The name of the Secret holding the server's TLS pair and `ca.crt`.
    pub fn tls_secret(&self) -> String {
        match self.mode {
            Mode::CertManager => self.names.server_certificate(),
            _ => TLS_SECRET.into(),
        }
    }

    /// The CA clients trust for the server (`ca.crt` of its TLS Secret).
    ///
    /// # Errors
    /// The Secret or its `ca.crt` is missing.
    pub async fn server_ca(&self) -> StepResult<String> {
        let name = self.tls_secret();
        let secret = Api::<Secret>::namespaced(self.s.client.clone(), &self.names.namespace).get(&name).await?;
        let ca = secret.data.and_then(|d| d.get("ca.crt").cloned()).ok_or_else(|| format!("Secret {name} has no ca.crt"))?;
        Ok(String::from_utf8(ca.0)?)
    }

    /// psql in the bundled PostgreSQL pod, over TCP with the pod's password.
    pub fn database(&self) -> PsqlTarget {
        PsqlTarget::new(&self.names.postgres_pod(0), "postgres", "certctl", "certctl")
    }

    /// Runs `sql` as the database superuser in the release's database —
    /// the bundled pod over its local socket (independent of the password
    /// the chart configures) or the external container — and returns psql's
    /// unaligned output, trimmed.
    ///
    /// # Errors
    /// psql's error.
    pub async fn sql(&self, sql: &str) -> StepResult<String> {
        Ok(match &self.external {
            Some(db) => db.psql("certctl", sql).await?,
            None => self.database().over_socket().scalar(&self.pods(), sql).await?,
        })
    }

    /// Starts `sql` in a psql session that keeps running (a lock holder) as
    /// `application_name`; terminate its backend by that name to end it.
    ///
    /// # Errors
    /// The external container's exec; a bundled session's failure is seen
    /// by the caller's wait for what it should do (the lock granted).
    pub async fn sql_background(&self, application_name: &str, sql: &str) -> StepResult {
        if let Some(db) = &self.external {
            return Ok(db.psql_background("certctl", application_name, sql).await?);
        }
        let (pods, pod) = (self.pods(), self.names.postgres_pod(0));
        let script = format!("PGAPPNAME={application_name} exec psql -U certctl -d certctl -X -v ON_ERROR_STOP=1 -c \"$1\"");
        let sql = sql.to_string();
        tokio::spawn(async move { certctl_harness::exec::exec(&pods, &pod, "postgres", &["sh", "-c", &script, "psql", &sql]).await });
        Ok(())
    }

    /// A port-forward to one server pod (not the Service) with a client for it.
    ///
    /// # Errors
    /// The forward, or the server's CA.
    pub async fn server_pod(&self, pod: &str) -> StepResult<Endpoint> {
        let fwd = PortForward::to_pod(self.pods(), pod, 8443).await?;
        Ok(Endpoint { host: self.names.server_host(), ca: self.server_ca().await?, fwd })
    }

    /// A port-forward to the server Service with a client for it.
    ///
    /// # Errors
    /// The forward, or the server's CA.
    pub async fn server(&self) -> StepResult<Endpoint> {
        let fwd = PortForward::to_service(&self.s.client, &self.names.namespace, &self.names.server(), 8443).await?;
        Ok(Endpoint { host: self.names.server_host(), ca: self.server_ca().await?, fwd })
    }
}

/// The server reached through a forwarded port, by its Service name.
pub struct Endpoint {
    /// The name the certificate carries (`<server>.<ns>.svc`).
    pub host: String,
    /// The CA that signed it.
    pub ca: String,
    fwd: PortForward,
}

impl Endpoint {
    /// The local address of the forward.
    pub fn addr(&self) -> SocketAddr {
        self.fwd.local_addr()
    }

    /// `https://<host>:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}:{}{path}", self.host, self.addr().port())
    }

    /// A TLS 1.3 client trusting only the server's CA, with a 10 s timeout.
    ///
    /// # Errors
    /// A CA that does not parse.
    pub fn client(&self) -> StepResult<reqwest::Client> {
        self.client_with_timeout(Duration::from_secs(10))
    }

    /// Same, with another request timeout.
    ///
    /// # Errors
    /// A CA that does not parse.
    pub fn client_with_timeout(&self, timeout: Duration) -> StepResult<reqwest::Client> {
        https_client(&self.host, self.addr(), &self.ca, timeout)
    }

    /// `POST /api/v1/certificates` with `body` and the scenario's API key:
    /// the status and the answer, which must be JSON whatever the status.
    ///
    /// # Errors
    /// Transport errors, or an answer that is not JSON.
    pub async fn create_certificate(&self, http: &reqwest::Client, body: &serde_json::Value) -> StepResult<(u16, serde_json::Value)> {
        let resp = http
            .post(self.url("/api/v1/certificates"))
            .bearer_auth(API_KEY)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let answer =
            serde_json::from_str(&text).map_err(|e| format!("POST /api/v1/certificates answered {status} non-JSON ({e}): {text}"))?;
        Ok((status, answer))
    }
}

/// One container of a Ready pod.
pub struct Container {
    pods: Api<Pod>,
    /// Its pod.
    pub pod: String,
    /// The container name.
    pub name: String,
    /// Whose it is.
    pub component: Component,
    /// The `runAsUser` the values configure (-1 when unset).
    pub uid: i64,
}

impl Container {
    /// The namespace's pods (for exec).
    pub fn pods(&self) -> &Api<Pod> {
        &self.pods
    }
}

impl fmt::Display for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.pod, self.name)
    }
}
