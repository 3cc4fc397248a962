//! External database (`postgresql.enabled=false`, a PostgreSQL outside the
//! cluster): nothing of the bundled database is created, and the server's
//! pool never holds more than `server.database.maxConnections` connections —
//! seen in the external database's own pg_stat_activity while every pooled
//! connection is blocked by a lock. Its faults are the operator's to fix
//! and the server's to survive: an outage answers 503 (never 500) and heals
//! by itself with every row intact; a wrong password is named (28P01),
//! never printed, while the old pod keeps serving.

use std::time::Duration;

use certctl_harness::ensure;
use certctl_harness::external_db::ExternalPostgres;
use certctl_harness::names::Component;
use certctl_harness::scenario::{Flow, Scenario, StepResult};
use certctl_harness::wait::{wait_until, Classify, Deadline, Poll, PollError};
use certctl_scenarios::modes::Mode;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, ListParams};

use crate::password_rotation::diagnosed_28p01;
use crate::support::data::Ledger;
use crate::support::live::{Endpoint, Install, Live, API_KEY};

/// The pool bound the scenario installs with.
const MAX_CONNS: usize = 3;

pub fn install() -> Install {
    Install::mode(Mode::ExternalDb).set(serde_json::json!({"server": {"database": {"maxConnections": MAX_CONNS}}}))
}

pub async fn promises(s: &Scenario, live: &Live<'_>) -> Flow {
    s.check("no bundled PostgreSQL: no StatefulSet, no volume claim", no_bundled_database(live)).await;
    let db = live.external.as_deref().expect("the external-DB mode starts its database");
    let server = s.require("port-forward to the server Service", live.server()).await?;
    s.check(&format!("pool never exceeds maxConnections={MAX_CONNS} in pg_stat_activity"), pool_bounded(db, &server, MAX_CONNS)).await;
    let ledger = s.require("certificates issued to the agents through the API", Ledger::write(live, 3)).await?;
    s.check("the database stopped: /ready and the API answer 503, not 500; the server heals when it returns", outage(live, db, &server))
        .await;
    drop(server);
    s.check(
        "a wrong password in externalDatabase.url: the new pod names 28P01 without the password; the old one serves",
        wrong_password(s, live, db),
    )
    .await;
    s.check("every row intact after the outage and the wrong password", async { ledger.intact(live).await.map(drop) }).await;
    Ok(())
}

/// Stops the external database: `/ready` turns 503 and an API call answers
/// 503 `database_unavailable`; once it is back, both answer 200 again with
/// no container restarted.
async fn outage(live: &Live<'_>, db: &ExternalPostgres, server: &Endpoint) -> StepResult {
    let http = server.client()?;
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
        let (code, body) = status("/api/v1/certificates").await.map_err(|e| format!("{e:?}"))?;
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
    for pod in live.pods_of(Component::Server).await? {
        let restarts: i32 = pod.status.and_then(|s| s.container_statuses).unwrap_or_default().iter().map(|c| c.restart_count).sum();
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

const SERVER_CONNECTIONS: &str = "select count(*) from pg_stat_activity where application_name = 'certctl-server' and datname = 'certctl'";

/// Holds an exclusive lock on `certificates`, sends 4×max requests that each
/// need a pooled connection, and watches the external database: the
/// server's connections climb to exactly `max` and stay there (never more)
/// until the lock goes; then every request completes.
async fn pool_bounded(db: &ExternalPostgres, server: &Endpoint, max: usize) -> StepResult {
    let count = || async { StepResult::Ok(db.psql("certctl", SERVER_CONNECTIONS).await?.parse::<usize>()?) };
    let idle = count().await?;
    ensure!((1..=max).contains(&idle), "at rest the server holds {idle} connections, want 1..={max}");

    db.psql_background("certctl", "e2e-lock", "BEGIN; LOCK TABLE certificates IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(600); COMMIT;")
        .await?;
    let granted = "select count(*) from pg_locks where relation = 'certificates'::regclass and mode = 'AccessExclusiveLock' and granted";
    wait_until("the test's lock on certificates to be granted", Deadline::secs(30).every_millis(250), || async {
        let n = db.psql("certctl", granted).await.fatal()?;
        Ok::<_, PollError>(if n == "1" { Poll::Ready(()) } else { Poll::Pending(format!("granted locks: {n}")) })
    })
    .await?;

    let http = server.client_with_timeout(Duration::from_secs(120))?;
    let url = server.url("/api/v1/certificates");
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..4 * max {
        let (http, url) = (http.clone(), url.clone());
        requests.spawn(async move {
            let response = http.get(&url).bearer_auth(API_KEY).send().await.map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            Ok::<_, String>((status, response.text().await.unwrap_or_default()))
        });
    }
    let observed = async {
        let peak = wait_until(&format!("the server's connections to reach {max}"), Deadline::secs(60).every_millis(250), || async {
            let n = count().await.fatal()?;
            Ok::<_, PollError>(if n >= max { Poll::Ready(n) } else { Poll::Pending(format!("{n} connections named certctl-server")) })
        })
        .await?;
        ensure!(peak == max, "the server opened {peak} connections, more than maxConnections={max}");
        // Held: the queue of blocked requests must not open more (sampled for 5 s).
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let n = count().await?;
            ensure!(n <= max, "the server opened {n} connections while saturated, more than maxConnections={max}");
        }
        StepResult::Ok(())
    }
    .await;
    // Release the lock whatever was seen, so the requests finish.
    let _ = db.psql("postgres", "select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'e2e-lock'").await;
    observed?;
    // Requests holding a connection finish once the lock goes; those that
    // waited longer than the acquire timeout (CERTCTL_DATABASE_CONNECT_TIMEOUT)
    // get 503 database_unavailable — a bounded wait, not a new connection.
    let mut answers = Vec::new();
    while let Some(done) = requests.join_next().await {
        answers.push(done?.map_err(|e| format!("a request queued behind the full pool failed: {e}"))?);
    }
    let unexpected: Vec<&(u16, String)> =
        answers.iter().filter(|(status, body)| !(*status == 200 || (*status == 503 && body.contains("database_unavailable")))).collect();
    ensure!(
        unexpected.is_empty(),
        "requests queued behind the full pool answered {unexpected:?}; want 200, or 503 database_unavailable after the acquire timeout"
    );
    ensure!(answers.iter().any(|(status, _)| *status == 200), "no request held a pooled connection through the lock: {answers:?}");
    let after = http.get(&url).bearer_auth(API_KEY).send().await?.status();
    ensure!(after == 200, "after the lock was released a new request answered {after}, want 200");
    Ok(())
}
