//! Typed client for the server's agent API (see the API contract in docs/agent.md).

use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::tls::{self, TlsError};

/// Agent version sent with heartbeats.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What a request was for; used in log lines and errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// POST /agents
    Register,
    /// POST /agents/{id}/heartbeat
    Heartbeat,
    /// GET /agents/{id}/work
    PollWork,
    /// POST /agents/{id}/csr
    SubmitCsr,
    /// GET /agents/{id}/certificates/{cert_id}
    FetchCertificate,
    /// POST /agents/{id}/jobs/{job_id}/status
    ReportJob,
    /// POST /agents/{id}/certificates/{cert_id}/target
    ReportTarget,
}

impl Operation {
    /// The permission the server requires for this operation (named in 403 log lines).
    pub fn permission(self) -> &'static str {
        match self {
            Operation::Register => "agent.register",
            Operation::Heartbeat => "agent.heartbeat",
            Operation::PollWork | Operation::FetchCertificate | Operation::ReportJob | Operation::ReportTarget => "agent.job.poll",
            Operation::SubmitCsr => "agent.csr.submit",
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Operation::Register => "register",
            Operation::Heartbeat => "heartbeat",
            Operation::PollWork => "poll work",
            Operation::SubmitCsr => "submit CSR",
            Operation::FetchCertificate => "fetch certificate",
            Operation::ReportJob => "report job status",
            Operation::ReportTarget => "report Secret target status",
        })
    }
}

/// A failed API call.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No HTTP response (DNS, connect, TLS, timeout).
    #[error("{op}: request to the server failed")]
    Transport {
        /// The operation.
        op: Operation,
        /// The underlying error (its chain says connect/TLS/timeout).
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error status.
    #[error("{op}: server answered HTTP {status} {code}: {message}")]
    Status {
        /// The operation.
        op: Operation,
        /// HTTP status.
        status: StatusCode,
        /// `error.code` from the body, or empty.
        code: String,
        /// `error.message` from the body, or the raw body.
        message: String,
    },
    /// A success response whose body is not what the contract says.
    #[error("{op}: unexpected response body from the server")]
    Decode {
        /// The operation.
        op: Operation,
        /// The parse error.
        #[source]
        source: reqwest::Error,
    },
    /// The TLS client could not be set up.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The HTTP client could not be built.
    #[error("building the HTTP client failed")]
    Client(#[source] reqwest::Error),
}

impl ApiError {
    /// Whether the server refused this agent's credential (or its absence).
    pub fn is_credential_refused(&self) -> bool {
        matches!(self, ApiError::Status { code, .. } if code == CREDENTIAL_REFUSED)
    }

    /// The HTTP status, if the server answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Agent as returned by registration.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct AgentRecord {
    /// Server-assigned id.
    pub id: String,
    /// The registered name.
    pub name: String,
    /// `active` or `retired`.
    #[serde(default)]
    pub status: String,
    /// The agent's credential, present only when the server just issued it (first
    /// registration, or a claim of an agent that had none).
    #[serde(default)]
    pub credential: Option<String>,
}

/// One pending job.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Job {
    /// Job id.
    pub id: String,
    /// Job type; the agent handles `csr`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Certificate the job issues.
    pub certificate_id: String,
    /// Requested CN.
    pub common_name: String,
    /// Requested SANs.
    #[serde(default)]
    pub sans: Vec<String>,
    /// The Secret to keep the certificate in, if the certificate names one.
    #[serde(default)]
    pub target: Option<SecretTarget>,
}

/// Where a certificate is to be kept as a `kubernetes.io/tls` Secret.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct SecretTarget {
    /// Namespace.
    pub namespace: String,
    /// Secret name.
    pub name: String,
}

/// The body of a Secret target report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetReport {
    /// `written` or `failed`.
    pub status: &'static str,
    /// The serial written, or the one that could not be.
    pub serial: String,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Deserialize)]
struct WorkResponse {
    jobs: Vec<Job>,
}

/// An issued certificate.
#[derive(Debug, Clone, Deserialize)]
pub struct IssuedCertificate {
    /// Certificate id.
    pub certificate_id: String,
    /// Leaf certificate PEM.
    pub certificate_pem: String,
    /// Issuing CA PEM.
    #[serde(default)]
    pub ca_pem: String,
    /// Serial (hex).
    #[serde(default)]
    pub serial: String,
    /// Expiry (RFC 3339).
    #[serde(default)]
    pub not_after: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// Request header carrying the agent credential (see docs/api.md, "Agent identity").
pub const CREDENTIAL_HEADER: &str = "certctl-agent-credential";

/// Error code of a refused agent credential.
pub const CREDENTIAL_REFUSED: &str = "agent_credential_invalid";

/// HTTP client for the agent API: TLS 1.3, trusting only the configured bundle.
#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: Url,
    api_key: String,
    credential: Option<String>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient").field("base", &self.base).finish_non_exhaustive()
    }
}

impl ApiClient {
    /// Builds the client from the configuration.
    ///
    /// # Errors
    /// [`ApiError::Tls`] if the CA bundle is unusable, [`ApiError::Client`] otherwise.
    pub fn new(config: &Config) -> Result<Self, ApiError> {
        let tls = match (&config.ca_bundle_path, config.insecure_skip_verify) {
            (_, true) => tls::client_config_skipping_verification()?,
            (Some(path), false) => tls::client_config_trusting(path)?,
            (None, false) => {
                unreachable!("Config refuses a missing bundle unless verification is skipped")
            }
        };
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .https_only(true)
            .no_proxy()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(std::time::Duration::from_secs(10)))
            .user_agent(concat!("certctl-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ApiError::Client)?;
        Ok(Self { http, base: config.api_base.clone(), api_key: config.api_key.clone(), credential: None })
    }

    /// Sets the agent credential sent with every request from now on.
    pub fn set_credential(&mut self, credential: Option<String>) {
        self.credential = credential;
    }

    /// Registers this agent, or re-registers it by name presenting its credential.
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn register(&self, name: &str) -> Result<AgentRecord, ApiError> {
        let hostname = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty());
        let body = RegisterBody { name, hostname: hostname.as_deref() };
        self.call(Operation::Register, Method::POST, "agents", Some(&body)).await
    }

