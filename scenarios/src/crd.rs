//! CRD `openAPIV3Schema`s and a structural validator for custom resources.
//!
//! The CRDs come from the projects' own Go module zips, cached by `bash ci/tools.sh crds`
//! under `$CERTCTL_CACHE/crds/<project>/<version>/` (versions pinned in ci/versions.env).
//!
//! The validator follows the API server's structural-schema rules that decide whether a
//! field survives: unknown fields are pruned unless `x-kubernetes-preserve-unknown-fields`
//! or `additionalProperties` allow them, so here they are refused. It also checks `type`,
//! `required`, `enum`, `pattern`, lengths, bounds and `x-kubernetes-int-or-string`.
//! CEL rules (`x-kubernetes-validations`) and `oneOf`/`anyOf` constraints are not
//! evaluated (they cannot introduce fields in a structural schema).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use certctl_harness::tools::{cache_dir, PinnedVersions, ToolError};
use serde::Deserialize;
use serde_json::Value;

/// Errors loading CRDs.
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    /// The pins could not be read.
    #[error("cannot read the CRD pins")]
    Pins(#[from] ToolError),
    /// A CRD file is missing or unreadable.
    #[error("cannot read CRD {path}: run `bash ci/tools.sh crds` to fetch it")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A CRD file is not YAML.
    #[error("CRD {path} is not YAML")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// A CRD file holds no schema for a served version.
    #[error("CRD {path} holds no openAPIV3Schema")]
    NoSchema {
        /// The file.
        path: PathBuf,
    },
}

/// A CRD file `bash ci/tools.sh crds` caches (the render tier validates against them; the
/// live tier installs them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CachedCrd {
    /// cert-manager's `Certificate`.
    Certificate,
    /// prometheus-operator's `ServiceMonitor`.
    ServiceMonitor,
}

impl CachedCrd {
    /// Where the pinned version's file is cached (it may not exist yet).
    ///
    /// # Errors
    /// [`CrdError::Pins`] when ci/versions.env cannot be read.
    pub fn path(self) -> Result<PathBuf, CrdError> {
        let pins = PinnedVersions::load()?;
        let crds = cache_dir().join("crds");
        Ok(match self {
            Self::Certificate => {
                crds.join("cert-manager").join(pins.get("CERT_MANAGER_VERSION")?).join("cert-manager.io_certificates.yaml")
            }
            Self::ServiceMonitor => crds
                .join("prometheus-operator")
                .join(pins.get("PROMETHEUS_OPERATOR_VERSION")?)
                .join("monitoring.coreos.com_servicemonitors.yaml"),
        })
    }

    /// The file's text.
    ///
    /// # Errors
    /// [`CrdError::Read`] telling to run `bash ci/tools.sh crds` when it is missing.
    pub fn read(self) -> Result<String, CrdError> {
        let path = self.path()?;
        std::fs::read_to_string(&path).map_err(|source| CrdError::Read { path, source })
    }
}

/// Schemas keyed by (`group/version`, `Kind`).
#[derive(Debug, Clone, Default)]
pub struct CrdSchemas {
    schemas: BTreeMap<(String, String), Value>,
}

impl CrdSchemas {
    /// No CRDs.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The CRDs of the custom resources the chart renders (cert-manager Certificate,
    /// prometheus-operator ServiceMonitor) from the cache.
    ///
    /// # Errors
    /// [`CrdError::Read`] telling to run `bash ci/tools.sh crds` when one is missing.
    pub fn from_cache() -> Result<Self, CrdError> {
        let mut out = Self::empty();
        for f in [CachedCrd::Certificate.path()?, CachedCrd::ServiceMonitor.path()?] {
            out.load_file(&f)?;
        }
        Ok(out)
    }

    /// Adds every served version of the CRD(s) in `path`.
    ///
    /// # Errors
    /// [`CrdError`] when unreadable or schema-less.
    pub fn load_file(&mut self, path: &Path) -> Result<(), CrdError> {
        let text = std::fs::read_to_string(path).map_err(|source| CrdError::Read { path: path.to_owned(), source })?;
        let mut added = 0;
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let crd = Value::deserialize(doc).map_err(|source| CrdError::Yaml { path: path.to_owned(), source })?;
            let group = crd["spec"]["group"].as_str().unwrap_or_default();
            let kind = crd["spec"]["names"]["kind"].as_str().unwrap_or_default();
            for version in crd["spec"]["versions"].as_array().into_iter().flatten() {
                let schema = &version["schema"]["openAPIV3Schema"];
                if version["served"] == true && schema.is_object() {
                    let api_version = format!("{group}/{}", version["name"].as_str().unwrap_or_default());
                    self.schemas.insert((api_version, kind.to_owned()), schema.clone());
                    added += 1;
                }
            }
        }
        if added == 0 {
            return Err(CrdError::NoSchema { path: path.to_owned() });
        }
        Ok(())
    }

    /// The schema for an apiVersion and kind.
    pub fn schema(&self, api_version: &str, kind: &str) -> Option<&Value> {
        self.schemas.get(&(api_version.to_owned(), kind.to_owned()))
    }
}

