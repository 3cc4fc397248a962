//! Agents that keep their identity when their pod is replaced: `agent.kind=StatefulSet`
//! with a claim per pod for the key directory's parent (keys, certificates, the agent's
//! credential), kept on uninstall and scale-down. The default DaemonSet keeps its emptyDir.

mod support;

use certctl_scenarios::modes::Mode;
use certctl_scenarios::render::{Render, Rendered};
use serde_json::json;
use support::render_all;

const AGENT: &str = "c-certctl-agent";

fn renders(list: &[Render]) -> Vec<Rendered> {
    render_all(list).into_iter().enumerate().map(|(i, r)| r.unwrap_or_else(|e| panic!("render #{i} ({:?}): {e}", list[i].args()))).collect()
}

fn stateful() -> Render {
    Render::mode(Mode::Default).set("agent.kind", "StatefulSet").set("agent.persistence.enabled", "true")
}

#[test]
fn a_stateful_agent_keeps_its_key_directory_on_a_claim_per_pod() {
    let r = &renders(&[stateful()
        .set("agent.replicas", "3")
        .set("agent.persistence.storageClass", "fast")
        .set("agent.persistence.size", "16Mi")])[0];
    assert!(r.get("DaemonSet", AGENT).is_none(), "the DaemonSet is replaced, not added to");
    let sts = r.expect("StatefulSet", AGENT);
    assert_eq!(sts.at("/spec/replicas"), Some(&json!(3)));
    assert_eq!(sts.at("/spec/podManagementPolicy"), Some(&json!("Parallel")), "agents are independent");
    assert_eq!(
        sts.at("/spec/persistentVolumeClaimRetentionPolicy"),
        Some(&json!({"whenDeleted": "Retain", "whenScaled": "Retain"})),
        "uninstall and scale-down must keep each agent's credential"
    );
    assert_eq!(sts.at("/spec/serviceName"), Some(&json!(AGENT)));
    let claims = sts.at("/spec/volumeClaimTemplates").expect("volumeClaimTemplates");
    assert_eq!(claims.as_array().map(Vec::len), Some(1));
    let claim = &claims[0];
    assert_eq!(claim["metadata"]["name"], "keys");
    assert_eq!(claim["spec"]["accessModes"], json!(["ReadWriteOnce"]));
    assert_eq!(claim["spec"]["storageClassName"], "fast");
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "16Mi");
    let pod = sts.pod_spec().expect("pod spec");
    let volumes = pod["volumes"].as_array().expect("volumes");
    assert!(volumes.iter().all(|v| v["name"] != "keys"), "the claim, not an emptyDir, is the keys volume: {volumes:?}");
    let mounts = &sts.container("agent").expect("agent container")["volumeMounts"];
    assert!(
        mounts.as_array().into_iter().flatten().any(|m| m["name"] == "keys" && m["mountPath"] == "/var/lib/certctl"),
        "the claim is mounted at the key directory's parent: {mounts}"
    );
    let name = &sts.container("agent").unwrap()["env"][0];
    assert_eq!(name["name"], "CERTCTL_AGENT_NAME");
    assert_eq!(name["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name", "the stable pod name is the agent's name");
}

#[test]
fn the_default_agent_is_a_daemonset_with_an_emptydir_and_no_claim() {
    let r = &renders(&[Render::mode(Mode::Default)])[0];
    let ds = r.expect("DaemonSet", AGENT);
    assert!(ds.at("/spec/volumeClaimTemplates").is_none());
    assert!(ds.at("/spec/replicas").is_none());
    let volumes = &ds.pod_spec().unwrap()["volumes"];
    assert!(volumes.as_array().into_iter().flatten().any(|v| v["name"] == "keys" && v["emptyDir"] == json!({})), "{volumes}");
    assert!(r.get("StatefulSet", AGENT).is_none());
}

#[test]
fn an_unknown_agent_kind_is_refused_by_the_schema() {
    let err = render_all(&[Render::mode(Mode::Default).set("agent.kind", "ReplicaSet")]).remove(0).expect_err("ReplicaSet must be refused");
    let text = err.to_string();
    assert!(text.contains("agent.kind") || text.contains("/agent/kind"), "the refusal names the key: {text}");
}
