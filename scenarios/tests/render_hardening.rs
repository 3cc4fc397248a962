//! Every container the chart renders runs under a seccomp profile (Pod Security
//! "restricted" requires RuntimeDefault or Localhost): set on the pod, or on the
//! container, in every mode and workload kind.

mod support;

use certctl_scenarios::modes::Mode;
use certctl_scenarios::render::{Object, Render};
use serde_json::Value;
use support::render_all;

/// Pod specs of a rendered workload: Deployments, DaemonSets, StatefulSets, Jobs, CronJobs.
fn pod_specs(o: &Object) -> Vec<&Value> {
    ["/spec/template/spec", "/spec/jobTemplate/spec/template/spec"].iter().filter_map(|p| o.at(p)).collect()
}

/// The profile a container runs under: its own, else its pod's.
fn seccomp_of<'a>(pod: &'a Value, container: &'a Value) -> &'a Value {
    let own = &container["securityContext"]["seccompProfile"]["type"];
    if own.is_null() {
        &pod["securityContext"]["seccompProfile"]["type"]
    } else {
        own
    }
}

#[test]
fn every_pod_runs_under_the_runtime_default_seccomp_profile() {
    let mut renders: Vec<(String, Render)> = Mode::ALL.into_iter().map(|m| (m.to_string(), Render::mode(m))).collect();
    renders.push(("agent as Deployment".into(), Render::mode(Mode::Default).set("agent.kind", "Deployment")));
    let results = render_all(&renders.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>());
    let mut containers = 0;
    for ((label, _), result) in renders.iter().zip(results) {
        let rendered = result.unwrap_or_else(|e| panic!("{label}: {e}"));
        for o in &rendered.objects {
            for pod in pod_specs(o) {
                let all = ["initContainers", "containers"].iter().flat_map(|k| pod[*k].as_array().into_iter().flatten());
                for c in all {
                    containers += 1;
                    let profile = seccomp_of(pod, c);
                    assert!(
                        profile == "RuntimeDefault" || profile == "Localhost",
                        "{label}: {}/{} runs with seccompProfile {profile}, want RuntimeDefault (or Localhost)",
                        o.id(),
                        c["name"].as_str().unwrap_or("?")
                    );
                }
            }
        }
    }
    assert!(containers >= 14, "only {containers} containers rendered: the renders lost their workloads");
}
