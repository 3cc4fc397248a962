//! The chart README's "Kubernetes Secrets target", live: a certificate that
//! names a Secret in a listed namespace lands there as a `kubernetes.io/tls`
//! Secret written by the agent that holds its key, verifies against the
//! server's CA for its names, and is replaced in place on renewal — a pod
//! mounting it sees the new file. Outside the listed namespace the API
//! refuses the target and RBAC refuses the agents; the agents cannot read
//! Secrets; the key is in no server log, database row or API answer. Turned
//! off, no Role, no token and no way to the Kubernetes API remain.

use std::time::{Duration, Instant};

use certctl_harness::ensure;
use certctl_harness::exec::exec;
use certctl_harness::logs::{logs_since, Instance};
use certctl_harness::names::Component;
use certctl_harness::probe::{ProbePod, ProbeTool, Verdict};
use certctl_harness::scenario::{Scenario, StepResult};
use certctl_harness::wait::{wait_until, Classify, Deadline, Poll, PollError};
use certctl_scenarios::modes::Mode;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ListParams, PostParams};
use serde_json::{json, Value};

use crate::support::data::{agent_ids, Ledger};
use crate::support::live::{Install, Live, API_KEY};

const SECRET: &str = "web-tls";
const LABEL_SERIAL: &str = "certctl.io/serial";
const LABEL_CERTIFICATE: &str = "certctl.io/certificate-id";

