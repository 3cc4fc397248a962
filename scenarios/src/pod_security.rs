//! The Pod Security Standards' "restricted" profile, checked over rendered pod templates.
//!
//! "restricted" includes "baseline"; both are checked here field by field as the Pod
//! Security admission of Kubernetes 1.34 evaluates a Linux pod at level "restricted",
//! version "latest" (where restricted replaces a baseline check, as with volumes,
//! capabilities and seccomp, only the stricter one applies). Containers means init,
//! regular and ephemeral containers. Not modelled: Windows pods (`spec.os.name: windows`)
//! and the user-namespace relaxations for `hostUsers: false`, which the chart never sets
//! (a pod that sets either is reported, so nothing passes unchecked).

use serde_json::Value;

use crate::render::{Object, Rendered};

/// One way a pod breaks the profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The profile's name for the check (`runAsNonRoot`, `capabilities_restricted`, ...).
    pub check: &'static str,
    /// Path of the offending field inside the pod template, like `.spec.containers[0].securityContext`.
    pub path: String,
    /// What is wrong.
    pub problem: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.check, self.path, self.problem)
    }
}

/// Kinds whose objects carry a pod template, and where it sits.
const POD_TEMPLATES: [(&str, &str); 7] = [
    ("Deployment", "/spec/template"),
    ("StatefulSet", "/spec/template"),
    ("DaemonSet", "/spec/template"),
    ("ReplicaSet", "/spec/template"),
    ("Job", "/spec/template"),
    ("CronJob", "/spec/jobTemplate/spec/template"),
    ("Pod", ""),
];

/// The pod template (`metadata` + `spec`) of an object, if its kind carries one.
pub fn pod_template(object: &Object) -> Option<&Value> {
    POD_TEMPLATES.iter().find(|(kind, _)| *kind == object.kind()).and_then(|(_, at)| object.at(at))
}

/// Every pod template of a render, by object id; an object that holds `containers`
/// anywhere but is of no kind known here is an error, so no pod escapes the check.
///
/// # Errors
/// The ids of objects that look like they carry pods but are not understood.
pub fn pod_templates(rendered: &Rendered) -> Result<Vec<(String, &Value)>, Vec<String>> {
    let mut found = Vec::new();
    let mut unknown = Vec::new();
    for object in &rendered.objects {
        match pod_template(object) {
            Some(template) => found.push((object.id(), template)),
            None if mentions_containers(&object.0) => unknown.push(object.id()),
            None => {}
        }
    }
    if unknown.is_empty() {
        Ok(found)
    } else {
        Err(unknown)
    }
}

fn mentions_containers(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.iter().any(|(k, v)| k == "containers" || mentions_containers(v)),
        Value::Array(a) => a.iter().any(mentions_containers),
        _ => false,
    }
}

