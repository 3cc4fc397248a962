//! The default mode (bundled PostgreSQL, TLS from a Secret, api-key auth)
//! keeps only the promises every mode keeps (see `main.rs`); here, the proof
//! that those checks can fail.

use certctl_harness::scenario::Scenario;
use certctl_scenarios::modes::Mode;
use certctl_scenarios::mutants::scratch::Scratch;

use crate::support::live::Install;

/// A chart with readOnlyRootFilesystem moved to pod scope (where the API
/// drops it) installs, runs — and fails exactly the securityContext checks,
/// with a diagnostics bundle written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_chart_fails_the_read_only_root_check() {
    let chart = broken_chart();
    let failure = Scenario::run_expecting_failure("default-broken", async |s| {
        // Helm's client-side schema check would reject the misplaced field
        // outright; with it off (as in the upstream incident) the API server
        // silently drops it, which only a live check notices.
        let install = Install::mode(Mode::Default).release("broken").chart(chart.chart_dir()).helm_arg("--disable-openapi-validation");
        let live = s.require("install", install.run(s)).await?;
        s.require("rollout", live.rolled_out()).await?;
        crate::hardened_containers(s, &live).await
    })
    .await;
    eprintln!("expected failure of the broken chart:\n{failure}");
    assert!(!failure.failures.is_empty(), "{failure}");
    for (step, message) in &failure.failures {
        assert!(step.starts_with("securityContext of "), "an unrelated step failed: {step}: {message}");
        assert!(message.contains("readOnlyRootFilesystem not enforced"), "{step} failed for another reason: {message}");
    }
    let failed_steps: Vec<&str> = failure.failures.iter().map(|(s, _)| s.as_str()).collect();
    assert!(failed_steps.iter().any(|s| s.contains("-server-")), "the server container was not caught: {failed_steps:?}");
    assert!(failed_steps.iter().any(|s| s.contains("-agent-")), "the agent container was not caught: {failed_steps:?}");
    for file in ["README.txt", "events.txt", "pods.txt", "helm/broken.manifest.yaml", "helm/broken.values.json", "policy.json"] {
        assert!(failure.bundle.join(file).is_file(), "bundle {} lacks {file}", failure.bundle.display());
    }
    let text = failure.to_string();
    assert!(text.contains(&failure.bundle.display().to_string()), "the failure message does not name the bundle: {text}");
}

/// A scratch copy of the chart whose templates put readOnlyRootFilesystem at
/// pod scope instead of container scope — the upstream audit's class of bug.
fn broken_chart() -> Scratch {
    let copy = Scratch::chart(&certctl_harness::workspace::root()).expect("a scratch copy of the chart");
    let helpers = copy.chart_dir().join("templates/_helpers.tpl");
    let text = std::fs::read_to_string(&helpers).expect("chart helpers");
    let broken =
        text.replacen("\"readOnlyRootFilesystem\" ", "", 1).replacen("\"runAsNonRoot\"", "\"runAsNonRoot\" \"readOnlyRootFilesystem\"", 1);
    assert_ne!(broken, text, "could not find where the chart splits readOnlyRootFilesystem into container scope");
    std::fs::write(&helpers, broken).expect("write broken helpers");
    copy
}
