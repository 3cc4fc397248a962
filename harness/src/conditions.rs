//! Named conditions on Kubernetes objects, awaited with a deadline that says
//! what it last saw (after kube-runtime's `Condition` and e2e-framework's
//! `wait.For`): `await_condition(&crds, name, crd_established(), ..)`.

use std::fmt::Debug;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject};
use serde::de::DeserializeOwned;

use crate::wait::{wait_until, Deadline, Poll, WaitError};

/// A check of one object: `Ok` when it holds, else what was seen.
type Check<K> = Box<dyn Fn(&K) -> Result<(), String> + Send + Sync>;

/// A condition on one object, named for the wait's messages.
pub struct Condition<K> {
    what: String,
    check: Check<K>,
}

impl<K> Condition<K> {
    /// A condition named `what` (read as "waiting for <name> <what>").
    ///
    /// # Example
    /// ```
    /// use certctl_harness::conditions::Condition;
    /// let has_name = Condition::<k8s_openapi::api::core::v1::Pod>::new("to have a name", |p| p.metadata.name.as_ref().map(drop).ok_or("no name".into()));
    /// assert_eq!(has_name.what(), "to have a name");
    /// ```
    pub fn new(what: &str, check: impl Fn(&K) -> Result<(), String> + Send + Sync + 'static) -> Self {
        Self { what: what.into(), check: Box::new(check) }
    }

    /// What the condition awaits.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// Whether `object` meets it; else what was seen.
    ///
    /// # Errors
    /// The observation that does not meet the condition.
    pub fn holds(&self, object: &K) -> Result<(), String> {
        (self.check)(object)
    }
}

/// Waits until object `name` exists and meets `condition`; returns it.
///
/// # Errors
/// [`WaitError`] with the last observation (or "does not exist").
///
/// # Example
/// ```no_run
/// # async fn f(client: kube::Client) -> Result<(), certctl_harness::wait::WaitError> {
/// use certctl_harness::conditions::{await_condition, crd_established};
/// let crds = kube::Api::all(client);
/// await_condition(&crds, "servicemonitors.monitoring.coreos.com", &crd_established(), certctl_harness::wait::Deadline::secs(60)).await?;
/// # Ok(()) }
/// ```
pub async fn await_condition<K>(api: &Api<K>, name: &str, condition: &Condition<K>, deadline: Deadline) -> Result<K, WaitError>
where
    K: Clone + DeserializeOwned + Debug,
{
    let what = format!("{name} {}", condition.what);
    wait_until(&what, deadline, || async {
        Ok::<_, kube::Error>(match api.get_opt(name).await? {
            None => Poll::Pending("it does not exist".into()),
            Some(object) => match condition.holds(&object) {
                Ok(()) => Poll::Ready(object),
                Err(seen) => Poll::Pending(seen),
            },
        })
    })
    .await
}

/// Conditions as `type=status` strings, for what-was-seen messages.
fn seen(conditions: impl Iterator<Item = (String, String)>) -> String {
    let list: Vec<String> = conditions.map(|(t, s)| format!("{t}={s}")).collect();
    if list.is_empty() {
        "no conditions yet".into()
    } else {
        format!("conditions {}", list.join(", "))
    }
}

/// A CRD whose `Established` condition is True.
///
/// # Example
/// ```
/// let crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
///     serde_json::from_value(serde_json::json!({"metadata": {"name": "x"}, "spec": {"group": "g", "names": {"kind": "X", "plural": "xs"},
///         "scope": "Namespaced", "versions": []}, "status": {"conditions": [{"type": "Established", "status": "True"}]}})).unwrap();
/// assert!(certctl_harness::conditions::crd_established().holds(&crd).is_ok());
/// ```
pub fn crd_established() -> Condition<CustomResourceDefinition> {
    Condition::new("to be Established", |crd: &CustomResourceDefinition| {
        let conditions = crd.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        if conditions.iter().any(|c| c.type_ == "Established" && c.status == "True") {
            Ok(())
        } else {
            Err(seen(conditions.into_iter().map(|c| (c.type_, c.status))))
        }
    })
}

/// A custom resource (cert-manager's Certificate, an Issuer) whose status
/// condition `type_` is True.
///
/// # Example
/// ```
/// let cert: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
///     "metadata": {"name": "c"}, "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Issuing"}]}})).unwrap();
/// let err = certctl_harness::conditions::status_condition("Ready").holds(&cert).unwrap_err();
/// assert!(err.contains("Ready=False"), "{err}");
/// ```
pub fn status_condition(type_: &'static str) -> Condition<DynamicObject> {
    Condition::new(&format!("to be {type_}"), move |object: &DynamicObject| {
        let conditions = object.data["status"]["conditions"].as_array().cloned().unwrap_or_default();
        let text = |c: &serde_json::Value, k: &str| c[k].as_str().unwrap_or_default().to_string();
        if conditions.iter().any(|c| c["type"] == type_ && c["status"] == "True") {
            Ok(())
        } else {
            Err(seen(
                conditions.iter().map(|c| (text(c, "type"), format!("{} {}", text(c, "status"), text(c, "reason")).trim().to_string())),
            ))
        }
    })
}

/// A PodDisruptionBudget that has observed its spec and sees `healthy`
/// pods with `allowed` disruptions.
///
/// # Example
/// ```
/// let pdb: k8s_openapi::api::policy::v1::PodDisruptionBudget = serde_json::from_value(serde_json::json!({
///     "metadata": {"name": "p", "generation": 1},
///     "status": {"observedGeneration": 1, "currentHealthy": 3, "desiredHealthy": 1, "disruptionsAllowed": 2, "expectedPods": 3}})).unwrap();
/// assert!(certctl_harness::conditions::budget_allows(3, 2).holds(&pdb).is_ok());
/// assert!(certctl_harness::conditions::budget_allows(3, 1).holds(&pdb).is_err());
/// ```
pub fn budget_allows(healthy: i32, allowed: i32) -> Condition<PodDisruptionBudget> {
    Condition::new(&format!("to see {healthy} healthy and allow {allowed} disruptions"), move |pdb: &PodDisruptionBudget| {
        let generation = pdb.metadata.generation;
        let st = pdb.status.clone().unwrap_or_default();
        if st.observed_generation == generation && st.current_healthy == healthy && st.disruptions_allowed == allowed {
            Ok(())
        } else {
            Err(format!(
                "observedGeneration {:?}/{generation:?}, currentHealthy {}, desiredHealthy {}, disruptionsAllowed {}",
                st.observed_generation, st.current_healthy, st.desired_healthy, st.disruptions_allowed
            ))
        }
    })
}
