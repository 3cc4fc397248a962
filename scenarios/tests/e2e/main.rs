//! The live tier: every promise of the chart, on one kind cluster made once
//! per run (one binary, so one shared environment). One file per mode; the
//! promises every mode keeps are a matrix here, so adding a mode adds its
//! row to each. Run with `cargo test --features e2e` (knobs: docs/harness.md).

mod support;

mod agent_identity;
mod api_validation;
mod backup;
mod bench;
mod cert_manager;
mod default;
mod external_db;
mod ha;
mod helm_majors;
mod nodes;
mod password_rotation;
mod pool;
mod reinstall;
mod secret_target;
mod upgrade;

use certctl_harness::names::Component;
use certctl_harness::scenario::{Flow, Scenario};
use certctl_scenarios::modes::Mode;
use rstest::rstest;

use support::checks;
use support::live::{Install, Live};

/// Each mode installs, rolls out, keeps the promises every mode keeps, then its own.
#[rstest]
#[case::default(Mode::Default)]
#[case::external_db(Mode::ExternalDb)]
#[case::cert_manager(Mode::CertManager)]
#[case::ha(Mode::Ha)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mode_keeps_its_promises(#[case] mode: Mode) {
    Scenario::run(mode.name(), async |s| {
        let live = s.require("install", install(mode).run(s)).await?;
        s.require("rollout", live.rolled_out()).await?;
        every_mode(s, &live).await?;
        match mode {
            Mode::Default => Ok(()),
            Mode::ExternalDb => external_db::promises(s, &live).await,
            Mode::CertManager => cert_manager::promises(s, &live).await,
            Mode::Ha => {
                ha::promises(s, &live).await?;
                nodes::promises(s, &live).await
            }
        }
    })
    .await
    .unwrap();
}

/// What a mode installs beyond its values file (and the pool every mode checks).
pub fn install(mode: Mode) -> Install {
    match mode {
        Mode::ExternalDb => external_db::install(),
        Mode::Ha => Install::mode(Mode::Ha).set(nodes::tolerate_the_set_aside_worker()),
        other => Install::mode(other),
    }
    .set(pool::values())
}

/// Admitted under Pod Security "restricted", hardened containers at runtime, then the API through the Service: ready,
/// TLS 1.3 only, key required, metrics behind their permission; and the
/// agent's certificate from the server's CA.
pub async fn every_mode(s: &Scenario, live: &Live<'_>) -> Flow {
    s.check("admitted under Pod Security \"restricted\" with no warning", checks::restricted_without_warnings(live)).await;
    hardened_containers(s, live).await?;
    let server = s.require("port-forward to the server Service", live.server()).await?;
    s.check("/ready via the Service says the database is reachable", checks::ready_via_service(&server)).await;
    s.check("TLS 1.3 only", checks::tls13_only(&server)).await;
    s.check("API key required", checks::api_key_required(&server)).await;
    s.check("metrics need metrics.read", checks::metrics_need_permission(&server)).await;
    drop(server);
    s.check("every agent holds a certificate issued by the server's CA", checks::agents_hold_certificates(live)).await;
    s.check(
        &format!(
            "each replica's pool reaches exactly maxConnections={} under load, never more, then its idle floor",
            pool::MAX_CONNECTIONS
        ),
        pool::bounded(live),
    )
    .await;
    Ok(())
}

/// Every server and agent container: `/` read-only (EROFS), no capabilities,
/// no new privileges, the configured non-root uid.
pub async fn hardened_containers(s: &Scenario, live: &Live<'_>) -> Flow {
    let containers = s.require("server and agent containers", live.containers(&[Component::Server, Component::Agent])).await?;
    for c in &containers {
        s.check(&format!("securityContext of {c}"), checks::hardened(c)).await;
    }
    Ok(())
}
