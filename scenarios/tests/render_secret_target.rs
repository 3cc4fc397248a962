//! The Secrets target's permission model as rendered: off, nothing (no RBAC, no token, no
//! API egress); on, the agents alone get a token and their own ServiceAccount, a Role per
//! listed namespace that allows creating and patching Secrets and nothing else, and egress
//! to the Kubernetes API only. The server never gets a token.

mod support;

use certctl_scenarios::modes::Mode;
use certctl_scenarios::render::{Render, Rendered};
use serde_json::json;
use support::render_all;

const F: &str = "c-certctl";

fn renders(list: &[Render]) -> Vec<Rendered> {
    render_all(list).into_iter().enumerate().map(|(i, r)| r.unwrap_or_else(|e| panic!("render #{i} ({:?}): {e}", list[i].args()))).collect()
}

fn with_policy(r: Render) -> Render {
    r.set("networkPolicy.enabled", "true").set("networkPolicy.agent.enabled", "true")
}

fn secrets_on(r: Render) -> Render {
    r.set("kubernetesSecrets.enabled", "true")
        .set_json("kubernetesSecrets.namespaces", &json!(["apps", "web"]))
        .set_json("kubernetesSecrets.apiServer.cidrs", &json!(["10.96.0.1/32", "172.18.0.2/32"]))
}

fn agent_egress(r: &Rendered) -> Vec<serde_json::Value> {
    r.expect("NetworkPolicy", &format!("{F}-agent")).at("/spec/egress").and_then(|e| e.as_array()).cloned().unwrap_or_default()
}

fn token_mounted(r: &Rendered, kind: &str, name: &str) -> serde_json::Value {
    r.expect(kind, name).pod_spec().map_or(json!(null), |p| p["automountServiceAccountToken"].clone())
}

#[test]
fn off_there_is_no_rbac_no_token_and_no_api_egress() {
    let r = &renders(&[with_policy(Render::mode(Mode::Default))])[0];
    for kind in ["Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"] {
        assert_eq!(r.of_kind(kind).count(), 0, "{kind} rendered with the Secrets target off");
    }
    assert_eq!(token_mounted(r, "DaemonSet", &format!("{F}-agent")), json!(false));
    assert_eq!(token_mounted(r, "Deployment", &format!("{F}-server")), json!(false));
    assert_eq!(r.of_kind("ServiceAccount").count(), 1, "one shared ServiceAccount, no token");
    let egress = agent_egress(r);
    assert!(egress.iter().all(|rule| !rule.to_string().contains("ipBlock")), "agent egress reaches addresses: {egress:?}");
    let config = r.expect("ConfigMap", &format!("{F}-server")).at("/data").unwrap().to_string();
    assert!(!config.contains("KUBERNETES"), "{config}");
}

#[test]
fn on_the_agents_alone_may_create_and_patch_secrets_in_the_listed_namespaces() {
    let r = &renders(&[with_policy(secrets_on(Render::mode(Mode::Default)))])[0];
    let role_name = format!("{F}-certctl-secrets");
    let roles: Vec<_> = r.of_kind("Role").collect();
    assert_eq!(roles.len(), 2, "one Role per listed namespace");
    for ns in ["apps", "web"] {
        let role = roles.iter().find(|o| o.at("/metadata/namespace") == Some(&json!(ns))).unwrap_or_else(|| panic!("no Role in {ns}"));
        assert_eq!(role.name(), role_name);
        assert_eq!(
            role.at("/rules"),
            Some(&json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "patch"]}])),
            "create and patch only: no get/list/watch to read other Secrets, no delete"
        );
        let binding = r
            .of_kind("RoleBinding")
            .find(|o| o.at("/metadata/namespace") == Some(&json!(ns)))
            .unwrap_or_else(|| panic!("no RoleBinding in {ns}"));
        assert_eq!(binding.at("/roleRef"), Some(&json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role_name})));
        assert_eq!(
            binding.at("/subjects"),
            Some(&json!([{"kind": "ServiceAccount", "name": format!("{F}-agent"), "namespace": "certctl"}]))
        );
    }
    assert_eq!(r.of_kind("ClusterRole").count() + r.of_kind("ClusterRoleBinding").count(), 0, "nothing cluster-wide");

    let agent = r.expect("DaemonSet", &format!("{F}-agent")).pod_spec().unwrap();
    assert_eq!(
        (agent["serviceAccountName"].as_str(), agent["automountServiceAccountToken"].as_bool()),
        (Some("c-certctl-agent"), Some(true))
    );
    let server = r.expect("Deployment", &format!("{F}-server")).pod_spec().unwrap();
    assert_eq!((server["serviceAccountName"].as_str(), server["automountServiceAccountToken"].as_bool()), (Some(F), Some(false)));
    assert!(r.get("ServiceAccount", &format!("{F}-agent")).is_some(), "the agents' own ServiceAccount");

    assert_eq!(r.expect("ConfigMap", &format!("{F}-server")).at("/data/CERTCTL_KUBERNETES_SECRETS_NAMESPACES"), Some(&json!("apps,web")));
    assert_eq!(r.expect("ConfigMap", &format!("{F}-agent")).at("/data/CERTCTL_KUBERNETES_SECRETS_ENABLED"), Some(&json!("true")));

    let egress = agent_egress(r);
    let api = egress.iter().find(|rule| rule.to_string().contains("ipBlock")).expect("an egress rule to the Kubernetes API");
    assert_eq!(api["to"], json!([{"ipBlock": {"cidr": "10.96.0.1/32"}}, {"ipBlock": {"cidr": "172.18.0.2/32"}}]));
    assert_eq!(api["ports"], json!([{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]));
}

#[test]
fn namespace_names_are_checked_by_the_schema() {
    let r = secrets_on(Render::mode(Mode::Default)).set_json("kubernetesSecrets.namespaces", &json!(["Apps"]));
    let err = render_all(&[r]).remove(0).expect_err("an invalid namespace name renders");
    assert!(err.to_string().contains("kubernetesSecrets.namespaces"), "{err}");
}
