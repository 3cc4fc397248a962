//! Integration tests of the real `certctl-server` binary against a real PostgreSQL
//! (the harness fixture): TLS, auth, identity, diagnostics, pool bounds, readiness, SIGHUP,
//! CSR flow, resource limits, metrics.

mod api;
mod auth;
mod ca_keys;
mod config;
mod db_loss;
mod deadlock;
mod diagnostics;
mod identity;
mod limits;
mod metrics;
mod migrate;
mod pool;
mod ready;
mod support;
mod targets;
mod tls;
mod validation;
