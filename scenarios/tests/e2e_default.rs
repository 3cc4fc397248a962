//! The default mode, live: bundled PostgreSQL, TLS from a Secret made here
//! (a CA generated in Rust), api-key auth. Run with
//! `cargo test --features e2e` (see docs/harness.md for the environment knobs).
#![cfg(feature = "e2e")]

#[path = "support/e2e.rs"]
mod e2e;

use certctl_harness::env::TestEnv;
use e2e::{broken_chart, default_mode, Checks};

async fn env() -> &'static TestEnv {
    e2e::shared_env().await
}

/// Every promise of the default mode holds on a live cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_mode_holds_live() {
    let env = env().await;
    default_mode(env, "default", "c", &env.workspace.join("chart"), Checks::all(), &[], false).await.unwrap();
}

/// The proof can fail: a chart with readOnlyRootFilesystem moved to pod
/// scope (where the API drops it) installs, runs — and fails exactly the
/// securityContext checks, with a diagnostics bundle written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_chart_fails_the_read_only_root_check() {
    let env = env().await;
    let chart = broken_chart(&env.workspace.join("chart"));
    // Helm's client-side schema check would reject the misplaced field
    // outright; with it off (as in the upstream incident) the API server
    // silently drops it, which only a live check notices.
    let failure =
        default_mode(env, "default-broken", "broken", chart.path(), Checks::security_only(), &["--disable-openapi-validation"], true)
            .await
            .expect_err("the broken chart passed every check: the securityContext assertion cannot fail");
    eprintln!("expected failure of the broken chart:\n{failure}");
    assert!(!failure.failures.is_empty());
    for (step, message) in &failure.failures {
        assert!(step.starts_with("securityContext "), "an unrelated step failed: {step}: {message}");
        assert!(message.contains("readOnlyRootFilesystem not enforced"), "{step} failed for another reason: {message}");
    }
    let failed_steps: Vec<&str> = failure.failures.iter().map(|(s, _)| s.as_str()).collect();
    assert!(failed_steps.iter().any(|s| s.contains("-server-")), "the server container was not caught: {failed_steps:?}");
    assert!(failed_steps.iter().any(|s| s.contains("-agent-")), "the agent container was not caught: {failed_steps:?}");
    for file in ["README.txt", "events.txt", "pods.txt", "helm/manifest.yaml", "helm/values.json", "policy.json"] {
        assert!(failure.bundle.join(file).is_file(), "bundle {} lacks {file}", failure.bundle.display());
    }
    let text = failure.to_string();
    assert!(text.contains(&failure.bundle.display().to_string()), "the failure message does not name the bundle: {text}");
}