/// Checks one pod template against "restricted"; empty when it passes.
pub fn restricted(template: &Value) -> Vec<Finding> {
    let mut out = Findings::default();
    let spec = &template["spec"];
    let pod_sc = &spec["securityContext"];
    let all = containers(spec);

    if spec["os"]["name"].as_str() == Some("windows") || spec["hostUsers"] == Value::Bool(false) {
        out.add("scope", ".spec", "a Windows or user-namespaced pod: this check models neither, so it cannot pass it");
    }

    // --- baseline ------------------------------------------------------------------------
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        if spec[field] == Value::Bool(true) {
            out.add("hostNamespaces", format!(".spec.{field}"), "must be unset or false");
        }
    }
    if pod_sc["windowsOptions"]["hostProcess"] == Value::Bool(true) {
        out.add("windowsHostProcess", ".spec.securityContext.windowsOptions.hostProcess", "must be unset or false");
    }
    check_se_linux(&mut out, pod_sc, ".spec.securityContext");
    check_app_armor(&mut out, template, pod_sc, ".spec.securityContext");
    for (i, sysctl) in pod_sc["sysctls"].as_array().into_iter().flatten().enumerate() {
        let name = sysctl["name"].as_str().unwrap_or_default();
        if !SAFE_SYSCTLS.contains(&name) {
            out.add("sysctls", format!(".spec.securityContext.sysctls[{i}]"), format!("{name:?} is not a safe sysctl"));
        }
    }
    for c in &all {
        let sc = &c.value["securityContext"];
        let at = format!("{}.securityContext", c.path);
        if sc["windowsOptions"]["hostProcess"] == Value::Bool(true) {
            out.add("windowsHostProcess", format!("{at}.windowsOptions.hostProcess"), "must be unset or false");
        }
        if sc["privileged"] == Value::Bool(true) {
            out.add("privileged", format!("{at}.privileged"), "must be unset or false");
        }
        if let Some(mount) = sc["procMount"].as_str() {
            if mount != "Default" {
                out.add("procMount", format!("{at}.procMount"), format!("{mount:?}, must be unset or Default"));
            }
        }
        check_se_linux(&mut out, sc, &at);
        check_app_armor(&mut out, template, sc, &at);
        for (j, port) in c.value["ports"].as_array().into_iter().flatten().enumerate() {
            if port["hostPort"].as_i64().unwrap_or(0) != 0 {
                out.add("hostPorts", format!("{}.ports[{j}].hostPort", c.path), "must be unset or 0");
            }
        }
        check_host_in_handlers(&mut out, c);
    }

    // --- restricted ----------------------------------------------------------------------
    for (i, volume) in spec["volumes"].as_array().into_iter().flatten().enumerate() {
        let sources: Vec<&String> = volume.as_object().into_iter().flat_map(|m| m.keys()).filter(|k| *k != "name").collect();
        if sources.len() != 1 || !ALLOWED_VOLUME_SOURCES.contains(&sources[0].as_str()) {
            let name = volume["name"].as_str().unwrap_or_default();
            out.add(
                "restrictedVolumes",
                format!(".spec.volumes[{i}]"),
                format!("volume {name:?} uses {sources:?}; allowed: one of {}", ALLOWED_VOLUME_SOURCES.join(", ")),
            );
        }
    }
    let pod_non_root = pod_sc["runAsNonRoot"].as_bool();
    if pod_non_root == Some(false) {
        out.add("runAsNonRoot", ".spec.securityContext.runAsNonRoot", "must not be false");
    }
    if pod_sc["runAsUser"].as_i64() == Some(0) {
        out.add("runAsUser", ".spec.securityContext.runAsUser", "must not be 0");
    }
    let pod_seccomp = pod_sc["seccompProfile"]["type"].as_str();
    if let Some(t) = pod_seccomp {
        if !RESTRICTED_SECCOMP.contains(&t) {
            out.add(
                "seccompProfile_restricted",
                ".spec.securityContext.seccompProfile.type",
                format!("{t:?}, must be RuntimeDefault or Localhost"),
            );
        }
    }
    for c in &all {
        let sc = &c.value["securityContext"];
        let at = format!("{}.securityContext", c.path);
        if sc["allowPrivilegeEscalation"] != Value::Bool(false) {
            out.add("allowPrivilegeEscalation", format!("{at}.allowPrivilegeEscalation"), "must be set to false");
        }
        match (sc["runAsNonRoot"].as_bool(), pod_non_root) {
            (Some(false), _) => out.add("runAsNonRoot", format!("{at}.runAsNonRoot"), "must not be false"),
            (None, None) => out.add("runAsNonRoot", format!("{at}.runAsNonRoot"), "must be true here or on the pod"),
            _ => {}
        }
        if sc["runAsUser"].as_i64() == Some(0) {
            out.add("runAsUser", format!("{at}.runAsUser"), "must not be 0");
        }
        match (sc["seccompProfile"]["type"].as_str(), pod_seccomp) {
            (Some(t), _) if !RESTRICTED_SECCOMP.contains(&t) => out.add(
                "seccompProfile_restricted",
                format!("{at}.seccompProfile.type"),
                format!("{t:?}, must be RuntimeDefault or Localhost"),
            ),
            (None, None) => out.add(
                "seccompProfile_restricted",
                format!("{at}.seccompProfile"),
                "must be RuntimeDefault or Localhost here or on the pod",
            ),
            _ => {}
        }
        let caps = &sc["capabilities"];
        let drop: Vec<&str> = caps["drop"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        if !drop.contains(&"ALL") {
            out.add("capabilities_restricted", format!("{at}.capabilities.drop"), format!("{drop:?} must contain ALL"));
        }
        for (j, cap) in caps["add"].as_array().into_iter().flatten().enumerate() {
            let cap = cap.as_str().unwrap_or_default();
            if cap != "NET_BIND_SERVICE" {
                out.add(
                    "capabilities_restricted",
                    format!("{at}.capabilities.add[{j}]"),
                    format!("{cap:?}: only NET_BIND_SERVICE may be added"),
                );
            }
        }
    }
    out.0
}

