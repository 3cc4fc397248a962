//! cert-manager issues the server certificate from a CA ClusterIssuer: the
//! chart's Certificate becomes Ready, its Secret carries `ca.crt`, the server
//! serves exactly that certificate (verified against that CA for the Service
//! name), and a re-issue reaches the running server without a restart — with
//! the server's, the agents' and PostgreSQL's NetworkPolicies on, each
//! admitting what its pod needs and nothing more.

use std::net::SocketAddr;
use std::time::Duration;

use certctl_harness::command;
use certctl_harness::conditions::{await_condition, status_condition};
use certctl_harness::ensure;
use certctl_harness::env::TestEnv;
use certctl_harness::names::Component;
use certctl_harness::portforward::PortForward;
use certctl_harness::probe::{ProbePod, ProbeTool, Verdict};
use certctl_harness::scenario::{Flow, Scenario, StepResult};
use certctl_harness::wait::{wait_until, Classify, Deadline, Poll, PollError};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind};

use crate::ha::probe_image;
use crate::support::checks::ready_via_service;
use crate::support::data::Ledger;
use crate::support::http::tls_config;
use crate::support::kubectl::kubectl;
use crate::support::live::Live;

pub async fn promises(s: &Scenario, live: &Live<'_>) -> Flow {
    let certificate = live.names.server_certificate();
    s.check("the chart's Certificate is Ready", async {
        await_condition(&certificates(live), &certificate, &status_condition("Ready"), Deadline::secs(120)).await?;
        Ok(())
    })
    .await;
    let issued = s.require("the Secret holds a leaf for the Service that verifies against its ca.crt", issued_pair(live)).await?;
    s.check("the server serves that certificate (TLS 1.3, verified for the Service name)", serves(live, &issued, Deadline::secs(30))).await;
    let ledger = s.require("certificates issued to the agents through the API", Ledger::write(live, 3)).await?;
    s.check(
        "networkPolicy on for the server, the agents and PostgreSQL: each reaches what it needs and nothing more",
        policies_admit_only_what_each_needs(s, live),
    )
    .await;
    s.check("a re-issued certificate is served without a restart, through the policies", reissue_reaches_server(live, &issued)).await;
    s.check("every row intact after the policies and the re-issue", async { ledger.intact(live).await.map(drop) }).await;
    Ok(())
}

/// `helm upgrade` turning on all three policies. cert-manager talks only to
/// the Kubernetes API (its Secret reaches the server through the kubelet),
/// so the server needs DNS and its database, the agents DNS and the server.
/// Every probe opens a new connection from the pod itself, after a positive
/// control from the same pod: a verdict counts only once the policy is in
/// force there.
async fn policies_admit_only_what_each_needs(s: &Scenario, live: &Live<'_>) -> StepResult {
    let on = live.release.clone().set(serde_json::json!({"networkPolicy": {
        "enabled": true, "agent": {"enabled": true}, "postgresql": {"enabled": true}
    }}));
    s.helm.upgrade(&on).await?;
    live.rolled_out().await?;
    let (within, hold) = (Duration::from_secs(60), Duration::from_secs(10));
    let (server, database, api) = (live.names.server_address(), live.names.postgres_address(), "kubernetes.default.svc:443");

    let agent = ProbePod::existing(live.pods(), &live.one_ready(Component::Agent).await?, "agent", ProbeTool::Bash);
    agent.expect(&server, Verdict::Connected, within, Duration::ZERO).await?;
    agent.expect(&database, Verdict::TimedOut, within, hold).await?;
    agent.expect(api, Verdict::TimedOut, within, hold).await?;

    let from_server = ProbePod::existing(live.pods(), &live.one_ready(Component::Server).await?, "server", ProbeTool::Bash);
    from_server.expect(&database, Verdict::Connected, within, Duration::ZERO).await?;
    from_server.expect(api, Verdict::TimedOut, within, hold).await?;

    // The database's own policy: a pod of the namespace that is not a server is dropped.
    let (image, tool) = probe_image(s);
    let stranger = s.probe_pod(&live.names.namespace, "e2e-stranger", &[("app", "e2e-stranger")], &image, tool).await?;
    stranger.expect(&database, Verdict::TimedOut, within, hold).await?;
    Ok(())
}

