//! `helm template` and `helm lint` through the pinned helm, parsed into JSON objects.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use certctl_harness::tools::{PinnedVersions, Tool, ToolError};
use serde::Deserialize;
use serde_json::Value;

use crate::modes::{chart_dir, Mode};

/// Errors of a render.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// helm could not be located.
    #[error("pinned helm unavailable")]
    Tool(#[from] ToolError),
    /// helm could not be started.
    #[error("cannot run {helm}")]
    Spawn {
        /// The binary.
        helm: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// helm exited non-zero: a refusal, a schema error or a template bug.
    #[error("helm {args} failed: {stderr}")]
    Helm {
        /// The arguments, space-joined.
        args: String,
        /// helm's stderr.
        stderr: String,
    },
    /// helm printed something that is not YAML.
    #[error("helm output is not YAML")]
    Yaml(#[source] serde_yaml_ng::Error),
    /// A document is not a Kubernetes object.
    #[error("rendered document #{index} lacks {field}: {document}")]
    NotAnObject {
        /// Position in the output.
        index: usize,
        /// The missing field.
        field: &'static str,
        /// The document.
        document: String,
    },
}

impl RenderError {
    /// helm's stderr, when helm ran and failed.
    pub fn helm_stderr(&self) -> Option<&str> {
        match self {
            RenderError::Helm { stderr, .. } => Some(stderr),
            _ => None,
        }
    }
}

/// One rendered Kubernetes object.
#[derive(Debug, Clone)]
pub struct Object(pub Value);

impl Object {
    /// `kind`.
    pub fn kind(&self) -> &str {
        self.0["kind"].as_str().unwrap_or_default()
    }
    /// `apiVersion`.
    pub fn api_version(&self) -> &str {
        self.0["apiVersion"].as_str().unwrap_or_default()
    }
    /// `metadata.name`.
    pub fn name(&self) -> &str {
        self.0["metadata"]["name"].as_str().unwrap_or_default()
    }
    /// `Kind/name`, how failures name an object.
    pub fn id(&self) -> String {
        format!("{}/{}", self.kind(), self.name())
    }
    /// `Kind/namespace/name` when the template sets a namespace (objects it puts into other
    /// namespaces share a name), else [`Object::id`].
    pub fn placed_id(&self) -> String {
        match self.at("/metadata/namespace").and_then(Value::as_str) {
            Some(ns) => format!("{}/{ns}/{}", self.kind(), self.name()),
            None => self.id(),
        }
    }
    /// The value at a JSON pointer (`/spec/replicas`).
    pub fn at(&self, pointer: &str) -> Option<&Value> {
        self.0.pointer(pointer)
    }
    /// Pod template spec of a workload (`/spec/template/spec`).
    pub fn pod_spec(&self) -> Option<&Value> {
        self.at("/spec/template/spec")
    }
    /// The first container of a workload's pod template.
    pub fn container(&self, name: &str) -> Option<&Value> {
        self.pod_spec()?["containers"].as_array()?.iter().find(|c| c["name"] == name)
    }
}

/// The objects of one render.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// In helm's output order.
    pub objects: Vec<Object>,
    /// The raw YAML helm printed.
    pub yaml: String,
}

impl Rendered {
    /// Parses `helm template` output.
    ///
    /// # Errors
    /// [`RenderError::Yaml`] or [`RenderError::NotAnObject`].
    pub fn parse(yaml: &str) -> Result<Self, RenderError> {
        let mut objects = Vec::new();
        for (index, doc) in serde_yaml_ng::Deserializer::from_str(yaml).enumerate() {
            let value = Value::deserialize(doc).map_err(RenderError::Yaml)?;
            if value.is_null() {
                continue;
            }
            for field in ["apiVersion", "kind"] {
                if !value[field].is_string() {
                    return Err(RenderError::NotAnObject { index, field, document: value.to_string() });
                }
            }
            if !value["metadata"]["name"].is_string() {
                return Err(RenderError::NotAnObject { index, field: "metadata.name", document: value.to_string() });
            }
            objects.push(Object(value));
        }
        Ok(Self { objects, yaml: yaml.to_owned() })
    }

    /// Where `other` renders something else: the first object (by [`Object::placed_id`]) that one
    /// render lacks or renders differently, and the JSON pointer of the first difference.
    /// `None` when both hold the same objects.
    pub fn difference(&self, other: &Rendered) -> Option<String> {
        let ids = |r: &Rendered| r.objects.iter().map(Object::placed_id).collect::<BTreeSet<_>>();
        let (mine, theirs) = (ids(self), ids(other));
        if mine != theirs {
            let only = |a: &BTreeSet<String>, b: &BTreeSet<String>| a.difference(b).cloned().collect::<Vec<_>>().join(", ");
            return Some(format!("objects only in the first: [{}]; only in the second: [{}]", only(&mine, &theirs), only(&theirs, &mine)));
        }
        self.objects.iter().find_map(|a| {
            let b = other.objects.iter().find(|b| b.placed_id() == a.placed_id())?;
            first_difference(&a.0, &b.0, String::new()).map(|at| format!("{} differs at {at}", a.placed_id()))
        })
    }

    /// `(kind, name)` of every object.
    pub fn kinds_and_names(&self) -> BTreeSet<(String, String)> {
        self.objects.iter().map(|o| (o.kind().to_owned(), o.name().to_owned())).collect()
    }

    /// The object of this kind and name.
    pub fn get(&self, kind: &str, name: &str) -> Option<&Object> {
        self.objects.iter().find(|o| o.kind() == kind && o.name() == name)
    }

    /// Like [`Rendered::get`], but a missing object is a panic naming what was rendered.
    pub fn expect(&self, kind: &str, name: &str) -> &Object {
        self.get(kind, name).unwrap_or_else(|| panic!("{kind}/{name} not rendered; rendered: {:?}", self.kinds_and_names()))
    }

    /// Objects of one kind.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Object> + 'a {
        self.objects.iter().filter(move |o| o.kind() == kind)
    }
}

