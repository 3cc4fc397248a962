//! PostgreSQL: the bounded pool, the startup ping with diagnostics, and migrations.

pub mod diagnose;
pub mod migrate;

use std::time::Duration;

use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use sqlx::Connection;

use crate::config::DatabaseConfig;
use diagnose::{diagnose, Diagnosis, Facts, Target};

/// Builds the pool without connecting: at most `max_connections` open, `min_connections`
/// kept as the idle floor, connections above the floor closed after `idle_timeout` idle.
pub fn lazy_pool(config: &DatabaseConfig) -> PgPool {
    PgPoolOptions::new()
        .max_connections(config.max_connections)
        .min_connections(config.min_connections)
        .idle_timeout(config.idle_timeout)
        .acquire_timeout(config.connect_timeout)
        .test_before_acquire(true)
        .connect_lazy_with(config.connect.clone())
}

/// Opens one connection outside the pool, runs `SELECT 1` and closes it; on failure returns the
/// operator-facing diagnosis.
///
/// # Errors
/// The diagnosis of why the database could not be reached.
pub async fn ping_direct(config: &DatabaseConfig) -> Result<(), Diagnosis> {
    let target = Target::from_options(&config.connect);
    let attempt = async {
        let mut conn = PgConnection::connect_with(&config.connect).await?;
        sqlx::query("SELECT 1").execute(&mut conn).await?;
        conn.close().await
    };
    match tokio::time::timeout(config.connect_timeout, attempt).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(diagnose(&Facts::from_sqlx(&e), &target)),
        Err(_) => Err(diagnose(&Facts::timeout(config.connect_timeout), &target)),
    }
}

/// Pings through the pool (as /ready does), bounded by `limit`.
///
/// # Errors
/// The diagnosis of why the database could not be reached.
pub async fn ping_pool(pool: &PgPool, target: &Target, limit: Duration) -> Result<(), Diagnosis> {
    let attempt = async { sqlx::query("SELECT 1").execute(pool).await.map(|_| ()) };
    match tokio::time::timeout(limit, attempt).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(diagnose(&Facts::from_sqlx(&e), target)),
        Err(_) => Err(diagnose(&Facts::timeout(limit), target)),
    }
}
