//! Strict schema check of rendered objects: no field may sit where the Kubernetes API
//! would drop it.
//!
//! Built-in kinds are deserialized into their k8s-openapi type (the API's own schema,
//! generated from its OpenAPI document) and serialized back; any rendered field that does
//! not survive the round trip is unknown at that position, which is exactly what the API
//! server silently prunes (a `readOnlyRootFilesystem` at pod scope, an upstream defect).
//! Custom resources are validated against their CRD's `openAPIV3Schema`.

use k8s_openapi::api::{apps, batch, core, networking, policy, rbac};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::crd::CrdSchemas;
use crate::render::Object;

/// One problem with one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// `Kind/name` of the object.
    pub object: String,
    /// JSON path of the field, like `.spec.template.spec.securityContext.readOnlyRootFilesystem`.
    pub path: String,
    /// What is wrong.
    pub problem: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.object, self.path, self.problem)
    }
}

/// Checks one object; every violation found, empty when it is clean.
pub fn check(object: &Object, crds: &CrdSchemas) -> Vec<Violation> {
    let id = object.id();
    let v = &object.0;
    let found = match (object.api_version(), object.kind()) {
        ("v1", "ServiceAccount") => roundtrip::<core::v1::ServiceAccount>(v),
        ("v1", "ConfigMap") => roundtrip::<core::v1::ConfigMap>(v),
        ("v1", "Secret") => roundtrip::<core::v1::Secret>(v),
        ("v1", "Service") => roundtrip::<core::v1::Service>(v),
        ("apps/v1", "Deployment") => roundtrip::<apps::v1::Deployment>(v),
        ("apps/v1", "StatefulSet") => roundtrip::<apps::v1::StatefulSet>(v),
        ("apps/v1", "DaemonSet") => roundtrip::<apps::v1::DaemonSet>(v),
        ("batch/v1", "CronJob") => roundtrip::<batch::v1::CronJob>(v),
        ("rbac.authorization.k8s.io/v1", "Role") => roundtrip::<rbac::v1::Role>(v),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => roundtrip::<rbac::v1::RoleBinding>(v),
        ("networking.k8s.io/v1", "Ingress") => roundtrip::<networking::v1::Ingress>(v),
        ("networking.k8s.io/v1", "NetworkPolicy") => roundtrip::<networking::v1::NetworkPolicy>(v),
        ("policy/v1", "PodDisruptionBudget") => roundtrip::<policy::v1::PodDisruptionBudget>(v),
        (api_version, kind) => match crds.schema(api_version, kind) {
            Some(schema) => {
                let mut out = Vec::new();
                // metadata is ObjectMeta for every kind; CRD schemas leave it open.
                let meta = &v["metadata"];
                out.extend(
                    roundtrip_value::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>(meta)
                        .into_iter()
                        .map(|(p, why)| (format!(".metadata{p}"), why)),
                );
                let mut rest = v.clone();
                if let Some(map) = rest.as_object_mut() {
                    map.remove("metadata");
                }
                crate::crd::validate(schema, &rest, "", &mut out);
                out
            }
            None => vec![(String::new(), format!("no schema known for {api_version} {kind}: add it to the strict check"))],
        },
    };
    found
        .into_iter()
        .map(|(path, problem)| Violation { object: id.clone(), path: if path.is_empty() { ".".into() } else { path }, problem })
        .collect()
}

/// Deserializes into `T`, serializes back, and reports what did not survive.
fn roundtrip<T: DeserializeOwned + Serialize>(rendered: &Value) -> Vec<(String, String)> {
    roundtrip_value::<T>(rendered)
}

fn roundtrip_value<T: DeserializeOwned + Serialize>(rendered: &Value) -> Vec<(String, String)> {
    let typed: T = match serde_json::from_value(rendered.clone()) {
        Ok(t) => t,
        Err(e) => return vec![(String::new(), format!("does not match the API type: {e}"))],
    };
    let back = match serde_json::to_value(&typed) {
        Ok(v) => v,
        Err(e) => return vec![(String::new(), format!("cannot serialize back: {e}"))],
    };
    let mut out = Vec::new();
    diff(rendered, &back, "", &mut out);
    out
}

/// Every field of `rendered` must be present, with the same value, in `back`.
fn diff(rendered: &Value, back: &Value, path: &str, out: &mut Vec<(String, String)>) {
    match (rendered, back) {
        (Value::Object(r), Value::Object(b)) => {
            for (k, rv) in r {
                let p = format!("{path}.{k}");
                match b.get(k) {
                    Some(bv) => diff(rv, bv, &p, out),
                    None if rv.is_null() => out.push((p, "null value (the API drops it)".into())),
                    None => out.push((p, "unknown field at this position: the Kubernetes API would drop it".into())),
                }
            }
        }
        (Value::Array(r), Value::Array(b)) if r.len() == b.len() => {
            for (i, (rv, bv)) in r.iter().zip(b).enumerate() {
                diff(rv, bv, &format!("{path}[{i}]"), out);
            }
        }
        (r, b) if r == b => {}
        (r, b) => out.push((path.to_owned(), format!("rendered {r} but the API type reads it as {b}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(pod_security_context: Value) -> Object {
        Object(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d"},
            "spec": {
                "selector": {"matchLabels": {"a": "b"}},
                "template": {
                    "metadata": {"labels": {"a": "b"}},
                    "spec": {
                        "securityContext": pod_security_context,
                        "containers": [{"name": "c", "image": "i"}]
                    }
                }
            }
        }))
    }

    #[test]
    fn clean_object_passes() {
        let v = check(&deployment(json!({"runAsUser": 1000})), &CrdSchemas::empty());
        assert!(v.is_empty(), "{v:?}");
    }

    /// The upstream defect: a container-only field at pod scope is pruned by the API.
    #[test]
    fn container_field_at_pod_scope_is_caught_with_its_path() {
        let v = check(&deployment(json!({"runAsUser": 1000, "readOnlyRootFilesystem": true})), &CrdSchemas::empty());
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].path, ".spec.template.spec.securityContext.readOnlyRootFilesystem");
        assert_eq!(v[0].object, "Deployment/d");
    }

    #[test]
    fn wrong_type_is_caught() {
        let v = check(&deployment(json!({"runAsUser": "root"})), &CrdSchemas::empty());
        assert!(!v.is_empty());
        assert!(v[0].problem.contains("does not match the API type"), "{v:?}");
    }

    #[test]
    fn unknown_kind_is_a_violation_not_a_pass() {
        let o = Object(json!({"apiVersion": "x/v1", "kind": "Y", "metadata": {"name": "n"}}));
        let v = check(&o, &CrdSchemas::empty());
        assert!(v[0].problem.contains("no schema known"), "{v:?}");
    }
}
