//! External database (`postgresql.enabled=false`, a PostgreSQL outside the
//! cluster): nothing of the bundled database is created (its pool is
//! checked with every mode's, `pool.rs`). Its faults are the operator's to fix
//! and the server's to survive: an outage answers 503 (never 500) and heals
//! by itself with every row intact; a wrong password is named (28P01),
//! never printed, while the old pod keeps serving.

use std::time::Duration;

use certctl_harness::ensure;
use certctl_harness::external_db::ExternalPostgres;
use certctl_harness::names::Component;
use certctl_harness::probe::{ProbePod, ProbeTool, Verdict};
use certctl_harness::scenario::{Flow, Scenario, StepResult};
use certctl_harness::wait::{wait_until, Classify, Deadline, Poll, PollError};
use certctl_scenarios::modes::Mode;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, ListParams};

use crate::password_rotation::diagnosed_28p01;
use crate::support::data::Ledger;
use crate::support::live::{Endpoint, Install, Live, API_KEY};

pub fn install() -> Install {
    Install::mode(Mode::ExternalDb)
}

pub async fn promises(s: &Scenario, live: &Live<'_>) -> Flow {
    s.check("no bundled PostgreSQL: no StatefulSet, no volume claim", no_bundled_database(live)).await;
    let db = live.external.as_deref().expect("the external-DB mode starts its database");
    let server = s.require("port-forward to the server Service", live.server()).await?;
    let ledger = s.require("certificates issued to the agents through the API", Ledger::write(live, 3)).await?;
    s.check("the database stopped: /ready and the API answer 503, not 500; the server heals when it returns", outage(live, db, &server))
        .await;
    drop(server);
    s.check(
        "a wrong password in externalDatabase.url: the new pod names 28P01 without the password; the old one serves",
        wrong_password(s, live, db),
    )
    .await;
    s.check(
        "networkPolicy on: the server reaches its database on new connections, and no other port of it",
        policy_admits_only_the_database(s, live, db),
    )
    .await;
    s.check("every row intact after the outage, the wrong password and the policy", async { ledger.intact(live).await.map(drop) }).await;
    Ok(())
}

/// Stops the external database: `/ready` turns 503 and an API call answers
/// 503 `database_unavailable`; once it is back, both answer 200 again with
/// no container restarted.
async fn outage(live: &Live<'_>, db: &ExternalPostgres, server: &Endpoint) -> StepResult {
    // A stopped database's address does not answer: the server's bound is its connect
    // timeout (CERTCTL_DATABASE_CONNECT_TIMEOUT, 10 s), so the client waits longer.
    let http = server.client_with_timeout(Duration::from_secs(30))?;
    let status = |path: &'static str| {
        let http = http.clone();
        async move {
            let r = http.get(server.url(path)).bearer_auth(API_KEY).send().await.transient()?;
            let code = r.status().as_u16();
            Ok::<_, PollError>((code, r.text().await.unwrap_or_default()))
        }
    };
    db.stop().await?;
    let stopped = async {
        wait_until("/ready to answer 503 with the database stopped", Deadline::secs(60).every_millis(500), || async {
            let (code, body) = status("/ready").await?;
            Ok::<_, PollError>(if code == 503 { Poll::Ready(()) } else { Poll::Pending(format!("{code} {body}")) })
        })
        .await?;
        let asked = std::time::Instant::now();
        let (code, body) = status("/api/v1/certificates").await.map_err(|e| format!("{e:?}"))?;
        eprintln!("external-db outage: an API call answered {code} after {:.1?}", asked.elapsed());
        ensure!(
            code == 503 && body.contains("database_unavailable"),
            "an API call with the database stopped answered {code} {body}, want 503 database_unavailable"
        );
        StepResult::Ok(())
    }
    .await;
    // Bring it back whatever was seen: the checks after this one need it.
    db.start_again().await?;
    stopped?;
    wait_until("/ready to answer 200 once the database is back", Deadline::secs(120).every_millis(1000), || async {
        let (code, body) = status("/ready").await?;
        Ok::<_, PollError>(if code == 200 { Poll::Ready(()) } else { Poll::Pending(format!("{code} {body}")) })
    })
    .await?;
    let (code, body) = status("/api/v1/certificates").await.map_err(|e| format!("{e:?}"))?;
    ensure!(code == 200, "after the database returned an API call answered {code} {body}, want 200");
    // The forward reaches the pod directly; the Service sends traffic again
    // only once the kubelet's next readiness probe passes.
    live.rolled_out().await?;
    for pod in live.pods_of(Component::Server).await? {
        let restarts = certctl_harness::pods::restarts(&pod);
        ensure!(
            restarts == 0,
            "{} restarted {restarts} time(s) during the outage; the server must wait, not exit",
            pod.metadata.name.unwrap_or_default()
        );
    }
    Ok(())
}