/// Validates `value` against `schema`, appending `(path, problem)` pairs to `out`.
pub fn validate(schema: &Value, value: &Value, path: &str, out: &mut Vec<(String, String)>) {
    let mut err = |p: &str, m: String| out.push((p.to_owned(), m));
    if value.is_null() {
        if schema["nullable"] != true {
            err(path, "null is not allowed here (the API drops or refuses it)".into());
        }
        return;
    }
    if schema["x-kubernetes-int-or-string"] == true {
        if !(value.is_i64() || value.is_u64() || value.is_string()) {
            err(path, format!("expected an integer or string, got {value}"));
        }
        return;
    }
    if let Some(ty) = schema["type"].as_str() {
        let ok = match ty {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            _ => true,
        };
        if !ok {
            err(path, format!("expected {ty}, got {value}"));
            return;
        }
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            err(path, format!("{value} is not one of {}", Value::Array(allowed.clone())));
        }
    }
    match value {
        Value::Object(map) => {
            let props = schema["properties"].as_object();
            let additional = &schema["additionalProperties"];
            let preserve = schema["x-kubernetes-preserve-unknown-fields"] == true;
            for (k, v) in map {
                let p = format!("{path}.{k}");
                if let Some(s) = props.and_then(|ps| ps.get(k)) {
                    validate(s, v, &p, out);
                } else if additional.is_object() {
                    validate(additional, v, &p, out);
                } else if !(preserve || *additional == true) {
                    out.push((p, "unknown field at this position: the API would drop it".into()));
                }
            }
            for r in schema["required"].as_array().into_iter().flatten() {
                if let Some(r) = r.as_str() {
                    if !map.contains_key(r) {
                        out.push((format!("{path}.{r}"), "required field missing".into()));
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(min) = schema["minItems"].as_u64() {
                if (items.len() as u64) < min {
                    out.push((path.to_owned(), format!("fewer than {min} items")));
                }
            }
            if let Some(max) = schema["maxItems"].as_u64() {
                if items.len() as u64 > max {
                    out.push((path.to_owned(), format!("more than {max} items")));
                }
            }
            if schema["items"].is_object() {
                for (i, v) in items.iter().enumerate() {
                    validate(&schema["items"], v, &format!("{path}[{i}]"), out);
                }
            }
        }
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if let Some(min) = schema["minLength"].as_u64() {
                if len < min {
                    out.push((path.to_owned(), format!("shorter than {min}")));
                }
            }
            if let Some(max) = schema["maxLength"].as_u64() {
                if len > max {
                    out.push((path.to_owned(), format!("longer than {max}")));
                }
            }
            if let Some(pattern) = schema["pattern"].as_str() {
                match regex::Regex::new(pattern) {
                    Ok(re) if !re.is_match(s) => {
                        out.push((path.to_owned(), format!("{s:?} does not match {pattern}")));
                    }
                    Ok(_) => {}
                    Err(e) => out.push((path.to_owned(), format!("schema pattern unusable: {e}"))),
                }
            }
        }
        Value::Number(n) => {
            if let (Some(min), Some(x)) = (schema["minimum"].as_f64(), n.as_f64()) {
                if x < min {
                    out.push((path.to_owned(), format!("{x} is below {min}")));
                }
            }
            if let (Some(max), Some(x)) = (schema["maximum"].as_f64(), n.as_f64()) {
                if x > max {
                    out.push((path.to_owned(), format!("{x} is above {max}")));
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "required": ["spec"], "properties": {
            "apiVersion": {"type": "string"}, "kind": {"type": "string"},
            "spec": {"type": "object", "properties": {
                "interval": {"type": "string", "pattern": "^[0-9]+s$"},
                "kind": {"type": "string", "enum": ["A", "B"]},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "port": {"x-kubernetes-int-or-string": true},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
            }}
        }})
    }

    fn problems(v: Value) -> Vec<(String, String)> {
        let mut out = Vec::new();
        validate(&schema(), &v, "", &mut out);
        out
    }

    #[test]
    fn valid_object_passes() {
        let v = json!({"apiVersion": "x/v1", "kind": "K", "spec": {"interval": "30s",
            "kind": "A", "labels": {"a": "b"}, "port": "https", "free": {"any": 1}}});
        assert_eq!(problems(v), vec![]);
    }

    #[test]
    fn unknown_field_is_refused_with_its_path() {
        let p = problems(json!({"spec": {"intervall": "30s"}}));
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, ".spec.intervall");
    }

    #[test]
    fn type_enum_pattern_and_required_are_checked() {
        assert!(!problems(json!({"spec": {"interval": 30}})).is_empty());
        assert!(!problems(json!({"spec": {"interval": "30m"}})).is_empty());
        assert!(!problems(json!({"spec": {"kind": "C"}})).is_empty());
        assert!(!problems(json!({"spec": {"labels": {"a": 1}}})).is_empty());
        assert_eq!(problems(json!({}))[0].0, ".spec");
    }
}