/// Volume sources "restricted" allows (`spec.volumes[*]`).
const ALLOWED_VOLUME_SOURCES: [&str; 9] =
    ["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "image", "persistentVolumeClaim", "projected", "secret"];
/// seccomp profile types "restricted" allows.
const RESTRICTED_SECCOMP: [&str; 2] = ["RuntimeDefault", "Localhost"];
/// SELinux types "baseline" allows (besides unset).
const SE_LINUX_TYPES: [&str; 4] = ["container_t", "container_init_t", "container_kvm_t", "container_engine_t"];
/// The sysctls "baseline" (1.32+) counts as safe.
const SAFE_SYSCTLS: [&str; 12] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];

#[derive(Default)]
struct Findings(Vec<Finding>);

impl Findings {
    fn add(&mut self, check: &'static str, path: impl Into<String>, problem: impl Into<String>) {
        self.0.push(Finding { check, path: path.into(), problem: problem.into() });
    }
}

/// A container of any of the three lists, with its path.
struct Container<'a> {
    path: String,
    value: &'a Value,
}

fn containers(spec: &Value) -> Vec<Container<'_>> {
    ["initContainers", "containers", "ephemeralContainers"]
        .into_iter()
        .flat_map(|list| {
            spec[list]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
                .map(move |(i, value)| Container { path: format!(".spec.{list}[{i}]"), value })
        })
        .collect()
}

fn check_se_linux(out: &mut Findings, sc: &Value, at: &str) {
    let se = &sc["seLinuxOptions"];
    if let Some(t) = se["type"].as_str() {
        if !t.is_empty() && !SE_LINUX_TYPES.contains(&t) {
            out.add("seLinuxOptions", format!("{at}.seLinuxOptions.type"), format!("{t:?} is not one of {}", SE_LINUX_TYPES.join(", ")));
        }
    }
    for field in ["user", "role"] {
        if se[field].as_str().is_some_and(|s| !s.is_empty()) {
            out.add("seLinuxOptions", format!("{at}.seLinuxOptions.{field}"), "must be unset");
        }
    }
}

fn check_app_armor(out: &mut Findings, template: &Value, sc: &Value, at: &str) {
    if let Some(t) = sc["appArmorProfile"]["type"].as_str() {
        if !["RuntimeDefault", "Localhost"].contains(&t) {
            out.add("appArmorProfile", format!("{at}.appArmorProfile.type"), format!("{t:?}, must be RuntimeDefault or Localhost"));
        }
    }
    // The annotation form applies pod-wide; checking it once, at pod scope, is enough.
    if at == ".spec.securityContext" {
        for (key, value) in template["metadata"]["annotations"].as_object().into_iter().flatten() {
            let value = value.as_str().unwrap_or_default();
            if key.starts_with("container.apparmor.security.beta.kubernetes.io/")
                && !(value.is_empty() || value == "runtime/default" || value.starts_with("localhost/"))
            {
                out.add(
                    "appArmorProfile",
                    format!(".metadata.annotations[{key:?}]"),
                    format!("{value:?}, must be runtime/default or localhost/*"),
                );
            }
        }
    }
}