/// `helm upgrade` with a wrong password in the URL: the new pod logs the
/// 28P01 diagnostic without the password and stays unready, the old pod
/// keeps serving; the upgrade back to the right URL rolls out.
async fn wrong_password(s: &Scenario, live: &Live<'_>, db: &ExternalPostgres) -> StepResult {
    const WRONG: &str = "not-the-external-password-7";
    let old = live.one_ready(Component::Server).await?;
    let since = certctl_harness::logs::now();
    let wrong = live.release.clone().set(serde_json::json!({"externalDatabase": {"url": db.url(WRONG)}}));
    s.helm.upgrade(&wrong).await?;
    let diagnosed = diagnosed_28p01(live, std::slice::from_ref(&old), since, WRONG).await;
    let serving = live.ready(Component::Server).await;
    s.helm.upgrade(&live.release).await?;
    diagnosed?;
    ensure!(serving?.contains(&old), "the old server pod {old} stopped serving while its replacement could not log in");
    live.rolled_out().await
}

async fn no_bundled_database(live: &Live<'_>) -> StepResult {
    let (client, ns) = (&live.s.client, &live.names.namespace);
    let sets = Api::<StatefulSet>::namespaced(client.clone(), ns).list(&ListParams::default()).await?.items;
    ensure!(
        sets.is_empty(),
        "postgresql.enabled=false still created StatefulSets: {:?}",
        sets.iter().filter_map(|s| s.metadata.name.clone()).collect::<Vec<_>>()
    );
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns).list(&ListParams::default()).await?.items;
    ensure!(
        claims.is_empty(),
        "postgresql.enabled=false still created volume claims: {:?}",
        claims.iter().filter_map(|c| c.metadata.name.clone()).collect::<Vec<_>>()
    );
    Ok(())
}

/// `helm upgrade` with `networkPolicy.enabled=true` (egress to the database
/// derived from its URL). A policy only governs connections opened after it
/// is programmed, and pooled ones live on, so: first the negative control
/// from the server pod itself (another port of the database's address is
/// dropped, not refused: the policy is in force for that pod), then the
/// database ends every server connection, and the server must open new ones
/// through the policy — `/ready` and an API call answer 200, no restart.
async fn policy_admits_only_the_database(s: &Scenario, live: &Live<'_>, db: &ExternalPostgres) -> StepResult {
    let on = live.release.clone().set(serde_json::json!({"networkPolicy": {"enabled": true}}));
    s.helm.upgrade(&on).await?;
    live.rolled_out().await?;
    let (within, hold) = (Duration::from_secs(60), Duration::from_secs(5));
    for pod in live.ready(Component::Server).await? {
        let from_server = ProbePod::existing(live.pods(), &pod, "server", ProbeTool::Bash);
        // Nothing listens on 5433: refused without the policy, dropped with it.
        from_server.expect(&format!("{}:5433", db.ip), Verdict::TimedOut, within, hold).await?;
        from_server.expect(&format!("{}:5432", db.ip), Verdict::Connected, within, Duration::ZERO).await?;
    }
    let before = db.psql("postgres", "select now()").await?;
    let ended = db
        .psql("postgres", "select count(pg_terminate_backend(pid)) from pg_stat_activity where application_name = 'certctl-server'")
        .await?;
    eprintln!("external-db policy: the database ended {ended} server connection(s)");
    let server = live.server().await?;
    let http = server.client()?;
    wait_until("the server to answer an API call on a new database connection", Deadline::secs(60).every_millis(1000), || async {
        let r = http.get(server.url("/api/v1/certificates")).bearer_auth(API_KEY).send().await.transient()?;
        let code = r.status().as_u16();
        Ok::<_, PollError>(if code == 200 {
            Poll::Ready(())
        } else {
            Poll::Pending(format!("{code} {}", r.text().await.unwrap_or_default()))
        })
    })
    .await?;
    let new_connections = format!(
        "select count(*) from pg_stat_activity where application_name = 'certctl-server' and backend_start > '{before}'::timestamptz"
    );
    let reconnected = db.psql("certctl", &new_connections).await?;
    ensure!(reconnected != "0", "the server answered, but no server connection to the database is new: the check proved nothing");
    for pod in live.pods_of(Component::Server).await? {
        let restarts = certctl_harness::pods::restarts(&pod);
        ensure!(restarts == 0, "{} restarted {restarts} time(s) under the policy", pod.metadata.name.unwrap_or_default());
    }
    Ok(())
}
