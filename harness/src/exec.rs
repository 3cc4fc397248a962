//! Run a command in a container and get its exit code, stdout and stderr
//! separately, the way `kubectl exec` shows them but as data.

use futures::future::join;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{Api, AttachParams};
use tokio::io::AsyncReadExt;

/// Errors running a command (not the command failing: that is an exit code).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The API refused or the stream broke.
    #[error("exec in {pod}/{container} failed: {source}")]
    Api {
        /// Pod.
        pod: String,
        /// Container.
        container: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
    /// The command never ran (e.g. not found in the image), per the runtime.
    #[error("exec of {command:?} in {pod}/{container} did not run: {message}")]
    NotStarted {
        /// Pod.
        pod: String,
        /// Container.
        container: String,
        /// The command.
        command: Vec<String>,
        /// The runtime's message.
        message: String,
    },
}

/// What a command did.
///
/// # Example
/// ```
/// let out = certctl_harness::exec::ExecOutput { code: 0, stdout: "hi\n".into(), stderr: String::new() };
/// assert!(out.success());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl ExecOutput {
    /// Exit code 0.
    ///
    /// # Example
    /// ```
    /// let out = certctl_harness::exec::ExecOutput { code: 1, stdout: String::new(), stderr: "Read-only file system".into() };
    /// assert!(!out.success());
    /// ```
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

/// Runs `command` in `container` of `pod` and waits for it.
///
/// # Errors
/// [`ExecError::Api`] for API/stream failures, [`ExecError::NotStarted`]
/// when the runtime could not start the command.
///
/// # Example
/// ```no_run
/// # async fn f(client: kube::Client) -> Result<(), certctl_harness::exec::ExecError> {
/// use k8s_openapi::api::core::v1::Pod;
/// let pods: kube::Api<Pod> = kube::Api::namespaced(client, "default-mode");
/// let out = certctl_harness::exec::exec(&pods, "c-certctl-server-0", "server", &["sh", "-c", "touch /x"]).await?;
/// assert_ne!(out.code, 0);
/// assert!(out.stderr.contains("Read-only file system"));
/// # Ok(()) }
/// ```
pub async fn exec(pods: &Api<Pod>, pod: &str, container: &str, command: &[&str]) -> Result<ExecOutput, ExecError> {
    let api_err = |source| ExecError::Api { pod: pod.to_string(), container: container.to_string(), source };
    let params = AttachParams::default().container(container).stdin(false).stdout(true).stderr(true);
    let mut attached = pods.exec(pod, command.iter().copied(), &params).await.map_err(api_err)?;
    let status = attached.take_status();
    let (mut out, mut err) = (attached.stdout(), attached.stderr());
    let read_out = async {
        let mut s = Vec::new();
        if let Some(r) = out.as_mut() {
            let _ = r.read_to_end(&mut s).await;
        }
        s
    };
    let read_err = async {
        let mut s = Vec::new();
        if let Some(r) = err.as_mut() {
            let _ = r.read_to_end(&mut s).await;
        }
        s
    };
    let (stdout, stderr) = join(read_out, read_err).await;
    let status = match status {
        Some(s) => s.await,
        None => None,
    };
    let _ = attached.join().await;
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    match exit_code(status.as_ref()) {
        Ok(code) => Ok(ExecOutput { code, stdout, stderr }),
        Err(message) => Err(ExecError::NotStarted {
            pod: pod.to_string(),
            container: container.to_string(),
            command: command.iter().map(|s| s.to_string()).collect(),
            message,
        }),
    }
}

/// The exit code in an exec's final status: `Success` -> 0, a `NonZeroExitCode`
/// failure -> its `ExitCode` cause; any other failure means it did not run.
fn exit_code(status: Option<&Status>) -> Result<i32, String> {
    let Some(s) = status else {
        return Err("the exec stream ended without a status".into());
    };
    if s.status.as_deref() == Some("Success") {
        return Ok(0);
    }
    let code = s
        .details
        .as_ref()
        .and_then(|d| d.causes.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.reason.as_deref() == Some("ExitCode")))
        .and_then(|c| c.message.as_ref())
        .and_then(|m| m.parse().ok());
    code.ok_or_else(|| s.message.clone().unwrap_or_else(|| format!("exec failed: {s:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(v: serde_json::Value) -> Status {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn exit_codes_from_status() {
        assert_eq!(exit_code(Some(&status(serde_json::json!({"status": "Success"})))), Ok(0));
        let failed = status(serde_json::json!({"status": "Failure", "reason": "NonZeroExitCode",
            "message": "command terminated with non-zero exit code: exit status 3",
            "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}}));
        assert_eq!(exit_code(Some(&failed)), Ok(3));
        let not_run = status(serde_json::json!({"status": "Failure", "reason": "InternalError",
            "message": "exec: \"nope\": executable file not found in $PATH"}));
        assert!(exit_code(Some(&not_run)).unwrap_err().contains("executable file not found"));
        assert!(exit_code(None).unwrap_err().contains("without a status"));
    }
}
