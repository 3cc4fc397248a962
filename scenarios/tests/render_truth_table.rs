//! The render truth table of the spec (kinds AND names), for the audit's exact receipts
//! and for the mode values files the live tier installs.

mod support;

use std::collections::BTreeSet;

use certctl_scenarios::modes::Mode;
use certctl_scenarios::render::{Render, Rendered};
use support::{receipts, render_all};

const F: &str = "c-certctl";

fn set(items: &[(&str, String)]) -> BTreeSet<(String, String)> {
    items.iter().map(|(k, n)| ((*k).to_owned(), n.clone())).collect()
}

fn default_set() -> Vec<(&'static str, String)> {
    vec![
        // The spec's table lists an (empty) ClusterRole and binding here; the chart renders
        // no RBAC unless the Secrets target needs it (docs/chart.md, "Deviations").
        ("ServiceAccount", F.to_owned()),
        ("ConfigMap", format!("{F}-server")),
        ("Secret", format!("{F}-server")),
        ("Service", format!("{F}-server")),
        ("Deployment", format!("{F}-server")),
        ("Secret", format!("{F}-postgres")),
        ("Service", format!("{F}-postgres")),
        ("StatefulSet", format!("{F}-postgres")),
        ("ConfigMap", format!("{F}-agent")),
        ("DaemonSet", format!("{F}-agent")),
    ]
}

fn expected(mode: Mode) -> BTreeSet<(String, String)> {
    let mut items = default_set();
    match mode {
        Mode::Default => {}
        Mode::ExternalDb => items.retain(|(_, n)| !n.ends_with("-postgres")),
        Mode::CertManager => items.push(("Certificate", format!("{F}-server-tls"))),
        Mode::Ha => items.extend([
            ("ServiceMonitor", format!("{F}-server")),
            ("PodDisruptionBudget", format!("{F}-server")),
            ("NetworkPolicy", format!("{F}-server")),
        ]),
    }
    set(&items)
}

fn receipt(mode: Mode) -> Render {
    match mode {
        Mode::Default => receipts::default(),
        Mode::ExternalDb => receipts::external_db(),
        Mode::CertManager => receipts::cert_manager(),
        Mode::Ha => receipts::ha(),
    }
}

/// Receipts and mode files, all eight renders at once.
fn render_everything() -> Vec<(String, Mode, Rendered)> {
    let mut renders = Vec::new();
    let mut labels = Vec::new();
    for mode in Mode::ALL {
        renders.push(receipt(mode));
        labels.push((format!("receipt {mode}"), mode));
        renders.push(Render::mode(mode));
        labels.push((format!("values file {}", mode.values_file().display()), mode));
    }
    render_all(&renders)
        .into_iter()
        .zip(labels)
        .map(|(r, (label, mode))| {
            let r = r.unwrap_or_else(|e| panic!("{label}: {e}"));
            (label, mode, r)
        })
        .collect()
}

#[test]
fn every_mode_renders_exactly_its_truth_table_row() {
    // The spec counts 12, 9, 13 and 15 with its empty ClusterRole and binding; the chart renders no RBAC here.
    let expected_counts = [(Mode::Default, 10), (Mode::ExternalDb, 7), (Mode::CertManager, 11), (Mode::Ha, 13)];
    for (label, mode, rendered) in render_everything() {
        let got = rendered.kinds_and_names();
        let want = expected(mode);
        assert_eq!(
            rendered.objects.len(),
            got.len(),
            "{label}: duplicate objects in {:?}",
            rendered.objects.iter().map(|o| o.id()).collect::<Vec<_>>()
        );
        let missing: Vec<_> = want.difference(&got).collect();
        let extra: Vec<_> = got.difference(&want).collect();
        assert!(missing.is_empty() && extra.is_empty(), "{label}: missing {missing:?}, unexpected {extra:?}");
        let count = expected_counts.iter().find(|(m, _)| *m == mode).unwrap().1;
        assert_eq!(got.len(), count, "{label}");
    }
}

