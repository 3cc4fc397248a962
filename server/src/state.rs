//! Shared state of a running server: pool, readiness, CA, auth and metrics.

use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use sqlx::postgres::PgPool;

use crate::auth::Authenticator;
use crate::ca::LocalCa;
use crate::config::{Config, SchedulerConfig};
use crate::db::diagnose::Target;
use crate::metrics::Metrics;
use crate::secret_target::SecretNamespaces;

/// Where start-up stands; /ready and the API gate on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup {
    /// Still trying to reach the database; the last diagnostic, if any attempt failed yet.
    Connecting(Option<String>),
    /// Database reached; migrations or CA setup running, or failed (with the reason).
    Preparing(Option<String>),
    /// Serving.
    Ready,
}

/// Cheap to clone; everything lives behind one `Arc`.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    pool: PgPool,
    target: Target,
    startup: RwLock<Startup>,
    ca: OnceLock<LocalCa>,
    auth: Authenticator,
    metrics: Metrics,
    scheduler: SchedulerConfig,
    body_timeout: Duration,
    secret_namespaces: SecretNamespaces,
}

impl AppState {
    /// State for `config` with a lazily connecting pool.
    pub fn new(config: &Config, pool: PgPool) -> Self {
        Self(Arc::new(Inner {
            pool,
            target: Target::from_options(&config.database.connect),
            startup: RwLock::new(Startup::Connecting(None)),
            ca: OnceLock::new(),
            auth: config.auth.clone(),
            metrics: Metrics::new(config.database.max_connections),
            scheduler: config.scheduler.clone(),
            body_timeout: config.limits.body_timeout,
            secret_namespaces: config.secret_namespaces.clone(),
        }))
    }

    /// Where certificates may name a Secret target.
    pub fn secret_namespaces(&self) -> &SecretNamespaces {
        &self.0.secret_namespaces
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.0.pool
    }

    /// The database being used (for diagnostics).
    pub fn target(&self) -> &Target {
        &self.0.target
    }

    /// Current start-up stage.
    pub fn startup(&self) -> Startup {
        self.0.startup.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Moves start-up to `stage`.
    pub fn set_startup(&self, stage: Startup) {
        *self.0.startup.write().unwrap_or_else(|e| e.into_inner()) = stage;
    }

    /// Installs the CA (once).
    pub fn set_ca(&self, ca: LocalCa) {
        let _ = self.0.ca.set(ca);
    }

    /// The CA, once start-up has loaded it.
    pub fn ca(&self) -> Option<&LocalCa> {
        self.0.ca.get()
    }

    /// The authenticator.
    pub fn auth(&self) -> &Authenticator {
        &self.0.auth
    }

    /// Metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// How long a request body may take to arrive (CERTCTL_SERVER_BODY_TIMEOUT).
    pub fn body_timeout(&self) -> Duration {
        self.0.body_timeout
    }

    /// Scheduler and issuance settings.
    pub fn scheduler(&self) -> &SchedulerConfig {
        &self.0.scheduler
    }
}
