//! Container logs since a moment, current or previous container, so an
//! assertion sees only the lines emitted after the step that caused them.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, LogParams};

/// Which container instance to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instance {
    /// The running (or last) container.
    Current,
    /// The one before the last restart.
    Previous,
}

/// Log lines of `container` in `pod` emitted at or after `since` (all when
/// `None`).
///
/// # Errors
/// The API's error (e.g. 400 when there is no previous container).
///
/// # Example
/// ```no_run
/// # async fn f(client: kube::Client) -> Result<(), kube::Error> {
/// use certctl_harness::logs::{logs_since, Instance};
/// let pods = kube::Api::namespaced(client, "ns");
/// let mark = certctl_harness::logs::now();
/// // ... do something that should make the server log ...
/// let text = logs_since(&pods, "c-certctl-server-x", "server", Some(mark), Instance::Current).await?;
/// assert!(text.contains("SQLSTATE 28P01"));
/// # Ok(()) }
/// ```
pub async fn logs_since(
    pods: &Api<Pod>,
    pod: &str,
    container: &str,
    since: Option<Timestamp>,
    instance: Instance,
) -> Result<String, kube::Error> {
    let params = LogParams {
        container: Some(container.to_string()),
        previous: instance == Instance::Previous,
        since_time: since,
        ..LogParams::default()
    };
    pods.logs(pod, &params).await
}

/// The current moment, to pass to [`logs_since`] later. The API's
/// `sinceTime` has second precision, so this is truncated to the second
/// (a few lines from just before may appear, none after are lost).
///
/// # Example
/// ```
/// let t = certctl_harness::logs::now();
/// assert_eq!(t.subsec_nanosecond(), 0);
/// ```
pub fn now() -> Timestamp {
    let t = Timestamp::now();
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}