/// cert-manager and the scenario's CA issuer, once per cluster (a cluster
/// add-on, not a scenario's resource): offline our controller build (CRDs,
/// manifests), online the official chart.
pub async fn issuer_ready(env: &TestEnv) -> StepResult {
    match &env.images.cert_manager {
        Some(offline) => {
            let (crds, manifests) = (offline.crds.display().to_string(), offline.manifests.display().to_string());
            kubectl(env, &["apply", "--server-side", "--force-conflicts", "-f", &crds]).await?;
            kubectl(
                env,
                &[
                    "wait",
                    "--for=condition=Established",
                    "--timeout=60s",
                    "crd/certificates.cert-manager.io",
                    "crd/certificaterequests.cert-manager.io",
                    "crd/issuers.cert-manager.io",
                    "crd/clusterissuers.cert-manager.io",
                ],
            )
            .await?;
            kubectl(env, &["apply", "--server-side", "--force-conflicts", "-f", &manifests]).await?;
            kubectl(env, &["-n", "cert-manager", "rollout", "status", "deploy/cert-manager-controller", "--timeout=180s"]).await?;
        }
        None => {
            // Online: the official chart at the pinned version (webhook and cainjector included).
            let version = certctl_harness::tools::PinnedVersions::load()?.get("CERT_MANAGER_VERSION")?.to_string();
            let mut helm = tokio::process::Command::new(&env.tools.helm.path);
            helm.arg("--kubeconfig")
                .arg(&env.cluster.kubeconfig)
                .args(["upgrade", "--install", "cert-manager", "oci://quay.io/jetstack/charts/cert-manager", "--version", &version])
                .args(["--namespace", "cert-manager", "--create-namespace", "--set", "crds.enabled=true", "--wait", "--timeout=300s"]);
            command::run_async(&mut helm).await?;
        }
    }
    let issuers = env.workspace.join("ci/offline/cert-manager/examples/scenario-ca.yaml").display().to_string();
    kubectl(env, &["apply", "-f", &issuers]).await?;
    kubectl(env, &["-n", "cert-manager", "wait", "--for=condition=Ready", "--timeout=120s", "certificate/scenario-ca"]).await?;
    kubectl(env, &["wait", "--for=condition=Ready", "--timeout=60s", "clusterissuer/scenario-ca"]).await?;
    Ok(())
}

fn certificates(live: &Live<'_>) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("cert-manager.io", "v1", "Certificate");
    Api::namespaced_with(live.s.client.clone(), &live.names.namespace, &ApiResource::from_gvk(&gvk))
}

/// The certificate material a Secret holds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Issued {
    leaf_pem: String,
    ca_pem: String,
}

/// `spec.secretName` of the chart's Certificate.
async fn certificate_secret(live: &Live<'_>) -> StepResult<String> {
    let cert = certificates(live).get(&live.names.server_certificate()).await?;
    Ok(cert.data["spec"]["secretName"].as_str().ok_or("Certificate without spec.secretName")?.to_string())
}

fn secrets(live: &Live<'_>) -> Api<Secret> {
    Api::namespaced(live.s.client.clone(), &live.names.namespace)
}

/// Reads the server TLS Secret, checks the leaf names the Service and
/// verifies against the Secret's own ca.crt.
async fn issued_pair(live: &Live<'_>) -> StepResult<Issued> {
    let secret = secrets(live).get(&certificate_secret(live).await?).await?;
    let data = secret.data.unwrap_or_default();
    let field = |k: &str| {
        data.get(k).map(|b| String::from_utf8_lossy(&b.0).into_owned()).ok_or_else(|| format!("the server TLS Secret has no {k}"))
    };
    let (leaf_pem, ca_pem) = (field("tls.crt")?, field("ca.crt")?);
    field("tls.key")?;
    let (_, ca) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).map_err(|e| format!("ca.crt is not PEM: {e}"))?;
    let ca = ca.parse_x509().map_err(|e| format!("ca.crt: {e}"))?;
    let (_, leaf) = x509_parser::pem::parse_x509_pem(leaf_pem.as_bytes()).map_err(|e| format!("tls.crt is not PEM: {e}"))?;
    let leaf = leaf.parse_x509().map_err(|e| format!("tls.crt: {e}"))?;
    leaf.verify_signature(Some(ca.public_key())).map_err(|e| format!("tls.crt does not verify against ca.crt: {e}"))?;
    let host = live.names.server_host();
    let sans: Vec<String> = leaf
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| if let x509_parser::extensions::GeneralName::DNSName(d) = n { Some(d.to_string()) } else { None })
                .collect()
        })
        .unwrap_or_default();
    ensure!(sans.contains(&host), "tls.crt SANs {sans:?} lack {host}");
    Ok(Issued { leaf_pem, ca_pem })
}

