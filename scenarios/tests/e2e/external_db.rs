//! External database (`postgresql.enabled=false`, a PostgreSQL outside the
//! cluster): nothing of the bundled database is created, and the server's
//! pool never holds more than `server.database.maxConnections` connections —
//! seen in the external database's own pg_stat_activity while every pooled
//! connection is blocked by a lock.

use std::time::Duration;

use certctl_harness::ensure;
use certctl_harness::external_db::ExternalPostgres;
use certctl_harness::scenario::{Flow, Scenario, StepResult};
use certctl_harness::wait::{wait_until, Classify, Deadline, Poll, PollError};
use certctl_scenarios::modes::Mode;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, ListParams};

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
    Ok(())
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
