//! `server.database.maxConnections` is what each server replica holds at
//! most, in every mode: seen in the database's own pg_stat_activity while a
//! lock blocks every pooled connection and each replica gets 4×N requests
//! that need one. Each replica climbs to exactly N and no further, the
//! total never passes replicas×N, and once the load is gone each drops back
//! to the idle floor (max(N/5, 1)) after the idle timeout.

use std::collections::BTreeMap;
use std::time::Duration;

use certctl_harness::ensure;
use certctl_harness::names::Component;
use certctl_harness::scenario::StepResult;
use certctl_harness::wait::{wait_until, Classify, Deadline, Poll, PollError};
use k8s_openapi::api::core::v1::Pod;

use crate::support::live::{Endpoint, Live, API_KEY};

/// The pool each mode installs with: small, so 4×N requests per replica stay cheap.
pub const MAX_CONNECTIONS: usize = 3;
/// Idle connections above the floor close after this (CERTCTL_DATABASE_IDLE_TIMEOUT).
pub const IDLE_TIMEOUT_SECS: u64 = 5;

/// The values every mode's install adds for this check.
pub fn values() -> serde_json::Value {
    serde_json::json!({"server": {
        "database": {"maxConnections": MAX_CONNECTIONS},
        "env": {"CERTCTL_DATABASE_IDLE_TIMEOUT": format!("{IDLE_TIMEOUT_SECS}s")},
    }})
}

const LOCK_APP: &str = "e2e-lock";
const BY_CLIENT: &str =
    "select coalesce(host(client_addr), 'local'), count(*) from pg_stat_activity where application_name = 'certctl-server' and datname = 'certctl' group by 1";

/// Server connections per Ready server pod; with one replica every
/// connection is its (an external database sees the node's address, not the pod's).
async fn per_replica(live: &Live<'_>, servers: &[Pod]) -> StepResult<BTreeMap<String, usize>> {
    let mut by_ip: BTreeMap<String, usize> = BTreeMap::new();
    for line in live.sql(BY_CLIENT).await?.lines().filter(|l| !l.is_empty()) {
        let (ip, n) = line.split_once('|').ok_or_else(|| format!("unexpected pg_stat_activity row {line:?}"))?;
        *by_ip.entry(ip.to_string()).or_default() += n.parse::<usize>()?;
    }
    let name = |p: &Pod| p.metadata.name.clone().unwrap_or_default();
    if let [only] = servers {
        return Ok(BTreeMap::from([(name(only), by_ip.values().sum())]));
    }
    Ok(servers
        .iter()
        .map(|p| {
            let ip = p.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default();
            (name(p), by_ip.get(&ip).copied().unwrap_or(0))
        })
        .collect())
}

/// The check itself (see the module).
pub async fn bounded(live: &Live<'_>) -> StepResult {
    let n = MAX_CONNECTIONS;
    let floor = (n / 5).max(1);
    let servers: Vec<Pod> = live.pods_of(Component::Server).await?.into_iter().filter(certctl_harness::pods::is_ready).collect();
    ensure!(
        servers.len() == live.server_replicas(),
        "{} Ready server pods, the release asks for {}",
        servers.len(),
        live.server_replicas()
    );
    let at_rest = per_replica(live, &servers).await?;
    ensure!(at_rest.values().all(|c| (1..=n).contains(c)), "at rest the replicas hold {at_rest:?} connections, want 1..={n} each");

    live.sql_background(LOCK_APP, "BEGIN; LOCK TABLE certificates IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(600); COMMIT;").await?;
    let granted = "select count(*) from pg_locks where relation = 'certificates'::regclass and mode = 'AccessExclusiveLock' and granted";
    wait_until("the test's lock on certificates to be granted", Deadline::secs(30).every_millis(250), || async {
        let got = live.sql(granted).await.fatal()?;
        Ok::<_, PollError>(if got == "1" { Poll::Ready(()) } else { Poll::Pending(format!("granted locks: {got}")) })
    })
    .await?;

    let mut requests = tokio::task::JoinSet::new();
    let mut endpoints: Vec<Endpoint> = Vec::new();
    for pod in &servers {
        let endpoint = live.server_pod(pod.metadata.name.as_deref().unwrap_or_default()).await?;
        let http = endpoint.client_with_timeout(Duration::from_secs(120))?;
        for _ in 0..4 * n {
            let (http, url) = (http.clone(), endpoint.url("/api/v1/certificates"));
            requests.spawn(async move {
                let response = http.get(&url).bearer_auth(API_KEY).send().await.map_err(|e| e.to_string())?;
                let status = response.status().as_u16();
                Ok::<_, String>((status, response.text().await.unwrap_or_default()))
            });
        }
        endpoints.push(endpoint);
    }
    let observed = async {
        let peak = wait_until(&format!("every replica's connections to reach {n}"), Deadline::secs(60).every_millis(250), || async {
            let now = per_replica(live, &servers).await.fatal()?;
            Ok::<_, PollError>(if now.values().all(|c| *c >= n) { Poll::Ready(now) } else { Poll::Pending(format!("{now:?}")) })
        })
        .await?;
        ensure!(peak.values().all(|c| *c == n), "replicas opened {peak:?} connections, more than maxConnections={n}");
        // Held: the queue of blocked requests must not open more (sampled for 5 s).
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = per_replica(live, &servers).await?;
            let total: usize = now.values().sum();
            ensure!(now.values().all(|c| *c <= n), "while saturated the replicas held {now:?}, more than maxConnections={n}");
            ensure!(total <= servers.len() * n, "while saturated the replicas held {total} in all, more than {}×{n}", servers.len());
        }
        StepResult::Ok(())
    }
    .await;
    // Release the lock whatever was seen, so the requests finish.
    let _ = live.sql(&format!("select pg_terminate_backend(pid) from pg_stat_activity where application_name = '{LOCK_APP}'")).await;
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
    wait_until(
        &format!("every replica back to the idle floor of {floor}"),
        Deadline::secs(30 + 6 * IDLE_TIMEOUT_SECS).every_millis(1000),
        || async {
            let now = per_replica(live, &servers).await.fatal()?;
            Ok::<_, PollError>(if now.values().all(|c| *c == floor) { Poll::Ready(()) } else { Poll::Pending(format!("{now:?}")) })
        },
    )
    .await?;
    drop(endpoints);
    Ok(())
}