/// Probes and lifecycle handlers may not name a host (they would reach other machines).
fn check_host_in_handlers(out: &mut Findings, c: &Container<'_>) {
    let handlers = [
        ("livenessProbe", &c.value["livenessProbe"]),
        ("readinessProbe", &c.value["readinessProbe"]),
        ("startupProbe", &c.value["startupProbe"]),
        ("lifecycle.postStart", &c.value["lifecycle"]["postStart"]),
        ("lifecycle.preStop", &c.value["lifecycle"]["preStop"]),
    ];
    for (name, handler) in handlers {
        for kind in ["httpGet", "tcpSocket"] {
            if handler[kind]["host"].as_str().is_some_and(|h| !h.is_empty()) {
                out.add("hostProbesAndHostLifecycle", format!("{}.{name}.{kind}.host", c.path), "must be unset or empty");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A pod that meets "restricted" with every field at the scope the chart uses.
    fn compliant() -> Value {
        json!({
            "metadata": {"labels": {"a": "b"}},
            "spec": {
                "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "c",
                    "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
                    "ports": [{"containerPort": 8443}],
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": 8443}},
                }],
                "volumes": [{"name": "tmp", "emptyDir": {}}, {"name": "data", "persistentVolumeClaim": {"claimName": "x"}}],
            },
        })
    }

    fn checks_of(pod: &Value) -> Vec<&'static str> {
        restricted(pod).iter().map(|f| f.check).collect()
    }

    #[test]
    fn a_compliant_pod_passes() {
        assert_eq!(restricted(&compliant()), vec![]);
    }

    /// Each rule, broken alone on the compliant pod, is reported by its own check.
    #[test]
    fn each_rule_catches_its_breakage() {
        let cases: Vec<(&str, &str, Value)> = vec![
            ("hostNamespaces", "/spec/hostNetwork", json!(true)),
            ("hostNamespaces", "/spec/hostPID", json!(true)),
            ("windowsHostProcess", "/spec/securityContext/windowsOptions", json!({"hostProcess": true})),
            ("privileged", "/spec/containers/0/securityContext/privileged", json!(true)),
            ("procMount", "/spec/containers/0/securityContext/procMount", json!("Unmasked")),
            ("seLinuxOptions", "/spec/securityContext/seLinuxOptions", json!({"type": "spc_t"})),
            ("seLinuxOptions", "/spec/containers/0/securityContext/seLinuxOptions", json!({"user": "root"})),
            ("appArmorProfile", "/spec/containers/0/securityContext/appArmorProfile", json!({"type": "Unconfined"})),
            ("appArmorProfile", "/metadata/annotations", json!({"container.apparmor.security.beta.kubernetes.io/c": "unconfined"})),
            ("sysctls", "/spec/securityContext/sysctls", json!([{"name": "kernel.msgmax", "value": "1"}])),
            ("hostPorts", "/spec/containers/0/ports/0/hostPort", json!(8443)),
            ("hostProbesAndHostLifecycle", "/spec/containers/0/readinessProbe/httpGet/host", json!("10.0.0.1")),
            ("restrictedVolumes", "/spec/volumes/0", json!({"name": "h", "hostPath": {"path": "/"}})),
            ("restrictedVolumes", "/spec/volumes/0", json!({"name": "n", "nfs": {"server": "s", "path": "/"}})),
            ("allowPrivilegeEscalation", "/spec/containers/0/securityContext/allowPrivilegeEscalation", json!(true)),
            ("runAsNonRoot", "/spec/securityContext/runAsNonRoot", json!(false)),
            ("runAsNonRoot", "/spec/containers/0/securityContext/runAsNonRoot", json!(false)),
            ("runAsUser", "/spec/securityContext/runAsUser", json!(0)),
            ("runAsUser", "/spec/containers/0/securityContext/runAsUser", json!(0)),
            ("seccompProfile_restricted", "/spec/securityContext/seccompProfile/type", json!("Unconfined")),
            ("seccompProfile_restricted", "/spec/containers/0/securityContext/seccompProfile", json!({"type": "Unconfined"})),
            ("capabilities_restricted", "/spec/containers/0/securityContext/capabilities/drop", json!(["NET_RAW"])),
            ("capabilities_restricted", "/spec/containers/0/securityContext/capabilities/add", json!(["CHOWN"])),
        ];
        for (want, pointer, value) in cases {
            let mut pod = compliant();
            set(&mut pod, pointer, value.clone());
            let got = checks_of(&pod);
            assert_eq!(got, vec![want], "{pointer} = {value}: {:?}", restricted(&pod));
        }
    }

    /// Fields the pod may leave to its containers: then every container must set them.
    #[test]
    fn pod_level_defaults_can_come_from_every_container_instead() {
        let mut pod = compliant();
        pod["spec"]["securityContext"] = json!({});
        assert_eq!(checks_of(&pod), vec!["runAsNonRoot", "seccompProfile_restricted"]);
        pod["spec"]["containers"][0]["securityContext"]["runAsNonRoot"] = json!(true);
        pod["spec"]["containers"][0]["securityContext"]["seccompProfile"] = json!({"type": "RuntimeDefault"});
        assert_eq!(restricted(&pod), vec![]);
        // An init container is a container too.
        pod["spec"]["initContainers"] =
            json!([{"name": "i", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]);
        assert_eq!(checks_of(&pod), vec!["runAsNonRoot", "seccompProfile_restricted"]);
    }

    #[test]
    fn adding_net_bind_service_is_allowed() {
        let mut pod = compliant();
        pod["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] = json!(["NET_BIND_SERVICE"]);
        assert_eq!(restricted(&pod), vec![]);
    }

    #[test]
    fn pods_it_does_not_model_are_reported() {
        let mut pod = compliant();
        pod["spec"]["hostUsers"] = json!(false);
        assert_eq!(checks_of(&pod), vec!["scope"]);
    }

    fn set(root: &mut Value, pointer: &str, value: Value) {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let mut cur = root;
        for k in parent.split('/').skip(1) {
            cur = match k.parse::<usize>() {
                Ok(i) => &mut cur[i],
                Err(_) => {
                    if cur.get(k).is_none() {
                        cur[k] = json!({});
                    }
                    &mut cur[k]
                }
            };
        }
        match key.parse::<usize>() {
            Ok(i) => cur[i] = value,
            Err(_) => cur[key] = value,
        }
    }
}
