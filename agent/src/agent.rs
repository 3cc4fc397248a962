//! The agent loop: register, heartbeat, poll for work, back off on failure, stop on
//! SIGTERM or retirement.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use reqwest::StatusCode;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::api::{AgentRecord, ApiClient, ApiError, Job, Operation};
use crate::backoff::Backoff;
use crate::config::Config;
use crate::crypto::PrivateKey;
use crate::liveness::Liveness;
use crate::secret_target::{ClientError, SecretWriter};
use crate::secret_writes::SecretWrites;
use crate::store::{KeyStore, StoreError};

/// How many work polls an issued-but-not-yet-fetchable certificate is retried before the
/// job is reported failed.
const MAX_FETCH_ATTEMPTS: u32 = 10;

/// Why the loop ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// SIGTERM/SIGINT (or the caller's shutdown future).
    Shutdown,
    /// The server answered 410: this agent was retired.
    Retired,
}

/// Errors that stop the agent before its loop can run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The key directory is unusable.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The HTTP/TLS client could not be built.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The Kubernetes client for Secret targets could not be built.
    #[error(transparent)]
    Kubernetes(#[from] ClientError),
}

/// Outcome of one failing turn.
enum TurnError {
    Retired,
    Failed(ApiError),
}

impl PendingReport {
    fn failed(job_id: &str, message: String) -> Self {
        Self { job_id: job_id.to_owned(), completed: false, message }
    }
}

impl From<ApiError> for TurnError {
    fn from(e: ApiError) -> Self {
        if e.status() == Some(StatusCode::GONE) {
            TurnError::Retired
        } else {
            TurnError::Failed(e)
        }
    }
}

/// A CSR the server accepted whose certificate has not been fetched yet. The key stays in
/// memory until its certificate is verified against it and both are installed together.
struct AwaitingCertificate {
    job: Job,
    key: PrivateKey,
    attempts: u32,
}

/// A job outcome not yet accepted by the server (it was unreachable); retried each poll.
struct PendingReport {
    job_id: String,
    completed: bool,
    message: String,
}

/// The running agent.
pub struct Agent {
    config: Config,
    client: ApiClient,
    store: KeyStore,
    liveness: Liveness,
    backoff: Backoff,
    identity: Option<AgentRecord>,
    awaiting: HashMap<String, AwaitingCertificate>,
    unreported: Vec<PendingReport>,
    secret_writes: SecretWrites,
    next_heartbeat: Instant,
    next_poll: Instant,
}

impl Agent {
    /// Prepares the agent: opens (and secures) the key directory and builds the TLS client.
    ///
    /// # Errors
    /// [`AgentError`] if the key directory or the CA bundle is unusable.
    pub fn new(config: Config) -> Result<Self, AgentError> {
        let store = KeyStore::open(&config.key_dir)?;
        let mut client = ApiClient::new(&config)?;
        // Kept from an earlier run in this key directory: proves we are the agent of this name.
        client.set_credential(store.read_credential()?);
        let liveness = Liveness::for_config(&config);
        let backoff = Backoff::new(config.backoff_base, config.backoff_max);
        let writer = if config.kubernetes_secrets { Some(SecretWriter::in_cluster()?) } else { None };
        let mut secret_writes = SecretWrites::new(writer, config.backoff_base, config.backoff_max);
        secret_writes.queue_recorded(&store)?;
        let now = Instant::now();
        Ok(Self {
            config,
            client,
            store,
            liveness,
            backoff,
            identity: None,
            awaiting: HashMap::new(),
            unreported: Vec::new(),
            secret_writes,
            next_heartbeat: now,
            next_poll: now,
        })
    }