/// Until `deadline`, handshakes through a port-forward to the Service
/// (trusting only the issued CA, for the Service name) until the served leaf
/// is `want`'s; then checks /ready.
async fn serves(live: &Live<'_>, want: &Issued, deadline: Deadline) -> StepResult {
    let fwd = PortForward::to_service(&live.s.client, &live.names.namespace, &live.names.server(), 8443).await?;
    let host = live.names.server_host();
    let want_der = pem_der(&want.leaf_pem)?;
    wait_until(&format!("{host} to serve the issued certificate"), deadline.every_millis(2000), || async {
        // A handshake that fails verification is the old certificate still being served.
        let served = served_leaf(&host, fwd.local_addr(), &want.ca_pem).await.transient()?;
        Ok::<_, PollError>(if served == want_der { Poll::Ready(()) } else { Poll::Pending("a different certificate is served".into()) })
    })
    .await?;
    let server = live.server().await?;
    ready_via_service(&server).await
}

fn pem_der(pem: &str) -> StepResult<Vec<u8>> {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| format!("not PEM: {e}"))?;
    Ok(parsed.contents)
}

/// The leaf the server presents, after verifying it against `ca` for `host`.
async fn served_leaf(host: &str, addr: SocketAddr, ca: &str) -> StepResult<Vec<u8>> {
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls_config(ca, &[&rustls::version::TLS13])?));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let stream = connector.connect(rustls_pki_types::ServerName::try_from(host.to_string())?, tcp).await?;
    let leaf = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).ok_or("no certificate presented")?;
    Ok(leaf.as_ref().to_vec())
}

fn names_and_restarts(pods: &[Pod]) -> (Vec<String>, i32) {
    let names = pods.iter().filter_map(|p| p.metadata.name.clone()).collect();
    let restarts = pods.iter().map(certctl_harness::pods::restarts).sum();
    (names, restarts)
}

/// Deletes the Secret; cert-manager re-issues (a new key and serial), the
/// kubelet updates the mounted files, and the running server pod — same
/// container, zero restarts — serves the new leaf.
async fn reissue_reaches_server(live: &Live<'_>, before: &Issued) -> StepResult {
    let (before_pods, _) = names_and_restarts(&live.pods_of(Component::Server).await?);
    let secret_name = certificate_secret(live).await?;
    let secrets = secrets(live);
    secrets.delete(&secret_name, &DeleteParams::default()).await?;
    let reissued = wait_until(&format!("cert-manager to re-issue {secret_name}"), Deadline::secs(120).every_millis(1000), || async {
        Ok::<_, kube::Error>(match secrets.get_opt(&secret_name).await? {
            Some(s) => {
                let leaf =
                    s.data.as_ref().and_then(|d| d.get("tls.crt")).map(|b| String::from_utf8_lossy(&b.0).into_owned()).unwrap_or_default();
                if !leaf.is_empty() && leaf != before.leaf_pem {
                    Poll::Ready(leaf)
                } else {
                    Poll::Pending("Secret recreated without a new tls.crt yet".into())
                }
            }
            None => Poll::Pending("Secret not recreated yet".into()),
        })
    })
    .await?;
    let after = Issued { leaf_pem: reissued, ca_pem: before.ca_pem.clone() };
    // The kubelet refreshes Secret volumes on its sync period (about a minute), then the server's poll.
    serves(live, &after, Deadline::secs(180)).await?;
    let (after_pods, restarts) = names_and_restarts(&live.pods_of(Component::Server).await?);
    ensure!(
        after_pods == before_pods,
        "server pods changed from {before_pods:?} to {after_pods:?}: the new certificate came with a restart"
    );
    ensure!(restarts == 0, "server containers restarted {restarts} time(s) to pick up the certificate");
    Ok(())
}
