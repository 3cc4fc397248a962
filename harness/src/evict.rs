//! Evictions through the Eviction API, returning the API's answer instead of
//! hiding it: 201 evicted, 429 refused by a PodDisruptionBudget, 500 when
//! several budgets select the pod (misconfiguration).

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, EvictParams};

/// The API's answer to an eviction.
///
/// # Example
/// ```
/// use certctl_harness::evict::Eviction;
/// let e = Eviction { code: 429, reason: "TooManyRequests".into(), message: "Cannot evict pod as it would violate the pod's disruption budget.".into() };
/// assert!(e.blocked_by_budget() && !e.evicted());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eviction {
    /// HTTP status code (201 on success).
    pub code: u16,
    /// The Status reason.
    pub reason: String,
    /// The Status message.
    pub message: String,
}

impl Eviction {
    /// The pod is being evicted.
    ///
    /// # Example
    /// ```
    /// # use certctl_harness::evict::Eviction;
    /// assert!(Eviction { code: 201, reason: String::new(), message: String::new() }.evicted());
    /// ```
    pub fn evicted(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// A budget refused it (429): the PDB held.
    ///
    /// # Example
    /// ```
    /// # use certctl_harness::evict::Eviction;
    /// assert!(!Eviction { code: 500, reason: String::new(), message: String::new() }.blocked_by_budget());
    /// ```
    pub fn blocked_by_budget(&self) -> bool {
        self.code == 429
    }
}

/// Asks the API to evict `pod`. Any answer the API gives — success or a
/// refusal — is an `Ok(Eviction)`; only transport failures are `Err`.
/// The client must not retry 429s (clients from [`crate::cluster::Cluster::client`]
/// do not): a retried refusal turns into a success once the budget recovers.
///
/// # Errors
/// Non-API errors (connection, serialization).
///
/// # Example
/// ```no_run
/// # async fn f(client: kube::Client) -> Result<(), kube::Error> {
/// let pods = kube::Api::namespaced(client, "ns");
/// let answer = certctl_harness::evict::evict(&pods, "c-certctl-server-abc").await?;
/// assert!(answer.blocked_by_budget(), "PDB should hold: {answer:?}");
/// # Ok(()) }
/// ```
pub async fn evict(pods: &Api<Pod>, pod: &str) -> Result<Eviction, kube::Error> {
    match pods.evict(pod, &EvictParams::default()).await {
        Ok(s) => Ok(Eviction { code: if s.code == 0 { 201 } else { s.code }, reason: s.reason, message: s.message }),
        Err(kube::Error::Api(s)) => Ok(Eviction { code: s.code, reason: s.reason.clone(), message: s.message.clone() }),
        Err(e) => Err(e),
    }
}