/// The JSON pointer of the first place `a` and `b` differ, with both values there.
fn first_difference(a: &Value, b: &Value, at: String) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                let path = format!("{at}/{k}");
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => first_difference(p, q, path),
                    (p, q) => Some(format!("{path}: {} vs {}", shown(p), shown(q))),
                }
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            x.iter().zip(y).enumerate().find_map(|(i, (p, q))| first_difference(p, q, format!("{at}/{i}")))
        }
        _ if a == b => None,
        _ => Some(format!("{}: {a} vs {b}", if at.is_empty() { "/" } else { &at })),
    }
}

fn shown(v: Option<&Value>) -> String {
    v.map_or_else(|| "(absent)".to_owned(), Value::to_string)
}

/// A `helm template` invocation (builder).
#[derive(Debug, Clone)]
pub struct Render {
    release: String,
    namespace: String,
    chart: PathBuf,
    kube_version: Option<String>,
    args: Vec<String>,
}

impl Default for Render {
    fn default() -> Self {
        Self::new()
    }
}

impl Render {
    /// Release `c` in namespace `certctl`, the chart of this workspace, no values.
    pub fn new() -> Self {
        Self { release: "c".into(), namespace: "certctl".into(), chart: chart_dir(), kube_version: None, args: Vec::new() }
    }

    /// The same, with a mode's values file.
    pub fn mode(mode: Mode) -> Self {
        Self::new().values(mode.values_file())
    }

    /// Release name.
    pub fn release(mut self, release: &str) -> Self {
        release.clone_into(&mut self.release);
        self
    }

    /// Namespace.
    pub fn namespace(mut self, namespace: &str) -> Self {
        namespace.clone_into(&mut self.namespace);
        self
    }

    /// Chart directory (default `chart/`).
    pub fn chart(mut self, chart: &Path) -> Self {
        self.chart = chart.to_owned();
        self
    }

    /// `-f FILE`.
    pub fn values(mut self, file: impl AsRef<Path>) -> Self {
        self.args.push("-f".into());
        self.args.push(file.as_ref().display().to_string());
        self
    }