    /// Runs until `shutdown` completes or the server retires the agent. Failures never end
    /// the loop: they are logged and retried after the backoff delay.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Exit {
        tokio::pin!(shutdown);
        let mut retry_at: Option<Instant> = None;
        let mut stamp_failed = false;
        let exit = loop {
            match self.liveness.stamp() {
                Ok(()) => stamp_failed = false,
                Err(e) if !stamp_failed => {
                    stamp_failed = true;
                    error!(error = %chain(&e), "cannot write the liveness stamp; the health probe will fail");
                }
                Err(_) => {}
            }
            let now = Instant::now();
            let due = now >= self.next_heartbeat.min(self.next_poll);
            if due && retry_at.is_none_or(|at| now >= at) {
                let turn = tokio::select! {
                    turn = self.turn() => turn,
                    () = &mut shutdown => break Exit::Shutdown,
                };
                match turn {
                    Ok(()) => {
                        if self.backoff.failures() > 0 {
                            info!(failures = self.backoff.failures(), "server reachable again; back to normal intervals");
                        }
                        self.backoff.succeed();
                        retry_at = None;
                    }
                    Err(TurnError::Retired) => break Exit::Retired,
                    Err(TurnError::Failed(e)) => {
                        let delay = self.backoff.fail();
                        self.log_failure(&e, delay);
                        retry_at = Some(Instant::now() + delay);
                    }
                }
            }
            let now = Instant::now();
            let next = self.next_heartbeat.min(self.next_poll).max(retry_at.unwrap_or(now));
            let wake = next.min(now + self.liveness.tick);
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                () = &mut shutdown => break Exit::Shutdown,
            }
        };
        self.liveness.clear();
        match exit {
            Exit::Shutdown => info!("shutdown signal received; exiting"),
            Exit::Retired => info!("the server retired this agent (HTTP 410); exiting"),
        }
        exit
    }

    /// Does whatever is due: register if needed, heartbeat, poll and handle work.
    async fn turn(&mut self) -> Result<(), TurnError> {
        let agent_id = self.ensure_registered().await?;
        let now = Instant::now();
        if now >= self.next_heartbeat {
            self.on_unknown_agent(self.client.heartbeat(&agent_id).await)?;
            self.next_heartbeat = now + self.config.heartbeat_interval;
        }
        if now >= self.next_poll {
            while let Some(report) = self.unreported.pop() {
                self.report(&agent_id, report).await?;
            }
            self.fetch_awaiting(&agent_id).await?;
            let jobs = self.on_unknown_agent(self.client.poll_work(&agent_id).await)?;
            for job in jobs {
                self.handle_job(&agent_id, job).await?;
            }
            self.secret_writes.run_due(&self.store, &self.client, &agent_id).await;
            self.next_poll = now + self.config.poll_interval;
        }
        Ok(())
    }

    async fn ensure_registered(&mut self) -> Result<String, TurnError> {
        if let Some(identity) = &self.identity {
            return Ok(identity.id.clone());
        }
        let mut record = self.client.register(&self.config.agent_name).await?;
        if !valid_id(&record.id) {
            return Err(TurnError::Failed(ApiError::Status {
                op: Operation::Register,
                status: StatusCode::OK,
                code: "bad_id".into(),
                message: format!("server returned an unusable agent id {:?}", record.id),
            }));
        }
        if let Some(credential) = record.credential.take() {
            // Stored before it is used, next to the keys: a restart must present it again.
            if let Err(e) = self.store.write_credential(&credential) {
                error!(
                    error = %chain(&e),
                    "cannot store the agent credential; this run keeps it in memory, but after a restart the server \
                     will refuse this agent's name until an operator resets its credential"
                );
            }
            self.client.set_credential(Some(credential));
        }
        info!(agent_id = %record.id, name = %record.name, status = %record.status, "registered with the server");
        if let Err(e) = self.store.write_agent_id(&record.id) {
            warn!(error = %chain(&e), "cannot record the agent id in the key directory");
        }
        let id = record.id.clone();
        self.identity = Some(record);
        Ok(id)
    }

    /// A 404 on our own agent id means the server forgot us, a refused credential that it was
    /// reset: register again next turn.
    fn on_unknown_agent<T>(&mut self, result: Result<T, ApiError>) -> Result<T, TurnError> {
        if let Err(e) = &result {
            if e.status() == Some(StatusCode::NOT_FOUND) {
                warn!("the server does not know this agent's id any more; registering again");
                self.identity = None;
            } else if e.is_credential_refused() {
                warn!("the server refused this agent's credential; registering again");
                self.identity = None;
            }
        }
        result.map_err(TurnError::from)
    }

    async fn handle_job(&mut self, agent_id: &str, job: Job) -> Result<(), TurnError> {
        if self.awaiting.contains_key(&job.id) {
            return Ok(());
        }
        if !valid_id(&job.id) || !valid_id(&job.certificate_id) {
            warn!(job_id = %job.id, certificate_id = %job.certificate_id, "ignoring a job with an unusable id");
            return Ok(());
        }
        if job.kind != "csr" {
            warn!(job_id = %job.id, kind = %job.kind, "unsupported job type; reporting it failed");
            let report = PendingReport::failed(&job.id, "unsupported job type".into());
            return self.report(agent_id, report).await;
        }
        info!(job_id = %job.id, certificate_id = %job.certificate_id, common_name = %job.common_name, sans = ?job.sans, "CSR job received");
        let prepared = PrivateKey::generate().and_then(|key| {
            let csr = key.csr_pem(&job.common_name, &job.sans)?;
            Ok((key, csr))
        });
        let (key, csr) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => {
                error!(job_id = %job.id, error = %chain(&e), "cannot build the CSR; reporting the job failed");
                return self.report(agent_id, PendingReport::failed(&job.id, chain(&e))).await;
            }
        };
        match self.client.submit_csr(agent_id, &job, &csr).await {
            Ok(()) => {}
            Err(e) if e.status() == Some(StatusCode::BAD_REQUEST) => {
                error!(job_id = %job.id, error = %chain(&e), "the server refused the CSR");
                return self.report(agent_id, PendingReport::failed(&job.id, chain(&e))).await;
            }
            Err(e) if e.status() == Some(StatusCode::CONFLICT) => {
                warn!(job_id = %job.id, error = %chain(&e), "the job is no longer pending; skipping it");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        info!(job_id = %job.id, certificate_id = %job.certificate_id, "CSR submitted");
        self.awaiting.insert(job.id.clone(), AwaitingCertificate { job, key, attempts: 0 });
        self.fetch_awaiting(agent_id).await
    }

    /// Fetches certificates for submitted CSRs and installs them next to their keys.
    async fn fetch_awaiting(&mut self, agent_id: &str) -> Result<(), TurnError> {
        let job_ids: Vec<String> = self.awaiting.keys().cloned().collect();
        for job_id in job_ids {
            let entry = self.awaiting.get_mut(&job_id).expect("key listed above");
            entry.attempts += 1;
            let certificate_id = entry.job.certificate_id.clone();
            let issued = match self.client.fetch_certificate(agent_id, &certificate_id).await {
                Ok(issued) => issued,
                Err(e) if e.status() == Some(StatusCode::NOT_FOUND) && entry.attempts < MAX_FETCH_ATTEMPTS => {
                    info!(job_id, certificate_id, attempts = entry.attempts, "certificate not issued yet; will check again");
                    continue;
                }
                Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => {
                    error!(job_id, certificate_id, error = %chain(&e), "certificate never became available; reporting the job failed");
                    self.awaiting.remove(&job_id);
                    let message = "certificate not available after CSR submission".to_string();
                    self.report(agent_id, PendingReport::failed(&job_id, message)).await?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let entry = self.awaiting.remove(&job_id).expect("key listed above");
            let outcome = self.install(&entry, &issued.certificate_pem, &issued.ca_pem);
            let message = match &outcome {
                Ok(summary) => format!("installed certificate serial {}", summary.serial),
                Err(e) => e.clone(),
            };
            if let Err(e) = &outcome {
                error!(job_id, certificate_id, error = %e, "cannot install the certificate; reporting the job failed");
            }
            let completed = outcome.is_ok();
            if let (true, Some(target)) = (completed, entry.job.target) {
                self.secret_writes.queue(&certificate_id, target);
            }
            self.report(agent_id, PendingReport { job_id, completed, message }).await?;
        }
        Ok(())
    }

    /// Reports a job outcome; if the server cannot take it now, keeps it for the next poll.
    async fn report(&mut self, agent_id: &str, report: PendingReport) -> Result<(), TurnError> {
        let result = self.client.report_job(agent_id, &report.job_id, report.completed, &report.message).await;
        match result {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.status(), Some(StatusCode::NOT_FOUND | StatusCode::CONFLICT)) => {
                warn!(job_id = %report.job_id, error = %chain(&e), "the server no longer takes a status for this job");
                Ok(())
            }
            Err(e) => {
                self.unreported.push(report);
                Err(e.into())
            }
        }
    }

    fn install(
        &self,
        entry: &AwaitingCertificate,
        certificate_pem: &str,
        ca_pem: &str,
    ) -> Result<crate::crypto::CertificateSummary, String> {
        let job = &entry.job;
        let summary = entry.key.check_certificate(certificate_pem).map_err(|e| chain(&e))?;
        if let Some(target) = &job.target {
            // Recorded before the files: a crash in between leaves a target whose write
            // fails (and is reported) until the renewal, never a certificate without its Secret.
            target.check().map_err(|e| format!("the server sent an unusable Secret target: {e}"))?;
            let record = serde_json::to_string(target).expect("a target serializes");
            self.store.write_target(&job.certificate_id, &record).map_err(|e| chain(&e))?;
        }
        self.store.install(&job.certificate_id, &entry.key.to_pem(), certificate_pem, ca_pem).map_err(|e| chain(&e))?;
        let own = job.common_name == self.config.agent_name;
        if own {
            self.store.link_agent_identity(&job.certificate_id).map_err(|e| chain(&e))?;
        }
        info!(
            certificate_id = %job.certificate_id,
            serial = %summary.serial,
            not_after = %summary.not_after,
            key = %self.store.key_path(&job.certificate_id).map(|p| p.display().to_string()).unwrap_or_default(),
            agent_identity = own,
            "certificate installed"
        );
        Ok(summary)
    }

    fn log_failure(&self, e: &ApiError, delay: Duration) {
        let retry_in = format!("{:.1}s", delay.as_secs_f64());
        let failures = self.backoff.failures();
        match e {
            e if e.is_credential_refused() => error!(
                failures, %retry_in, key_dir = %self.config.key_dir.display(),
                "the server refuses this agent's identity: the name {:?} is registered and {}/agent.credential is \
                 missing or not its credential (was the key directory lost?). An operator can let this agent claim \
                 its name again: DELETE /api/v1/agents/<id>/credential; server said: {e}",
                self.config.agent_name, self.config.key_dir.display()
            ),
            ApiError::Status { op, status, message, .. } if *status == StatusCode::UNAUTHORIZED => error!(
                %op, failures, %retry_in,
                "the server rejected the API key (HTTP 401): check that CERTCTL_API_KEY equals one of the keys in the \
                 server's CERTCTL_AUTH_SECRET (chart: server.auth.apiKey; both must come from the same Secret) and has \
                 no stray whitespace; server said: {message}"
            ),
            ApiError::Status { op, status, message, .. } if *status == StatusCode::FORBIDDEN => error!(
                %op, failures, %retry_in, permission = op.permission(),
                "the server refused {op} (HTTP 403): the API key lacks the permission {}; grant it to the key \
                 (keys in CERTCTL_AUTH_SECRET hold all permissions); server said: {message}",
                op.permission()
            ),
            ApiError::Transport { op, .. } => warn!(
                %op, failures, %retry_in, server = %self.config.api_base, error = %chain(e),
                "cannot reach the server; backing off"
            ),
            _ => warn!(failures, %retry_in, error = %chain(e), "request failed; backing off"),
        }
    }
}

/// Ids from the server end up in URL paths and file names: accept plain ids only.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
}

/// An error and its sources, joined with ": ".
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_must_be_plain() {
        assert!(valid_id("3f1c2b7e-1111-4a4a-9b9b-000000000001"));
        for bad in ["", "../x", "a/b", "a?b", "a b", "a.b"] {
            assert!(!valid_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn chain_joins_sources() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let e = StoreError::Write { path: "/k/x.key".into(), source: io };
        assert_eq!(chain(&e), "writing /k/x.key failed: denied");
    }
}
