//! Integration tests of the real `certctl-server` binary against a real PostgreSQL
//! (the harness fixture): TLS, auth, diagnostics, pool bounds, readiness, SIGHUP, CSR flow.

mod api;
mod auth;
mod config;
mod diagnostics;
mod migrate;
mod pool;
mod ready;
mod support;
mod tls;
