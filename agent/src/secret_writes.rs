//! Secret writes the agent still owes: one per certificate with a target, queued when its
//! certificate is installed (and for every recorded target when the agent starts), written
//! with one server-side apply, then reported to the server. A failed write is reported and
//! retried with its own backoff; it never stops the agent loop or touches other writes.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::agent::chain;
use crate::api::{ApiClient, SecretTarget, TargetReport};
use crate::backoff::Backoff;
use crate::crypto::summarize;
use crate::secret_target::{tls_secret, SecretWriter};
use crate::store::{KeyStore, StoreError};

/// What a queued entry does next.
enum Step {
    /// Write the Secret (again).
    Write,
    /// Tell the server; `retry` says whether to write again afterwards.
    Report { report: TargetReport, retry: bool },
}

struct Pending {
    target: SecretTarget,
    step: Step,
    backoff: Backoff,
    due: Instant,
    queued: Instant,
}

/// The queue, and the writer if the feature is on.
pub struct SecretWrites {
    writer: Option<SecretWriter>,
    pending: BTreeMap<String, Pending>,
    base: Duration,
    max: Duration,
}

impl SecretWrites {
    /// An empty queue; `writer` is `None` when CERTCTL_KUBERNETES_SECRETS_ENABLED is off.
    pub fn new(writer: Option<SecretWriter>, base: Duration, max: Duration) -> Self {
        Self { writer, pending: BTreeMap::new(), base, max }
    }

    /// Queues every target recorded in `store` (a restarted agent re-applies them: one
    /// no-op apply each when nothing changed).
    pub fn queue_recorded(&mut self, store: &KeyStore) -> Result<(), StoreError> {
        for (id, json) in store.targets()? {
            match serde_json::from_str::<SecretTarget>(&json) {
                Ok(target) => self.queue(&id, target),
                Err(e) => warn!(certificate_id = %id, error = %e, "ignoring an unreadable Secret target record"),
            }
        }
        Ok(())
    }

    /// Queues a write of `certificate_id`'s Secret now, replacing any earlier one.
    pub fn queue(&mut self, certificate_id: &str, target: SecretTarget) {
        let now = Instant::now();
        let pending = Pending { target, step: Step::Write, backoff: Backoff::new(self.base, self.max), due: now, queued: now };
        self.pending.insert(certificate_id.to_owned(), pending);
    }

    /// Does every step that is due.
    pub async fn run_due(&mut self, store: &KeyStore, client: &ApiClient, agent_id: &str) {
        let now = Instant::now();
        let due: Vec<String> = self.pending.iter().filter(|(_, p)| p.due <= now).map(|(id, _)| id.clone()).collect();
        for id in due {
            if matches!(self.pending[&id].step, Step::Write) {
                let step = self.write(&id, store).await;
                self.pending.get_mut(&id).expect("listed above").step = step;
            }
            self.report(&id, client, agent_id).await;
        }
    }

    async fn write(&self, id: &str, store: &KeyStore) -> Step {
        let pending = &self.pending[id];
        let target = &pending.target;
        let failed = |serial: String, message: String, retry: bool| Step::Report {
            report: TargetReport { status: "failed", serial, message: Some(message) },
            retry,
        };
        let files = match store.read_installed(id) {
            Ok(files) => files,
            Err(e) => return failed("0".into(), chain(&e), true),
        };
        let summary = match summarize(&files.certificate_pem) {
            Ok(summary) => summary,
            Err(e) => return failed("0".into(), chain(&e), true),
        };
        let Some(writer) = &self.writer else {
            warn!(certificate_id = id, namespace = %target.namespace, secret = %target.name,
                  "the certificate names a Secret but this agent does not write Secrets");
            let message = "this agent does not write Kubernetes Secrets (CERTCTL_KUBERNETES_SECRETS_ENABLED is off; \
                           chart: kubernetesSecrets.enabled)";
            return failed(summary.serial_hex(), message.into(), false);
        };
        match writer.write(target, &tls_secret(target, id, &summary, &files)).await {
            Ok(()) => {
                info!(certificate_id = id, namespace = %target.namespace, secret = %target.name, serial = %summary.serial,
                      after_ms = pending.queued.elapsed().as_millis(), "Secret written");
                Step::Report { report: TargetReport { status: "written", serial: summary.serial_hex(), message: None }, retry: false }
            }
            Err(e) => {
                warn!(certificate_id = id, namespace = %target.namespace, secret = %target.name, error = %chain(&e),
                      attempts = pending.backoff.failures() + 1, "cannot write the Secret; will retry");
                failed(summary.serial_hex(), chain(&e), true)
            }
        }
    }

    async fn report(&mut self, id: &str, client: &ApiClient, agent_id: &str) {
        let pending = self.pending.get_mut(id).expect("listed by the caller");
        let Step::Report { report, retry } = &pending.step else { return };
        match client.report_target(agent_id, id, report).await {
            Ok(()) => {}
            Err(e) if matches!(e.status(), Some(StatusCode::NOT_FOUND | StatusCode::CONFLICT)) => {
                warn!(certificate_id = id, error = %chain(&e), "the server no longer knows this certificate's target; dropping its write");
                self.pending.remove(id);
                return;
            }
            Err(e) => {
                // The write's outcome is kept and reported on a later turn.
                warn!(certificate_id = id, error = %chain(&e), "cannot report the Secret write to the server; will retry");
                pending.due = Instant::now() + pending.backoff.fail();
                return;
            }
        }
        if *retry {
            pending.step = Step::Write;
            pending.due = Instant::now() + pending.backoff.fail();
        } else {
            self.pending.remove(id);
        }
    }
}
