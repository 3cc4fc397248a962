//! The bench tier's measurements, never a verdict on time: per mode, on the
//! run's cluster, the floor — one `helm install --wait` of the mode exactly as
//! the matrix installs it — and the peer a team would otherwise run,
//! chart-testing's `ct install` of the same chart with the same values in the
//! same namespace (its own release, `helm test` and clean-up included).
//! `cargo run -p certctl-ci -- bench` runs it beside the whole matrix and
//! prints the ratios (docs/ci.md); the numbers land in `bench.json`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use certctl_harness::ensure;
use certctl_harness::scenario::{Scenario, StepResult};
use certctl_scenarios::modes::Mode;
use certctl_scenarios::mutants::scratch::Scratch;

use crate::support::live::{merged_values, Live};

/// Names chart-testing's `ct` (the bench tier sets it from `bash ci/tools.sh ct`).
const CT_VAR: &str = "CERTCTL_CT";
/// The measurements, under the run's artifacts directory (read by the bench tier).
const REPORT: &str = "bench.json";

/// One mode's numbers.
#[derive(Debug)]
struct Measured {
    mode: Mode,
    helm_install_wait: Duration,
    ct_install: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check: the bench tier runs it (cargo run -p certctl-ci -- bench)"]
async fn helm_install_and_ct_install_of_every_mode() {
    let ct = std::env::var_os(CT_VAR).filter(|v| !v.is_empty()).map(PathBuf::from).unwrap_or_else(|| {
        panic!("{CT_VAR} is not set: run the bench tier (cargo run -p certctl-ci -- bench) or set it to chart-testing's ct (`bash ci/tools.sh ct` builds it and prints its path)")
    });
    let measured = Mutex::new(Vec::new());
    for mode in Mode::ALL {
        Scenario::run(&format!("bench-{}", mode.name()), async |s| {
            let live =
                s.require("helm install --wait, as the matrix installs the mode", crate::install(mode).helm_arg("--wait").run(s)).await?;
            let helm_install_wait = live.installed.took;
            s.require("helm uninstall (the database claim and the TLS Secret stay for ct)", async {
                Ok(s.helm.uninstall(&live.names.release, &live.names.namespace).await?)
            })
            .await?;
            let ct_install = s.require("ct install of the same chart with the same values", ct_install(s, &live, &ct)).await?;
            measured.lock().unwrap_or_else(|e| e.into_inner()).push(Measured { mode, helm_install_wait, ct_install });
            Ok(())
        })
        .await
        .unwrap();
    }
    let measured = measured.into_inner().unwrap_or_else(|e| e.into_inner());
    let report = serde_json::json!({
        "modes": measured.iter().map(|m| serde_json::json!({
            "mode": m.mode.name(),
            "helm_install_wait_secs": m.helm_install_wait.as_secs_f64(),
            "ct_install_secs": m.ct_install.as_secs_f64(),
        })).collect::<Vec<_>>(),
    });
    let path = certctl_harness::diagnostics::artifacts_root().join(REPORT);
    std::fs::write(&path, serde_json::to_vec_pretty(&report).expect("JSON")).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    eprintln!("bench: per mode, helm install --wait / ct install (written to {}):", path.display());
    for m in &measured {
        eprintln!("  {:<13} {:>7.1}s  {:>7.1}s", m.mode.name(), m.helm_install_wait.as_secs_f64(), m.ct_install.as_secs_f64());
    }
}

/// `ct install --charts <copy>` with one values file: the values `live` was
/// installed with, plus `fullnameOverride` so ct's release (named by ct, with
/// a random suffix) gets the same object names — the TLS Secret's names and
/// the retained database claim fit it as they fit the matrix's release.
async fn ct_install(s: &Scenario, live: &Live<'_>, ct: &Path) -> StepResult<Duration> {
    let copy = Scratch::chart(&s.env.workspace)?;
    let mut values = merged_values(&live.release)?;
    certctl_harness::helm::merge(&mut values, serde_json::json!({"fullnameOverride": live.names.fullname()}));
    let ci = copy.chart_dir().join("ci");
    std::fs::create_dir_all(&ci)?;
    // JSON is YAML: ct hands the file to helm as it is.
    std::fs::write(ci.join(format!("{}-values.yaml", live.mode.name())), serde_json::to_vec_pretty(&values)?)?;

    let tools = &s.env.tools;
    let mut path = vec![parent(&tools.helm.path), parent(&tools.kubectl.path)];
    path.extend(std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default());
    let mut cmd = tokio::process::Command::new(ct);
    cmd.args(["install", "--charts"])
        .arg(copy.chart_dir())
        .args(["--namespace", &live.names.namespace, "--release-label", "app.kubernetes.io/instance"])
        .args(["--helm-extra-args", "--timeout 300s"])
        .env("KUBECONFIG", &s.env.cluster.kubeconfig)
        .env("PATH", std::env::join_paths(path)?)
        .kill_on_drop(true);
    let started = Instant::now();
    let out = cmd.output().await?;
    let took = started.elapsed();
    let log = certctl_harness::diagnostics::artifacts_root().join(format!("bench-ct-{}.log", live.mode.name()));
    std::fs::write(&log, [out.stdout.as_slice(), out.stderr.as_slice()].concat())?;
    ensure!(out.status.success(), "ct install failed ({}); its output: {}", out.status, log.display());
    Ok(took)
}

fn parent(binary: &Path) -> PathBuf {
    binary.parent().map(Path::to_path_buf).unwrap_or_default()
}