    /// Sends a heartbeat.
    ///
    /// # Errors
    /// [`ApiError`]; HTTP 410 means the agent was retired.
    pub async fn heartbeat(&self, agent_id: &str) -> Result<(), ApiError> {
        let body = serde_json::json!({ "version": VERSION });
        let path = format!("agents/{agent_id}/heartbeat");
        self.call::<serde_json::Value>(Operation::Heartbeat, Method::POST, &path, Some(&body)).await.map(drop)
    }

    /// Lists the agent's pending jobs.
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn poll_work(&self, agent_id: &str) -> Result<Vec<Job>, ApiError> {
        let path = format!("agents/{agent_id}/work");
        let work: WorkResponse = self.call(Operation::PollWork, Method::GET, &path, None::<&()>).await?;
        Ok(work.jobs)
    }

    /// Submits a CSR for a job.
    ///
    /// # Errors
    /// [`ApiError`]; 400 `invalid_csr` carries the server's reason.
    pub async fn submit_csr(&self, agent_id: &str, job: &Job, csr_pem: &str) -> Result<(), ApiError> {
        let body = serde_json::json!({ "job_id": job.id, "certificate_id": job.certificate_id, "csr_pem": csr_pem });
        let path = format!("agents/{agent_id}/csr");
        self.call::<serde_json::Value>(Operation::SubmitCsr, Method::POST, &path, Some(&body)).await.map(drop)
    }

    /// Fetches an issued certificate; 404 while it is not issued yet.
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn fetch_certificate(&self, agent_id: &str, certificate_id: &str) -> Result<IssuedCertificate, ApiError> {
        let path = format!("agents/{agent_id}/certificates/{certificate_id}");
        self.call(Operation::FetchCertificate, Method::GET, &path, None::<&()>).await
    }

    /// Reports a job as completed or failed.
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn report_job(&self, agent_id: &str, job_id: &str, completed: bool, message: &str) -> Result<(), ApiError> {
        let status = if completed { "completed" } else { "failed" };
        let body = serde_json::json!({ "status": status, "message": message });
        let path = format!("agents/{agent_id}/jobs/{job_id}/status");
        self.call::<serde_json::Value>(Operation::ReportJob, Method::POST, &path, Some(&body)).await.map(drop)
    }

    /// Tells the server how writing a certificate's Secret went.
    ///
    /// # Errors
    /// Transport failure or a non-2xx answer.
    pub async fn report_target(&self, agent_id: &str, certificate_id: &str, report: &TargetReport) -> Result<(), ApiError> {
        let path = format!("agents/{agent_id}/certificates/{certificate_id}/target");
        self.call::<serde_json::Value>(Operation::ReportTarget, Method::POST, &path, Some(report)).await.map(drop)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        op: Operation,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ApiError> {
        // Path segments come from the server (ids); join refuses nothing, so they were
        // validated as plain ids before they got here (see agent::valid_id).
        let url = self.base.join(path).expect("relative API path joins onto the base URL");
        let mut request = self.http.request(method, url).bearer_auth(&self.api_key);
        if let Some(credential) = &self.credential {
            request = request.header(CREDENTIAL_HEADER, credential);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|source| ApiError::Transport { op, source })?;
        let status = response.status();
        if status.is_success() {
            return response.json::<T>().await.map_err(|source| ApiError::Decode { op, source });
        }
        let text = response.text().await.unwrap_or_default();
        let (code, message) = match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => (body.error.code, body.error.message),
            Err(_) => (String::new(), text.chars().take(300).collect()),
        };
        Err(ApiError::Status { op, status, code, message })
    }
}

#[derive(Serialize)]
struct RegisterBody<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    hostname: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_response_parses_the_contract_example() {
        let body = r#"{"jobs":[{"id":"j1","type":"csr","certificate_id":"c1","common_name":"node-a","sans":["node-a"]}]}"#;
        let work: WorkResponse = serde_json::from_str(body).unwrap();
        assert_eq!(
            work.jobs,
            vec![Job {
                id: "j1".into(),
                kind: "csr".into(),
                certificate_id: "c1".into(),
                common_name: "node-a".into(),
                sans: vec!["node-a".into()],
                target: None,
            }]
        );
        let with_target = r#"{"jobs":[{"id":"j1","type":"csr","certificate_id":"c1","common_name":"web","sans":[],
            "target":{"namespace":"apps","name":"web-tls"}}]}"#;
        let work: WorkResponse = serde_json::from_str(with_target).unwrap();
        assert_eq!(work.jobs[0].target, Some(SecretTarget { namespace: "apps".into(), name: "web-tls".into() }));
    }

    #[test]
    fn every_operation_names_a_contract_permission() {
        for op in [
            Operation::Register,
            Operation::Heartbeat,
            Operation::PollWork,
            Operation::SubmitCsr,
            Operation::FetchCertificate,
            Operation::ReportJob,
            Operation::ReportTarget,
        ] {
            assert!(op.permission().starts_with("agent."), "{op}");
        }
    }
}
