//! The nightly workflow runs a leg for every Kubernetes version ci/versions.env pins
//! (the default and each of KUBERNETES_OTHER_VERSIONS) and one under Helm 4: a version
//! added to the pins without a leg would never be proven.

use std::path::Path;

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn pin(versions: &str, key: &str) -> String {
    versions
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("ci/versions.env has no {key}"))
        .trim_matches('"')
        .to_string()
}

/// `(kubernetes, helm)` of each `- {leg: ..., kubernetes: ..., helm: ...}` matrix line.
fn legs(workflow: &str) -> Vec<(String, String)> {
    let field = |line: &str, key: &str| -> String {
        let start = line.find(&format!("{key}: ")).unwrap_or_else(|| panic!("matrix line without {key}: {line}")) + key.len() + 2;
        line[start..].split([',', '}']).next().unwrap().trim().trim_matches('"').to_string()
    };
    workflow.lines().map(str::trim).filter(|l| l.starts_with("- {leg:")).map(|l| (field(l, "kubernetes"), field(l, "helm"))).collect()
}

#[test]
fn every_pinned_kubernetes_version_and_helm_4_has_a_nightly_leg() {
    let versions = read("ci/versions.env");
    let legs = legs(&read(".github/workflows/nightly.yml"));
    assert!(legs.contains(&(String::new(), "3".into())), "no leg for the default Kubernetes under Helm 3: {legs:?}");
    assert!(legs.contains(&(String::new(), "4".into())), "no leg for the default Kubernetes under Helm 4: {legs:?}");
    let others = pin(&versions, "KUBERNETES_OTHER_VERSIONS");
    for version in others.split_whitespace() {
        assert!(legs.iter().any(|(k, _)| k == version), "KUBERNETES_OTHER_VERSIONS pins {version}, nightly has no leg for it: {legs:?}");
    }
    for (k, _) in &legs {
        assert!(k.is_empty() || others.split_whitespace().any(|v| v == k), "nightly leg for {k}, which ci/versions.env does not pin");
    }
}