fn with_secrets(apps: &str) -> Install {
    Install::mode(Mode::Default).set(json!({
        "kubernetesSecrets": {"enabled": true, "namespaces": [apps]},
        "networkPolicy": {"enabled": true, "agent": {"enabled": true}},
        // Renewals are queued within seconds of a certificate nearing its end.
        "server": {"env": {"CERTCTL_SCHEDULER_RENEWAL_CHECK_INTERVAL": "5s"}},
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issued_certificates_land_as_tls_secrets_with_least_privilege() {
    Scenario::run("secret-target", async |s| {
        let apps = s.require("the target namespace", s.namespace("apps")).await?;
        let other = s.require("a namespace not listed", s.namespace("other")).await?;
        let live = s.require("install with kubernetesSecrets on for the target namespace", with_secrets(&apps).run(s)).await?;
        s.require("rollout", live.rolled_out()).await?;
        let ledger = s.require("certificates issued to each agent through the API", Ledger::write(&live, 1)).await?;
        let (agent, agent_id) = s.require("an agent to hold the key", first_agent(&live)).await?;

        s.check(
            &format!("a target in {other} is refused by the API, naming the allowed namespace"),
            refused_target(&live, &agent_id, &other, &apps),
        )
        .await;
        let cert = s.require(&format!("a certificate naming Secret {apps}/{SECRET}"), create_certificate(&live, &agent_id, &apps)).await?;
        let first = s
            .require(
                "the Secret appears: kubernetes.io/tls, the agent's key, verifying against the server's CA for the names",
                secret_written(&live, &apps, &cert, &agent, None),
            )
            .await?;
        s.check("the server shows the agent's report: written, that serial", reported_written(&live, &cert.id, &first.serial)).await;
        let mount = s.require("a pod mounting the Secret reads the certificate", mounting_pod(&live, &apps, &first)).await?;

        s.require("the certificate nears its end (its not_after moved to a minute from now)", near_expiry(&live, &cert.id)).await?;
        let renewed = s
            .require("renewal replaces the Secret in place with a new serial", secret_written(&live, &apps, &cert, &agent, Some(&first)))
            .await?;
        s.check("the server shows the renewal's report", reported_written(&live, &cert.id, &renewed.serial)).await;
        s.check("the mounting pod sees the renewed certificate", mounted_file_follows(&live, &apps, &mount, &renewed)).await;
        s.check("one Secret write per issue: exactly two for issue and renewal", writes_per_issue(&live, &agent, &cert.id)).await;

        s.check("the agents may create and patch Secrets only in the listed namespace, and read none", permissions(&live, &apps, &other))
            .await;
        s.check("the key is in no server log, database row or API answer", key_nowhere(&live, &cert.id, &renewed.key)).await;
        s.check("the agents reach the Kubernetes API (the positive control of the off case)", api_egress(&live, Verdict::Connected)).await;

        let off = live.reusing_values(json!({"kubernetesSecrets": {"enabled": false}}));
        s.require("helm upgrade --reuse-values with kubernetesSecrets.enabled=false", async { Ok(s.helm.upgrade(&off).await.map(drop)?) })
            .await?;
        s.require("rollout", live.rolled_out()).await?;
        s.check(&format!("off: no Role or RoleBinding left in {apps}"), no_rbac(&live, &apps)).await;
        s.check("off: no agent or server pod holds a ServiceAccount token", no_tokens(&live)).await;
        s.check("off: the agents' policy keeps them off the Kubernetes API", api_egress(&live, Verdict::TimedOut)).await;
        s.check("off: the written Secret stays for the workloads that mount it", async { secret(&live, &apps).await.map(drop) }).await;
        s.check("every row intact after the upgrade", async { ledger.intact(&live).await.map(drop) }).await;
        Ok(())
    })
    .await
    .unwrap();
}

async fn first_agent(live: &Live<'_>) -> StepResult<(String, String)> {
    agent_ids(live).await?.into_iter().next().ok_or_else(|| "no agent registered".into())
}

/// A certificate created through the API.
struct Certificate {
    id: String,
    names: Vec<String>,
    created: Instant,
}

/// What the Secret held at one moment.
struct Written {
    uid: String,
    serial: String,
    certificate: String,
    key: String,
}

async fn post_certificate(live: &Live<'_>, body: Value) -> StepResult<(u16, Value)> {
    let server = live.server().await?;
    server.create_certificate(&server.client()?, &body).await
}

async fn refused_target(live: &Live<'_>, agent_id: &str, other: &str, apps: &str) -> StepResult {
    let body = json!({"common_name": "web.other.example.test", "agent_id": agent_id, "target": {"namespace": other, "name": SECRET}});
    let (status, answer) = post_certificate(live, body).await?;
    ensure!(
        status == 400 && answer["error"]["code"] == "target_namespace_not_allowed",
        "a target in {other}: HTTP {status} {answer}, want 400 target_namespace_not_allowed"
    );
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    ensure!(message.contains(apps), "the refusal does not name the allowed namespace {apps}: {message}");
    Ok(())
}

async fn create_certificate(live: &Live<'_>, agent_id: &str, apps: &str) -> StepResult<Certificate> {
    let names = vec!["web.apps.example.test".to_string(), format!("web.{apps}.svc")];
    let body = json!({"common_name": names[0], "sans": names, "agent_id": agent_id, "target": {"namespace": apps, "name": SECRET}});
    let created = Instant::now();
    let (status, answer) = post_certificate(live, body).await?;
    ensure!(status == 201, "POST /api/v1/certificates with a target: HTTP {status} {answer}, want 201");
    ensure!(answer["target"]["namespace"] == apps && answer["target"]["name"] == SECRET, "the answer's target: {}", answer["target"]);
    let id = answer["id"].as_str().ok_or_else(|| format!("201 without an id: {answer}"))?.to_string();
    Ok(Certificate { id, names, created })
}

async fn secret(live: &Live<'_>, namespace: &str) -> StepResult<Secret> {
    Ok(Api::<Secret>::namespaced(live.s.client.clone(), namespace).get(SECRET).await?)
}

fn data(secret: &Secret, key: &str) -> StepResult<String> {
    let bytes = secret.data.as_ref().and_then(|d| d.get(key)).ok_or_else(|| format!("Secret {SECRET} has no {key}"))?;
    Ok(String::from_utf8(bytes.0.clone())?)
}

/// Waits until the Secret holds the certificate (a new serial when `before`
/// is given, in the same object), then checks what it holds.
async fn secret_written(live: &Live<'_>, ns: &str, cert: &Certificate, agent: &str, before: Option<&Written>) -> StepResult<Written> {
    let since = Instant::now();
    let secrets: Api<Secret> = Api::namespaced(live.s.client.clone(), ns);
    let what = match before {
        None => format!("Secret {ns}/{SECRET} labelled with certificate {}", cert.id),
        Some(b) => format!("Secret {ns}/{SECRET} with a serial other than {}", b.serial),
    };
    let found = wait_until(&what, Deadline::secs(180).every_millis(500), || async {
        let Some(found) = secrets.get_opt(SECRET).await.transient()? else {
            return Ok::<_, PollError>(Poll::Pending("no such Secret".into()));
        };
        let labels = found.metadata.labels.clone().unwrap_or_default();
        let serial = labels.get(LABEL_SERIAL).cloned().unwrap_or_default();
        let ours = labels.get(LABEL_CERTIFICATE) == Some(&cert.id);
        Ok(if ours && !serial.is_empty() && before.is_none_or(|b| b.serial != serial) {
            Poll::Ready(found)
        } else {
            Poll::Pending(format!("labels {labels:?}"))
        })
    })
    .await?;
    let elapsed = if before.is_none() { cert.created.elapsed() } else { since.elapsed() };
    eprintln!("secret-target: {what} after {elapsed:.1?}");

    ensure!(found.type_.as_deref() == Some("kubernetes.io/tls"), "Secret type {:?}, want kubernetes.io/tls", found.type_);
    let uid = found.metadata.uid.clone().unwrap_or_default();
    if let Some(b) = before {
        ensure!(uid == b.uid, "the renewal made a new Secret (uid {uid}, was {}): it must be replaced in place", b.uid);
    }
    let labels = found.metadata.labels.clone().unwrap_or_default();
    let serial = labels[LABEL_SERIAL].clone();
    let (certificate, key, ca) = (data(&found, "tls.crt")?, data(&found, "tls.key")?, data(&found, "ca.crt")?);
    let server_ca = crate::support::checks::server_ca_from_database(live).await?;
    ensure!(ca.trim() == server_ca.trim(), "ca.crt is not the server's CA");
    verify_leaf(&certificate, &server_ca, &cert.names, &serial)?;
    // The key in the Secret is the one the agent made and keeps.
    let on_agent =
        exec(&live.pods(), agent, "agent", &["cat", &format!("{}/{}.key", crate::support::live::AGENT_KEY_DIR, cert.id)]).await?;
    ensure!(on_agent.success() && on_agent.stdout.trim() == key.trim(), "tls.key is not the key in {agent}'s key directory");
    ensure!(key.contains("BEGIN PRIVATE KEY"), "tls.key is not a PKCS#8 PEM key");
    Ok(Written { uid, serial, certificate, key })
}

fn verify_leaf(pem: &str, ca_pem: &str, names: &[String], serial: &str) -> StepResult {
    let (_, ca) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).map_err(|e| format!("the server's CA is not PEM: {e}"))?;
    let ca = ca.parse_x509().map_err(|e| format!("the server's CA: {e}"))?;
    let (_, leaf) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| format!("tls.crt is not PEM: {e}"))?;
    let leaf = leaf.parse_x509().map_err(|e| format!("tls.crt: {e}"))?;
    leaf.verify_signature(Some(ca.public_key())).map_err(|e| format!("tls.crt does not verify against the server's CA: {e}"))?;
    let sans: Vec<String> = leaf
        .subject_alternative_name()
        .map_err(|e| format!("tls.crt subjectAltName: {e}"))?
        .map(|ext| ext.value.general_names.iter().map(|n| n.to_string()).collect())
        .unwrap_or_default();
    for name in names {
        ensure!(sans.iter().any(|s| s == &format!("DNSName({name})")), "tls.crt names {sans:?}, not {name}");
    }
    let leaf_serial = leaf.raw_serial_as_string().replace(':', "");
    ensure!(leaf_serial == serial, "tls.crt has serial {leaf_serial}, the Secret's label says {serial}");
    Ok(())
}

async fn certificate_view(live: &Live<'_>, id: &str) -> StepResult<(u16, String)> {
    let server = live.server().await?;
    let resp = server.client()?.get(server.url(&format!("/api/v1/certificates/{id}"))).bearer_auth(API_KEY).send().await?;
    Ok((resp.status().as_u16(), resp.text().await?))
}

async fn reported_written(live: &Live<'_>, id: &str, serial: &str) -> StepResult {
    wait_until(
        &format!("certificate {id}'s target reported written with serial {serial}"),
        Deadline::secs(60).every_millis(1000),
        || async {
            let (status, text) = certificate_view(live, id).await.fatal()?;
            let view: Value = serde_json::from_str(&text).fatal()?;
            let target = &view["target"];
            Ok::<_, PollError>(if status == 200 && target["status"] == "written" && target["serial"] == serial {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("HTTP {status} target {target}"))
            })
        },
    )
    .await?;
    Ok(())
}

const MOUNT: &str = "/etc/web-tls";

/// A restricted pod in the target namespace with the Secret as a volume.
async fn mounting_pod(live: &Live<'_>, ns: &str, written: &Written) -> StepResult<String> {
    let name = "web".to_string();
    let pods: Api<Pod> = Api::namespaced(live.s.client.clone(), ns);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": false,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65534, "runAsGroup": 65534, "seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [{"name": "tls", "secret": {"secretName": SECRET}}],
            "containers": [{
                "name": "web", "image": live.s.env.images.agent.to_string(), "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", "infinity"],
                "volumeMounts": [{"name": "tls", "mountPath": MOUNT, "readOnly": true}],
                "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}}
            }]
        }
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    certctl_harness::pods::wait_pods_ready(&pods, "app=web", 1, Deadline::secs(120)).await?;
    let seen = exec(&pods, &name, "web", &["cat", &format!("{MOUNT}/tls.crt")]).await?;
    ensure!(seen.stdout.trim() == written.certificate.trim(), "the mounted tls.crt is not the Secret's: {}", seen.stderr.trim());
    Ok(name)
}