#[test]
fn external_mode_has_no_postgres_anything() {
    for (label, mode, rendered) in render_everything() {
        if mode != Mode::ExternalDb {
            continue;
        }
        for o in &rendered.objects {
            assert!(!o.name().contains("postgres"), "{label}: {} rendered", o.id());
        }
        assert!(!rendered.yaml.contains("POSTGRES_PASSWORD"), "{label}: POSTGRES_PASSWORD rendered");
        assert!(!rendered.yaml.contains("PASSWORD"), "{label}: a password env rendered in external mode");
        let server = rendered.expect("Deployment", &format!("{F}-server"));
        let env = support::env_of(server.container("server").unwrap());
        let url = env.iter().find(|(n, _)| n == "CERTCTL_DATABASE_URL").unwrap();
        assert_eq!(url.1["secretKeyRef"]["name"], format!("{F}-server"), "{label}: the external URL comes from the server Secret");
    }
}

#[test]
fn cert_manager_and_ha_add_exactly_their_objects_to_default() {
    let all = render_everything();
    let get = |label_prefix: &str, mode: Mode| {
        all.iter().find(|(l, m, _)| *m == mode && l.starts_with(label_prefix)).map(|(_, _, r)| r.kinds_and_names()).unwrap()
    };
    for prefix in ["receipt", "values file"] {
        let default = get(prefix, Mode::Default);
        let cm: Vec<_> = get(prefix, Mode::CertManager).difference(&default).cloned().collect();
        assert_eq!(cm, vec![("Certificate".to_owned(), format!("{F}-server-tls"))], "{prefix}");
        let ha: BTreeSet<_> = get(prefix, Mode::Ha).difference(&default).cloned().collect();
        assert_eq!(
            ha,
            set(&[
                ("ServiceMonitor", format!("{F}-server")),
                ("PodDisruptionBudget", format!("{F}-server")),
                ("NetworkPolicy", format!("{F}-server")),
            ]),
            "{prefix}"
        );
        assert!(default.is_subset(&get(prefix, Mode::Ha)), "{prefix}");
    }
}

/// Two releases can share a cluster: the chart renders nothing cluster-scoped, and the
/// Roles it puts into other namespaces (the Secrets target) carry release and namespace.
#[test]
fn releases_share_a_cluster_without_name_clashes() {
    let secrets =
        |r: Render| r.set("kubernetesSecrets.enabled", "true").set_json("kubernetesSecrets.namespaces", &serde_json::json!(["apps"]));
    let renders = [
        secrets(Render::mode(Mode::Default).release("a")),
        secrets(Render::mode(Mode::Default).release("b")),
        secrets(Render::mode(Mode::Default).release("a").namespace("other")),
    ];
    let names: Vec<BTreeSet<String>> = render_all(&renders)
        .into_iter()
        .map(|r| {
            let r = r.unwrap();
            for o in &r.objects {
                assert!(!o.kind().starts_with("Cluster"), "cluster-scoped {}", o.id());
            }
            r.objects.iter().filter(|o| o.kind().starts_with("Role")).map(|o| o.id()).collect()
        })
        .collect();
    assert_eq!(names[0].len(), 2, "{names:?}");
    assert!(names[0].is_disjoint(&names[1]), "{names:?}");
    assert!(names[0].is_disjoint(&names[2]), "{names:?}");
}

/// The user-facing examples render the same objects as the modes, once the secrets the
/// examples leave out are passed with `--set`.
#[test]
fn chart_examples_render_like_their_modes() {
    let examples = certctl_scenarios::modes::chart_dir().join("examples");
    let renders: Vec<Render> = Mode::ALL
        .into_iter()
        .map(|m| {
            let r = Render::new().values(examples.join(format!("{}.yaml", m.name()))).set("server.auth.apiKey", "k");
            if m == Mode::ExternalDb {
                r
            } else {
                r.set("postgresql.auth.password", "p")
            }
        })
        .collect();
    for (mode, r) in Mode::ALL.into_iter().zip(render_all(&renders)) {
        let r = r.unwrap_or_else(|e| panic!("example {mode}: {e}"));
        assert_eq!(r.kinds_and_names(), expected(mode), "example {mode}");
    }
}