    /// `--set KEY=VALUE`.
    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.args.push("--set".into());
        self.args.push(format!("{key}={value}"));
        self
    }

    /// `--set-json KEY=JSON`.
    pub fn set_json(mut self, key: &str, json: &Value) -> Self {
        self.args.push("--set-json".into());
        self.args.push(format!("{key}={json}"));
        self
    }

    /// `--kube-version`, instead of the pinned cluster version.
    pub fn kube_version(mut self, version: &str) -> Self {
        self.kube_version = Some(version.to_owned());
        self
    }

    /// The full argument list after `helm`.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "template".to_owned(),
            self.release.clone(),
            self.chart.display().to_string(),
            "--namespace".to_owned(),
            self.namespace.clone(),
        ];
        // Render for the Kubernetes version the clusters run, whatever helm's default.
        let pinned = || PinnedVersions::load().ok().and_then(|pins| pins.get("KUBERNETES_VERSION").ok().map(str::to_owned));
        if let Some(v) = self.kube_version.clone().or_else(pinned) {
            args.push("--kube-version".into());
            args.push(v);
        }
        args.extend(self.args.iter().cloned());
        args
    }

    /// Runs `helm template` and parses the objects.
    ///
    /// # Errors
    /// [`RenderError::Helm`] carries helm's message when helm refuses.
    pub fn run(&self, helm: &Tool) -> Result<Rendered, RenderError> {
        let yaml = run_helm(helm, &self.args())?;
        Rendered::parse(&yaml)
    }
}

/// Runs helm with `args`; its stdout on success.
///
/// # Errors
/// [`RenderError::Spawn`] or [`RenderError::Helm`].
pub fn run_helm(helm: &Tool, args: &[String]) -> Result<String, RenderError> {
    let out =
        Command::new(helm.path()).args(args).output().map_err(|source| RenderError::Spawn { helm: helm.path().to_owned(), source })?;
    if !out.status.success() {
        return Err(RenderError::Helm { args: args.join(" "), stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned() });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `helm lint --strict` of the chart with a values file; helm's output on success.
///
/// # Errors
/// [`RenderError::Helm`] with the lint findings.
pub fn lint(helm: &Tool, values: &Path) -> Result<String, RenderError> {
    let args =
        vec!["lint".to_owned(), "--strict".to_owned(), chart_dir().display().to_string(), "-f".to_owned(), values.display().to_string()];
    run_helm(helm, &args)
}

#[cfg(test)]
mod tests {
    use super::Rendered;

    fn parse(yaml: &str) -> Rendered {
        Rendered::parse(yaml).unwrap()
    }

    #[test]
    fn renders_with_the_same_objects_do_not_differ() {
        let a = "kind: ConfigMap\napiVersion: v1\nmetadata: {name: a}\ndata: {x: '1'}\n---\nkind: Secret\napiVersion: v1\nmetadata: {name: s}\n";
        let b = "kind: Secret\napiVersion: v1\nmetadata: {name: s}\n---\nkind: ConfigMap\napiVersion: v1\nmetadata: {name: a}\ndata: {x: '1'}\n";
        assert_eq!(parse(a).difference(&parse(b)), None);
    }

    #[test]
    fn a_difference_names_the_object_and_the_pointer() {
        let a = parse("kind: Deployment\napiVersion: apps/v1\nmetadata: {name: d}\nspec: {template: {spec: {containers: [{name: s, env: [{name: A}]}]}}}\n");
        let b = parse("kind: Deployment\napiVersion: apps/v1\nmetadata: {name: d}\nspec: {template: {spec: {containers: [{name: s, env: [{name: B}]}]}}}\n");
        assert_eq!(a.difference(&b).unwrap(), r#"Deployment/d differs at /spec/template/spec/containers/0/env/0/name: "A" vs "B""#);
        let c = parse("kind: Deployment\napiVersion: apps/v1\nmetadata: {name: d, labels: {x: y}}\n");
        let d = parse("kind: Deployment\napiVersion: apps/v1\nmetadata: {name: d}\n");
        assert_eq!(c.difference(&d).unwrap(), r#"Deployment/d differs at /metadata/labels: {"x":"y"} vs (absent)"#);
    }

    #[test]
    fn a_missing_object_is_named() {
        let a = parse("kind: Secret\napiVersion: v1\nmetadata: {name: s}\n---\nkind: Service\napiVersion: v1\nmetadata: {name: svc}\n");
        let b = parse("kind: Secret\napiVersion: v1\nmetadata: {name: s}\n");
        assert_eq!(a.difference(&b).unwrap(), "objects only in the first: [Service/svc]; only in the second: []");
    }
}