async fn mounted_file_follows(live: &Live<'_>, ns: &str, pod: &str, renewed: &Written) -> StepResult {
    let pods: Api<Pod> = Api::namespaced(live.s.client.clone(), ns);
    let since = Instant::now();
    // The kubelet refreshes Secret volumes on its sync period (about a minute).
    wait_until("the mounted tls.crt to be the renewed certificate", Deadline::secs(240).every_millis(2000), || async {
        let seen = exec(&pods, pod, "web", &["cat", &format!("{MOUNT}/tls.crt")]).await.fatal()?;
        Ok::<_, PollError>(if seen.stdout.trim() == renewed.certificate.trim() {
            Poll::Ready(())
        } else {
            Poll::Pending(format!("the pod still reads the earlier certificate ({} bytes)", seen.stdout.len()))
        })
    })
    .await?;
    eprintln!("secret-target: the mounting pod read the renewed certificate {:.1?} after the Secret changed", since.elapsed());
    Ok(())
}

/// Renewal as the scheduler does it, brought forward: the stored end of
/// validity moves to a minute from now, inside the renewal margin.
async fn near_expiry(live: &Live<'_>, id: &str) -> StepResult {
    live.sql(&format!("update certificates set not_after = now() + interval '1 minute' where id = '{id}'")).await?;
    Ok(())
}

