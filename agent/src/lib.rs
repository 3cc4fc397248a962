//! certctl-agent: registers with the certctl server under its name, heartbeats, polls
//! for CSR jobs, makes ECDSA P-256 keys locally, submits CSRs and writes the issued
//! certificates next to their keys. See docs/agent.md.

pub mod agent;
pub mod api;
pub mod backoff;
pub mod config;
pub mod crypto;
pub mod liveness;
pub mod logging;
pub mod secret_target;
pub mod secret_writes;
pub mod store;
pub mod tls;

pub use agent::{Agent, AgentError, Exit};
pub use config::{Config, ConfigError};
