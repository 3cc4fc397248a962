//! Pod Security "restricted": every pod template of every mode and optional feature meets
//! the profile (checked field by field in Rust); the opt-in root init container is the one
//! thing that needs podSecurity.level=baseline, and the check sees it there.

mod support;

use std::collections::BTreeSet;

use certctl_scenarios::modes::Mode;
use certctl_scenarios::pod_security::{pod_template, pod_templates, restricted};
use certctl_scenarios::render::{Render, Rendered};
use serde_json::json;
use support::{render, render_all};

/// Every mode, and each optional pod-bearing feature on at least once.
fn variants() -> Vec<(String, Render)> {
    let mut v: Vec<(String, Render)> = Mode::ALL.into_iter().map(|m| (m.to_string(), Render::mode(m))).collect();
    let backup = |r: Render| r.set("backup.enabled", "true").set("backup.sink.existingClaim", "backups");
    v.push(("agent Deployment".into(), Render::mode(Mode::Default).set("agent.kind", "Deployment")));
    v.push((
        "agent StatefulSet".into(),
        Render::mode(Mode::Default).set("agent.kind", "StatefulSet").set("agent.persistence.enabled", "true"),
    ));
    v.push(("backup, bundled".into(), backup(Render::mode(Mode::Default))));
    v.push(("backup, external".into(), backup(Render::mode(Mode::ExternalDb))));
    v.push((
        "seLinux level and supplementalGroups".into(),
        Render::mode(Mode::Default)
            .set_json("agent.securityContext.seLinuxOptions", &json!({"level": "s0:c1,c2"}))
            .set_json("server.securityContext.supplementalGroups", &json!([2000])),
    ));
    v
}

fn rendered(variants: &[(String, Render)]) -> Vec<(String, Rendered)> {
    let renders: Vec<Render> = variants.iter().map(|(_, r)| r.clone()).collect();
    variants.iter().zip(render_all(&renders)).map(|((label, _), r)| (label.clone(), r.unwrap_or_else(|e| panic!("{label}: {e}")))).collect()
}

#[test]
fn every_pod_of_every_mode_meets_restricted() {
    let mut findings = Vec::new();
    let mut checked = BTreeSet::new();
    for (label, r) in rendered(&variants()) {
        let templates =
            pod_templates(&r).unwrap_or_else(|ids| panic!("[{label}] objects with containers of a kind the check does not know: {ids:?}"));
        assert!(!templates.is_empty(), "[{label}] no pod template rendered");
        for (id, template) in templates {
            findings.extend(restricted(template).into_iter().map(|f| format!("[{label}] {id} {f}")));
            checked.insert(id);
        }
    }
    assert!(findings.is_empty(), "Pod Security \"restricted\" would refuse:\n{}", findings.join("\n"));
    for id in [
        "Deployment/c-certctl-server",
        "DaemonSet/c-certctl-agent",
        "Deployment/c-certctl-agent",
        "StatefulSet/c-certctl-agent",
        "StatefulSet/c-certctl-postgres",
        "CronJob/c-certctl-backup",
    ] {
        assert!(checked.contains(id), "{id} never checked: {checked:?}");
    }
}

/// The check fails on a real render: the opt-in root init container (allowed only at
/// baseline) is reported for each rule it breaks, and nothing else is.
#[test]
fn the_volume_permissions_init_container_is_what_restricted_refuses() {
    let r = render(&Render::mode(Mode::Default).set("podSecurity.level", "baseline").set("postgresql.volumePermissions.enabled", "true"));
    let pg = r.expect("StatefulSet", "c-certctl-postgres");
    let template = pod_template(pg).expect("a pod template");
    let mut got: Vec<(String, String)> = restricted(template).into_iter().map(|f| (f.check.to_owned(), f.path)).collect();
    got.sort();
    let init = ".spec.initContainers[0].securityContext";
    assert_eq!(
        got,
        vec![
            ("capabilities_restricted".to_owned(), format!("{init}.capabilities.add[0]")),
            ("runAsNonRoot".to_owned(), format!("{init}.runAsNonRoot")),
            ("runAsUser".to_owned(), format!("{init}.runAsUser")),
        ]
    );
}

/// Below restricted, the chart lets through what that level allows, and the Rust check
/// reports it: the two agree on what "restricted" means.
#[test]
fn baseline_lets_through_what_restricted_refuses() {
    let cases = [
        ("server.securityContext.allowPrivilegeEscalation", json!(true), "allowPrivilegeEscalation"),
        ("server.securityContext.runAsNonRoot", json!(false), "runAsNonRoot"),
        ("server.securityContext.capabilities", json!({"drop": ["ALL"], "add": ["CHOWN"]}), "capabilities_restricted"),
    ];
    let renders: Vec<Render> =
        cases.iter().map(|(k, v, _)| Render::mode(Mode::Default).set("podSecurity.level", "baseline").set_json(k, v)).collect();
    for ((key, value, check), r) in cases.iter().zip(render_all(&renders)) {
        let r = r.unwrap_or_else(|e| panic!("baseline refused {key}={value}: {e}"));
        let server = r.expect("Deployment", "c-certctl-server");
        let got: Vec<&str> = restricted(pod_template(server).unwrap()).iter().map(|f| f.check).collect();
        assert_eq!(got, vec![*check], "{key}={value}");
    }
}

/// Chart.yaml's kubeVersion: the oldest supported minor renders, the one before is refused.
#[test]
fn kube_version_floor_is_enforced_by_helm() {
    let results = render_all(&[Render::mode(Mode::Default).kube_version("v1.32.0"), Render::mode(Mode::Default).kube_version("v1.31.14")]);
    if let Err(e) = &results[0] {
        panic!("v1.32.0 refused: {e}");
    }
    let err = results[1].as_ref().err().unwrap_or_else(|| panic!("v1.31.14 rendered: kubeVersion floor missing"));
    let stderr = err.helm_stderr().unwrap_or_else(|| panic!("{err}"));
    assert!(stderr.contains("kubeVersion") && stderr.contains(">=1.32.0-0"), "{stderr}");
}