/// The agent's own log: one write per issued serial of this certificate.
async fn writes_per_issue(live: &Live<'_>, agent: &str, id: &str) -> StepResult {
    let log = logs_since(&live.pods(), agent, "agent", None, Instance::Current).await?;
    let writes = log.lines().filter(|l| l.contains("Secret written") && l.contains(id)).count();
    let failures = log.lines().filter(|l| l.contains("cannot write the Secret") && l.contains(id)).count();
    // From the certificate installed next to its key to the Secret written, per the agent.
    let after: Vec<String> = log
        .lines()
        .filter(|l| l.contains("Secret written") && l.contains(id))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| format!("{} ms", v["after_ms"]))
        .collect();
    eprintln!("secret-target: {writes} Secret write(s), {failures} failed attempt(s) for issue + renewal; installed to written: {after:?}");
    ensure!(writes == 2 && failures == 0, "{writes} Secret writes and {failures} failures for issue and renewal, want 2 and 0");
    Ok(())
}

/// What the API server's authorizer says a ServiceAccount may do.
async fn may(live: &Live<'_>, account: &str, verb: &str, namespace: &str) -> StepResult<bool> {
    let ns = &live.names.namespace;
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(format!("system:serviceaccount:{ns}:{account}")),
            groups: Some(vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{ns}"), "system:authenticated".into()]),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(namespace.to_string()),
                verb: Some(verb.to_string()),
                resource: Some("secrets".into()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let answer = Api::<SubjectAccessReview>::all(live.s.client.clone()).create(&PostParams::default(), &review).await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

async fn permissions(live: &Live<'_>, apps: &str, other: &str) -> StepResult {
    let agents = live.names.agent();
    let server = live.names.fullname().to_string();
    let release = live.names.namespace.clone();
    let mut wrong = Vec::new();
    let mut expect = async |account: &str, verb: &str, ns: &str, allowed: bool| -> StepResult {
        if may(live, account, verb, ns).await? != allowed {
            wrong.push(format!("{account} {} {verb} secrets in {ns}", if allowed { "may not" } else { "may" }));
        }
        Ok(())
    };
    // The positive control: exactly what the writes need.
    expect(&agents, "create", apps, true).await?;
    expect(&agents, "patch", apps, true).await?;
    for verb in ["get", "list", "watch", "delete", "update"] {
        expect(&agents, verb, apps, false).await?;
    }
    for ns in [other, release.as_str(), "default"] {
        expect(&agents, "create", ns, false).await?;
        expect(&agents, "patch", ns, false).await?;
    }
    expect(&server, "create", apps, false).await?;
    expect(&server, "patch", apps, false).await?;
    ensure!(wrong.is_empty(), "the authorizer disagrees with the permission model: {}", wrong.join("; "));
    Ok(())
}

/// The key's body (its PEM without the armour lines) must not appear in any
/// server log, in a dump of the database, or in the API's answers.
async fn key_nowhere(live: &Live<'_>, id: &str, key: &str) -> StepResult {
    let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    // The first 48 characters are the PKCS#8 header every P-256 key shares; the
    // private scalar follows.
    let needle = body.get(48..96).ok_or("tls.key is shorter than a P-256 key")?;
    let mut found = Vec::new();
    for pod in live.ready(Component::Server).await? {
        if logs_since(&live.pods(), &pod, "server", None, Instance::Current).await?.replace('\n', "").contains(needle) {
            found.push(format!("the log of {pod}"));
        }
    }
    let dump = exec(&live.pods(), &live.names.postgres_pod(0), "postgres", &["pg_dump", "-U", "certctl", "-d", "certctl"]).await?;
    ensure!(dump.success(), "pg_dump failed: {}", dump.stderr.trim());
    ensure!(dump.stdout.contains(id), "the dump does not hold certificate {id}: not a dump of this database");
    if dump.stdout.replace(['\n', '\\'], "").contains(needle) {
        found.push("the database dump".into());
    }
    let server = live.server().await?;
    let http = server.client()?;
    for path in ["/api/v1/certificates".to_string(), format!("/api/v1/certificates/{id}")] {
        let text = http.get(server.url(&path)).bearer_auth(API_KEY).send().await?.text().await?;
        if text.replace("\\n", "").contains(needle) {
            found.push(format!("GET {path}"));
        }
    }
    ensure!(found.is_empty(), "the private key is in {}", found.join(", "));
    Ok(())
}

async fn api_egress(live: &Live<'_>, want: Verdict) -> StepResult {
    let agent = ProbePod::existing(live.pods(), &live.one_ready(Component::Agent).await?, "agent", ProbeTool::Bash);
    let hold = if matches!(want, Verdict::Connected) { Duration::from_secs(1) } else { Duration::from_secs(10) };
    agent.expect("kubernetes.default.svc:443", want, Duration::from_secs(60), hold).await?;
    Ok(())
}

async fn no_rbac(live: &Live<'_>, apps: &str) -> StepResult {
    let selector = format!("app.kubernetes.io/instance={}", live.names.release);
    let roles = Api::<Role>::namespaced(live.s.client.clone(), apps).list(&ListParams::default().labels(&selector)).await?;
    let bindings = Api::<RoleBinding>::namespaced(live.s.client.clone(), apps).list(&ListParams::default().labels(&selector)).await?;
    let left: Vec<String> = roles
        .items
        .iter()
        .map(|r| format!("Role {:?}", r.metadata.name))
        .chain(bindings.items.iter().map(|b| format!("RoleBinding {:?}", b.metadata.name)))
        .collect();
    ensure!(left.is_empty(), "left in {apps}: {left:?}");
    Ok(())
}

async fn no_tokens(live: &Live<'_>) -> StepResult {
    let mut with_token = Vec::new();
    for component in [Component::Agent, Component::Server] {
        for pod in live.pods_of(component).await?.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
            let name = pod.metadata.name.clone().unwrap_or_default();
            let spec = pod.spec.unwrap_or_default();
            let mounted = spec
                .containers
                .iter()
                .flat_map(|c| c.volume_mounts.iter().flatten())
                .any(|m| m.mount_path.starts_with("/var/run/secrets/kubernetes.io"));
            if spec.automount_service_account_token != Some(false) || mounted {
                with_token.push(name);
            }
        }
    }
    ensure!(with_token.is_empty(), "pods holding a ServiceAccount token: {with_token:?}");
    Ok(())
}
