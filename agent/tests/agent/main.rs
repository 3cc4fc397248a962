//! The agent against the real certctl-server and a real PostgreSQL: issuance, identity
//! across restarts, outage backoff and recovery, auth failures, retirement, liveness.

mod support;

mod config_refusals;
mod flows;
mod measure;
